"""Batch normalization ops (generic, against xp).

Contract (the fused CUDA kernels must match it):
- batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps) -> (y, mean, invstd)
  x is (N, C) or (N, C, H, W); statistics per channel over every axis but 1; biased variance for
  normalizing; running stats (or None) updated in place with the unbiased m/(m-1) variance:
  running = (1 - momentum) * running + momentum * batch.
- batchnorm_forward_infer(x, gamma, beta, running_mean, running_var, eps) -> y
- batchnorm_backward(dy, x, gamma, mean, invstd) -> (dx, dgamma, dbeta), closed form, one pass
  of per-channel sums of dy and dy * xhat.
- batchnorm_sync_forward_train / batchnorm_sync_backward: the same over a batch split across
  processes (synchronized batch norm): `reduce(v)` sums a short host-or-device vector across them
  in place (the layer passes gpunn.distributed's all_reduce, so this module knows no transport).
  Statistics and the two sums of backward are global; dgamma and dbeta are this part's own (data
  parallelism averages them with every other gradient).

Details every implementation keeps:
- gamma and beta are always (C,) arrays (callers pass ones/zeros when there is no affine part);
  running_mean / running_var are (C,) arrays or None.
- Statistics are accumulated in float32 or wider (`stat_dtype`): float16 input gets float32
  statistics, float32 and float64 keep their own. `mean` and `invstd` are returned (C,) in that
  dtype; y and dx have x's dtype; dgamma and dbeta have gamma's dtype.
- The variance is computed two-pass (mean first, then mean of squared deviations), which stays
  accurate when |mean| >> std; a fused kernel may use Welford, which agrees to rounding.
- With m = N*H*W values per channel and m == 1, the running variance takes the biased value
  (the unbiased one is undefined); the layer refuses m == 1 in training before getting here.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _channel_axes(ndim: int) -> tuple[int, ...]:
    return (0, *range(2, ndim))


def _channel_shape(ndim: int, c: int) -> tuple[int, ...]:
    return (1, c) + (1,) * (ndim - 2)


def stat_dtype(dtype: Any) -> np.dtype:
    """float32 or wider: the dtype batch statistics are accumulated in."""
    return np.promote_types(np.dtype(dtype), np.float32)


def update_running_stats(running_mean: Any | None, running_var: Any | None, mean: Any, var: Any, m: int,
                         momentum: float) -> None:
    """running = (1 - momentum) * running + momentum * batch, in place, with the unbiased m/(m-1) variance."""
    keep, mom = 1.0 - float(momentum), float(momentum)
    if running_mean is not None:
        running_mean[...] = keep * running_mean + mom * mean.astype(running_mean.dtype, copy=False)
    if running_var is not None:
        unbiased = var * var.dtype.type(m / (m - 1)) if m > 1 else var
        running_var[...] = keep * running_var + mom * unbiased.astype(running_var.dtype, copy=False)


class NormOps:
    xp: Any

    def batchnorm_forward_train(self, x: Any, gamma: Any, beta: Any, running_mean: Any | None,
                                running_var: Any | None, momentum: float, eps: float) -> tuple[Any, Any, Any]:
        xp = self.xp
        c = x.shape[1]
        axes, shape = _channel_axes(x.ndim), _channel_shape(x.ndim, c)
        acc = stat_dtype(x.dtype)
        xa = x.astype(acc, copy=False)
        m = x.size // c
        mean = xa.mean(axis=axes)
        centered = xa - mean.reshape(shape)
        var = (centered * centered).mean(axis=axes)
        invstd = 1.0 / xp.sqrt(var + acc.type(eps))
        scale = (gamma.astype(acc, copy=False) * invstd).reshape(shape)
        y = (centered * scale + beta.astype(acc, copy=False).reshape(shape)).astype(x.dtype, copy=False)
        update_running_stats(running_mean, running_var, mean, var, m, momentum)
        return y, mean, invstd

    def batchnorm_relu_forward_train(self, x: Any, gamma: Any, beta: Any, running_mean: Any | None,
                                     running_var: Any | None, momentum: float, eps: float) -> tuple[Any, Any, Any]:
        """batchnorm_forward_train followed by relu_forward (y = max(bn(x), 0)); a backend may fuse
        the two into one output pass."""
        y, mean, invstd = self.batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps)
        return self.relu_forward(y), mean, invstd

    def batchnorm_relu_backward(self, dy: Any, y: Any, x: Any, gamma: Any, mean: Any,
                                invstd: Any) -> tuple[Any, Any, Any]:
        """The backward of batchnorm_relu_forward_train, y its output: dy is masked by y > 0."""
        if getattr(y, "shape", None) != getattr(x, "shape", None):
            raise ValueError(f"batchnorm_relu_backward: argument 'y' must have the shape of 'x' "
                             f"{getattr(x, 'shape', None)}, got {getattr(y, 'shape', None)}")
        return self.batchnorm_backward(self.relu_backward(dy, y), x, gamma, mean, invstd)

    def batchnorm_forward_infer(self, x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any,
                                eps: float) -> Any:
        xp = self.xp
        shape = _channel_shape(x.ndim, x.shape[1])
        acc = stat_dtype(x.dtype)
        invstd = 1.0 / xp.sqrt(running_var.astype(acc, copy=False) + acc.type(eps))
        scale = gamma.astype(acc, copy=False) * invstd
        shift = beta.astype(acc, copy=False) - running_mean.astype(acc, copy=False) * scale
        # one multiply-add per element: y = x * scale + shift
        return (x.astype(acc, copy=False) * scale.reshape(shape) + shift.reshape(shape)).astype(x.dtype, copy=False)

    def batchnorm_backward(self, dy: Any, x: Any, gamma: Any, mean: Any, invstd: Any) -> tuple[Any, Any, Any]:
        c = x.shape[1]
        axes, shape = _channel_axes(x.ndim), _channel_shape(x.ndim, c)
        acc = stat_dtype(x.dtype)
        m = x.size // c
        xhat = (x.astype(acc, copy=False) - mean.reshape(shape)) * invstd.reshape(shape)
        dya = dy.astype(acc, copy=False)
        dbeta = dya.sum(axis=axes)
        dgamma = (dya * xhat).sum(axis=axes)
        # dx = gamma * invstd / m * (m * dy - sum(dy) - xhat * sum(dy * xhat))
        k = (gamma.astype(acc, copy=False) * invstd).reshape(shape)
        dx = k * (dya - (dbeta.reshape(shape) + xhat * dgamma.reshape(shape)) / acc.type(m))
        return dx.astype(x.dtype, copy=False), dgamma.astype(gamma.dtype, copy=False), \
            dbeta.astype(gamma.dtype, copy=False)

    def batchnorm_sync_forward_train(self, x: Any, gamma: Any, beta: Any, running_mean: Any | None,
                                     running_var: Any | None, momentum: float, eps: float,
                                     reduce: Callable[[Any], Any]) -> tuple[Any, Any, Any]:
        """batchnorm_forward_train with the mean and variance of the whole batch across processes:
        two reductions (the sums and the count, then the squared deviations: two-pass, as above)."""
        xp = self.xp
        c = x.shape[1]
        axes, shape = _channel_axes(x.ndim), _channel_shape(x.ndim, c)
        acc = stat_dtype(x.dtype)
        xa = x.astype(acc, copy=False)
        sums = xp.concatenate([xa.sum(axis=axes), xp.asarray([x.size // c], dtype=acc)])
        reduce(sums)
        m = int(round(float(sums[c])))
        mean = sums[:c] / acc.type(m)
        centered = xa - mean.reshape(shape)
        sq = xp.ascontiguousarray((centered * centered).sum(axis=axes))
        reduce(sq)
        var = sq / acc.type(m)
        invstd = 1.0 / xp.sqrt(var + acc.type(eps))
        scale = (gamma.astype(acc, copy=False) * invstd).reshape(shape)
        y = (centered * scale + beta.astype(acc, copy=False).reshape(shape)).astype(x.dtype, copy=False)
        update_running_stats(running_mean, running_var, mean, var, m, momentum)
        return y, mean, invstd

    def batchnorm_sync_backward(self, dy: Any, x: Any, gamma: Any, mean: Any, invstd: Any,
                                reduce: Callable[[Any], Any]) -> tuple[Any, Any, Any]:
        """batchnorm_backward for batchnorm_sync_forward_train: one reduction of [sum dy, sum dy*xhat, count]."""
        xp = self.xp
        c = x.shape[1]
        axes, shape = _channel_axes(x.ndim), _channel_shape(x.ndim, c)
        acc = stat_dtype(x.dtype)
        xhat = (x.astype(acc, copy=False) - mean.reshape(shape)) * invstd.reshape(shape)
        dya = dy.astype(acc, copy=False)
        dbeta, dgamma = dya.sum(axis=axes), (dya * xhat).sum(axis=axes)
        both = xp.concatenate([dbeta, dgamma, xp.asarray([x.size // c], dtype=acc)])
        reduce(both)
        m = acc.type(round(float(both[2 * c])))
        k = (gamma.astype(acc, copy=False) * invstd).reshape(shape)
        dx = k * (dya - (both[:c].reshape(shape) + xhat * both[c:2 * c].reshape(shape)) / m)
        return dx.astype(x.dtype, copy=False), dgamma.astype(gamma.dtype, copy=False), \
            dbeta.astype(gamma.dtype, copy=False)
