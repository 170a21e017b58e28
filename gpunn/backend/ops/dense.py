"""Matrix products for the dense layers, so a backend can schedule them (the CPU backend splits
them over its own threads, see gpunn/backend/cpu_threads.py)."""
from __future__ import annotations

from typing import Any


class DenseOps:
    xp: Any

    def matmul(self, a: Any, b: Any) -> Any:
        """a @ b, with NumPy's broadcasting and type rules."""
        return self.xp.matmul(a, b)
