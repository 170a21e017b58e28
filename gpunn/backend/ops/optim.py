"""Fused optimizer updates over flat buffers (generic, against xp). Filled in by the optimizer work.

Contract (the fused CUDA kernel must match it):
- adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled,
            zero_grad=False, max_v=None) -> None, all arrays 1-D, contiguous, same dtype, updated
  in place, PyTorch's formulas: coupled L2 adds weight_decay * param to the gradient; decoupled
  (AdamW) multiplies param by (1 - lr * weight_decay) first; max_v is the AMSGrad buffer.
"""
from __future__ import annotations

from typing import Any


class OptimOps:
    xp: Any
