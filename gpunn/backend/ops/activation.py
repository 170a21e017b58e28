"""ReLU as a backend op: the most common activation gets a one-pass kernel where a backend has one.

relu_forward(x) -> y = max(x, 0), NaN propagating (as np.maximum and torch.relu);
relu_backward(dy, y) -> dx = dy where y > 0, else 0 (y is the forward output, so no mask is kept).
"""
from __future__ import annotations

from typing import Any


class ActivationOps:
    xp: Any

    def relu_forward(self, x: Any) -> Any:
        return self.xp.maximum(x, x.dtype.type(0))

    def relu_backward(self, dy: Any, y: Any) -> Any:
        return dy * (y > 0)
