"""The GPU backend: CuPy. Imported only when this backend is selected, never by `import gpunn`.

The ops that have a CUDA kernel (kernels/*.cu) run through the launchers in launchers.py; the
kernels compile with NVRTC through cupy.RawModule on first use. `CupyBackend(use_kernels=False)`
(or a set of op names) routes ops back to the generic CuPy implementation, for comparisons.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn.backend.base import (DLPACK_CUDA_DEVICES, Backend, dlpack_device, foreign_to_host, is_foreign_array,
                                native_byte_order)
from gpunn.backend.cuda.kernel_ops import KernelOpsMixin, UseKernels

# NVRTC options for every kernel module: C++17, and no fast-math so results track the reference.
NVRTC_OPTIONS = ("--std=c++17",)


class CupyBackend(KernelOpsMixin, Backend):
    name = "cupy"

    def __init__(self, use_kernels: UseKernels = True) -> None:
        import cupy  # noqa: PLC0415 - deliberate late import, see module docstring

        super().__init__(cupy)
        self._cupy = cupy
        self.device = f"cuda:{cupy.cuda.Device().id}"
        self._init_kernels(lambda code: cupy.RawModule(code=code, options=NVRTC_OPTIONS), use_kernels)

    def asarray(self, a: Any, dtype: Any = None, *, where: str | None = None) -> Any:
        if is_foreign_array(a):
            a = self._import_foreign(a, where or "cupy backend: asarray")
        return self._cupy.asarray(native_byte_order(a), dtype=dtype)  # CuPy arrays are little-endian

    def _import_foreign(self, a: Any, where: str) -> Any:
        """A tensor on a CUDA device (torch, JAX) imported in place with cupy.from_dlpack; one on
        the host copied once, through the host (see foreign_to_host)."""
        if hasattr(a, "__dlpack__"):
            device = dlpack_device(a)
            if device is not None and device[0] in DLPACK_CUDA_DEVICES:
                return self._cupy.from_dlpack(a)
        if hasattr(a, "__cuda_array_interface__"):
            return a  # numba and friends: cupy.asarray reads the interface in place
        return foreign_to_host(a, where)

    def to_numpy(self, a: Any) -> np.ndarray:
        return self._cupy.asnumpy(a)

    def synchronize(self) -> None:
        self._cupy.cuda.get_current_stream().synchronize()
