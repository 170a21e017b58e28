"""Matrix products for the dense layers, so a backend can schedule them (the CPU backend splits
them over its own threads, see gpunn/backend/cpu/threads.py)."""
from __future__ import annotations

from typing import Any


class DenseOps:
    xp: Any

    def matmul(self, a: Any, b: Any) -> Any:
        """a @ b, with NumPy's broadcasting and type rules."""
        check_matmul(a, b)
        return self.xp.matmul(a, b)

    def matmul_acc(self, out: Any, a: Any, b: Any) -> None:
        """out += a @ b in place (a gradient accumulating). Here through this backend's matmul and a
        temporary; the CUDA backends' kernel adds the product in its epilogue instead."""
        check_matmul(a, b)
        out += self.matmul(a, b)


def check_matmul(a: Any, b: Any) -> None:
    """Both at least 2-D, with a's columns matching b's rows."""
    for name, arr in (("a", a), ("b", b)):
        if getattr(arr, "ndim", 0) < 2:
            raise ValueError(f"matmul: argument '{name}' must have at least 2 dimensions, got shape "
                             f"{getattr(arr, 'shape', None)}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: argument 'b' must have {a.shape[-1]} rows (the columns of 'a' {tuple(a.shape)}), "
                         f"got shape {tuple(b.shape)}")
