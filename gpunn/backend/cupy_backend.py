"""The GPU backend: CuPy. Imported only when this backend is selected, never by `import gpunn`."""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn.backend.base import Backend


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self) -> None:
        import cupy  # noqa: PLC0415 - deliberate late import, see module docstring

        super().__init__(cupy)
        self._cupy = cupy
        self.device = f"cuda:{cupy.cuda.Device().id}"

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        return self._cupy.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return self._cupy.asnumpy(a)

    def synchronize(self) -> None:
        self._cupy.cuda.get_current_stream().synchronize()
