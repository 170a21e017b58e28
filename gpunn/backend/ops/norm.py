"""Batch normalization ops (generic, against xp). Filled in by the layer-zoo work.

Contract (the fused CUDA kernels must match it):
- batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps) -> (y, mean, invstd)
  x is (N, C) or (N, C, H, W); statistics per channel over every axis but 1; biased variance for
  normalizing; running stats (or None) updated in place with the unbiased m/(m-1) variance:
  running = (1 - momentum) * running + momentum * batch.
- batchnorm_forward_infer(x, gamma, beta, running_mean, running_var, eps) -> y
- batchnorm_backward(dy, x, gamma, mean, invstd) -> (dx, dgamma, dbeta), closed form, one pass
  of per-channel sums of dy and dy * xhat.
"""
from __future__ import annotations

from typing import Any


class NormOps:
    xp: Any
