"""Fused optimizer updates over flat buffers (generic, against xp). Filled in by the optimizer work.

Contract (the fused CUDA kernel must match it):
- adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled,
            zero_grad=False, max_v=None) -> None, all arrays 1-D, contiguous, same dtype, updated
  in place, PyTorch's formulas: coupled L2 adds weight_decay * param to the gradient; decoupled
  (AdamW) multiplies param by (1 - lr * weight_decay) first; max_v is the AMSGrad buffer.

The formulas in full, per element, with `step` the 1-based count *after* this update's increment:

    g  = grad + weight_decay * param        (coupled only; `grad` itself is not modified)
    param *= 1 - lr * weight_decay          (decoupled only, before the update below)
    m  = beta1 * m + (1 - beta1) * g
    v  = beta2 * v + (1 - beta2) * g * g
    max_v = max(max_v, v); u = max_v        (AMSGrad, when max_v is given; else u = v)
    bc1 = 1 - beta1**step;  bc2 = 1 - beta2**step
    param -= (lr / bc1) * m / (sqrt(u) / sqrt(bc2) + eps)
    grad  = 0                               (only when zero_grad=True, after g has been used)

The NumPy path evaluates the last line in the algebraically equal form
`param -= (lr * sqrt(bc2) / bc1) * m / (sqrt(u) + eps * sqrt(bc2))` (one pass fewer); the two
agree to a few ulps. A kernel may use either form.

Scalars (lr, betas, eps, weight_decay) arrive as Python floats and `step` as an int >= 1; the
host computes bc1/bc2 in float64 once, in `adam_constants` (every Adam path, generic, numba and
CUDA, takes its constants from there), and a kernel may take them in the array dtype.

The generic op here makes one pass over the whole buffer against `xp`; a backend changes how the
buffer is walked by overriding `_adam_update` (the NumPy backend: cache-sized chunks over its CPU
threads) and keeps this validation.

Device scalars (for a step captured as a CUDA graph, which replays every scalar argument as it
was at capture, so whatever changes from step to step must be read from device memory):
- adam_step_device(param, grad, m, v, scalars, beta1, beta2, eps, weight_decay, decoupled,
                   zero_grad=False, max_v=None) -> None: the same update as adam_step, with lr
  and step read from `scalars`, a 1-D contiguous float64 array of this backend with at least two
  elements: scalars[0] = lr, scalars[1] = step (1-based, after the increment, as a float64);
  further elements are not read (an optimizer's buffer holds more slots). Nothing is read back
  to the host: the bias corrections are computed on the device, in float64, from those two
  values (`adam_device_constants` here; the CUDA kernel computes them once per thread, which
  gives every thread the same bits). The values themselves are not validated (that would need a
  host read): a step < 1 or a negative lr gives what the formulas give. The NumPy backend, whose
  "device" memory is host memory, reads them and runs adam_step.
- adam_step_mixed(param, grad, m, v, scalars, beta1, beta2, eps, weight_decay, decoupled,
                  inv_scale, found_inf, max_v=None) -> None: mixed precision. param, m, v, max_v are
  the float32 master buffers (1-D, contiguous); grad is the float16 or bfloat16
  (ml_dtypes.bfloat16) gradient of the same length, loss-scaled for float16; scalars as in
  adam_step_device ([lr, step, ...], float64, step already incremented); inv_scale a 1-element
  float32 array (1 / loss scale; ones for bfloat16 training); found_inf a 1-element int32 array
  that an earlier pass set to nonzero when any unscaled gradient was inf or NaN. When
  found_inf[0] != 0 nothing is modified (param, m, v, max_v keep every bit); otherwise exactly
  adam_step_device's update with g = float32(grad) * inv_scale[0] (the exact widening, then one
  float32 multiply, rounded once), coupled / decoupled weight decay and AMSGrad as there. grad
  is only read (there is no zero_grad: the half buffer is the layers' to clear). The decision is
  made on the device: the generic op computes the update into scratch copies and copies them
  back with `where=(found_inf == 0)` (a 1-element mask, broadcast), so nothing is read back to
  the host and the step can be captured; the CUDA kernel (adam_step_mixed_f16 / _bf16) has every
  thread read *found_inf first and return when it is set.
- squared_norm_device(g) -> a 1-element array of g's dtype and backend, sum(g * g), left on the
  device (clipnorm inside a captured step).
"""
from __future__ import annotations

import math
import threading
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np

from gpunn._checks import int_arg


class AdamConstants(NamedTuple):
    """The host-side constants of one Adam step, in float64.

    Two algebraically equal forms of the update use them:
    `param -= lr_t * m / (sqrt(u) / sqrt_bc2 + eps)` (the CUDA kernel) and
    `param -= step_size * m / (sqrt(u) + eps_hat)` (the NumPy and numba paths: one pass fewer)."""
    bc1: float  # 1 - beta1**step
    sqrt_bc2: float  # sqrt(1 - beta2**step)
    lr_t: float  # lr / bc1
    step_size: float  # lr * sqrt_bc2 / bc1
    eps_hat: float  # eps * sqrt_bc2


def adam_constants(lr: float, beta1: float, beta2: float, eps: float, step: int) -> AdamConstants:
    """Bias corrections for update number `step` (1-based), computed once on the host."""
    bc1 = 1.0 - float(beta1) ** int(step)
    sqrt_bc2 = math.sqrt(1.0 - float(beta2) ** int(step))
    return AdamConstants(bc1, sqrt_bc2, float(lr) / bc1, float(lr) * sqrt_bc2 / bc1, float(eps) * sqrt_bc2)


def check_step_scalars(where: str, scalars: Any, xp: Any = None) -> None:
    """`scalars` (lr, step, ...) must be a 1-D contiguous float64 array of at least 2 elements (of
    `xp` when given); names the argument and what was expected."""
    if xp is not None and not isinstance(scalars, xp.ndarray):
        raise TypeError(f"{where}: argument 'scalars' must be a {xp.__name__}.ndarray (float64, [lr, step, ...]), "
                        f"got {type(scalars).__name__}")
    if not all(hasattr(scalars, k) for k in ("ndim", "dtype", "shape", "flags")):
        raise TypeError(f"{where}: argument 'scalars' must be a device array (float64, [lr, step, ...]), "
                        f"got {type(scalars).__name__}")
    if scalars.dtype != np.float64:
        raise TypeError(f"{where}: argument 'scalars' must have dtype float64 ([lr, step, ...]), got {scalars.dtype}")
    if scalars.ndim != 1 or scalars.shape[0] < 2:
        raise ValueError(f"{where}: argument 'scalars' must be 1-D with at least 2 elements ([lr, step, ...]), "
                         f"got shape {tuple(scalars.shape)}")
    if not scalars.flags.c_contiguous:
        raise ValueError(f"{where}: argument 'scalars' must be contiguous")


def adam_device_constants(xp: Any, scalars: Any, beta1: float, beta2: float, eps: float, weight_decay: float,
                          decoupled: bool, work: Any, out: Any) -> None:
    """Adam's per-step constants from the device scalars [lr, step, ...], computed on the device in
    float64 into `work` (float64, >= 5 elements) and cast once into `out` (>= 3 elements, the
    param dtype): out[0] = step_size = lr * sqrt_bc2 / bc1, out[1] = eps_hat = eps * sqrt_bc2,
    out[2] = shrink = 1 - lr * weight_decay (decoupled) or 1. The same operations, in the same
    order, as `adam_constants` (np.power may differ from the host's pow by an ulp in float64)."""
    lr, t = scalars[0:1], scalars[1:2]
    bc1, sqrt_bc2, step_size, eps_hat, shrink = (work[i:i + 1] for i in range(5))
    xp.power(float(beta1), t, out=bc1)
    xp.subtract(1.0, bc1, out=bc1)
    xp.power(float(beta2), t, out=sqrt_bc2)
    xp.subtract(1.0, sqrt_bc2, out=sqrt_bc2)
    xp.sqrt(sqrt_bc2, out=sqrt_bc2)
    xp.multiply(lr, sqrt_bc2, out=step_size)
    xp.divide(step_size, bc1, out=step_size)
    xp.multiply(sqrt_bc2, float(eps), out=eps_hat)
    if decoupled and weight_decay != 0.0:
        xp.multiply(lr, float(weight_decay), out=shrink)
        xp.subtract(1.0, shrink, out=shrink)
    else:
        shrink.fill(1.0)
    # one cast to the param dtype, as a Python float operand is cast by the host path
    xp.copyto(out[0:3], work[2:5], casting="unsafe")


def _check_flat(where: str, ref: Any, **arrays: Any) -> None:
    """Every array 1-D, contiguous, with the size and dtype of `param`; names the offender."""
    for name, a in arrays.items():
        if a is None:
            continue
        if getattr(a, "ndim", None) != 1:
            raise ValueError(f"{where}: argument '{name}' must be a 1-D array, got shape {getattr(a, 'shape', None)}")
        if a.shape != ref.shape:
            raise ValueError(f"{where}: argument '{name}' must have shape {tuple(ref.shape)} like 'param', "
                             f"got {tuple(a.shape)}")
        if a.dtype != ref.dtype:
            raise TypeError(f"{where}: argument '{name}' must have dtype {ref.dtype} like 'param', got {a.dtype}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{where}: argument '{name}' must be contiguous")


_MIXED_GRAD_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def check_mixed_args(where: str, xp: Any, param: Any, grad: Any, m: Any, v: Any, inv_scale: Any, found_inf: Any,
                     max_v: Any = None) -> None:
    """adam_step_mixed's arrays: param, m, v, max_v 1-D contiguous float32 of one length; grad 1-D
    contiguous float16 / bfloat16 of that length; inv_scale (1,) float32; found_inf (1,) int32.
    Every message names the argument."""
    named = (("param", param), ("grad", grad), ("m", m), ("v", v), ("max_v", max_v), ("inv_scale", inv_scale),
             ("found_inf", found_inf))
    for name, a in named:
        if a is None and name == "max_v":
            continue
        if not isinstance(a, xp.ndarray):
            raise TypeError(f"{where}: argument '{name}' must be a {xp.__name__}.ndarray, got {type(a).__name__}")
    for name, a in (("param", param), ("m", m), ("v", v), ("max_v", max_v)):
        if a is not None and a.dtype != np.float32:
            raise TypeError(f"{where}: argument '{name}' must have dtype float32 (the master buffers), got {a.dtype}")
    if np.dtype(grad.dtype) not in _MIXED_GRAD_DTYPES:
        raise TypeError(f"{where}: argument 'grad' must have dtype float16 or bfloat16 (ml_dtypes.bfloat16), "
                        f"got {grad.dtype}")
    if param.ndim != 1:
        raise ValueError(f"{where}: argument 'param' must be a 1-D array, got shape {tuple(param.shape)}")
    for name, a in (("param", param), ("grad", grad), ("m", m), ("v", v), ("max_v", max_v)):
        if a is None:
            continue
        if tuple(a.shape) != tuple(param.shape):
            raise ValueError(f"{where}: argument '{name}' must have shape {tuple(param.shape)} like 'param', "
                             f"got {tuple(a.shape)}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{where}: argument '{name}' must be contiguous")
    for name, a in (("param", param), ("m", m), ("v", v), ("max_v", max_v)):
        if a is not None and not getattr(a.flags, "writeable", True):
            raise ValueError(f"{where}: argument '{name}' is updated in place and must be writable")
    for name, a, dt in (("inv_scale", inv_scale, np.float32), ("found_inf", found_inf, np.int32)):
        if a.dtype != dt:
            raise TypeError(f"{where}: argument '{name}' must have dtype {np.dtype(dt)}, got {a.dtype}")
        if tuple(a.shape) != (1,):
            raise ValueError(f"{where}: argument '{name}' must have shape (1,), got {tuple(a.shape)}")


class OptimOps:
    xp: Any

    def squared_norm(self, g: Any) -> float:
        """sum(g * g) of a flat vector, on the host (gradient clipping by norm). A plain reduction,
        no BLAS call: cuBLAS is not allowed in a step a CUDA graph will capture; the NumPy backend
        overrides it with BLAS's dot, which needs no temporary."""
        return float(self.xp.square(g).sum()) if g.size else 0.0

    def squared_norm_device(self, g: Any) -> Any:
        """sum(g * g) of a flat vector as a 1-element array of g's dtype, left on the device (no
        host read: clipnorm inside a captured step). A plain reduction, as in squared_norm."""
        return self.xp.square(g).sum(keepdims=True).reshape(1)

    def _optim_scratch(self, dtype: Any, size: int, count: int) -> list[Any]:
        """`count` scratch vectors of `size` elements, allocated once per calling thread and dtype."""
        local = self.__dict__.get("_optim_local")
        if local is None:
            local = self.__dict__.setdefault("_optim_local", threading.local())
        cache = getattr(local, "scratch", None)
        if cache is None:
            cache = local.scratch = {}
        key = (np.dtype(dtype).str, int(size), int(count))
        bufs = cache.get(key)
        if bufs is None:
            bufs = cache[key] = [self.xp.empty(size, dtype=dtype) for _ in range(count)]
        return bufs

    def adam_step(self, param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float,
                  eps: float, weight_decay: float, step: int, decoupled: bool, zero_grad: bool = False,
                  max_v: Any = None) -> None:
        """One Adam/AdamW update of the flat buffers in place; see the module docstring."""
        where = "adam_step"
        _check_flat(where, param, param=param, grad=grad, m=m, v=v, max_v=max_v)
        if np.dtype(param.dtype).kind != "f":
            raise TypeError(f"{where}: argument 'param' must be a floating-point array, got dtype {param.dtype}")
        int_arg(step, "step", where, 1, want="an int >= 1 (the count after increment)")
        n = int(param.shape[0])
        if n == 0:
            return
        c = adam_constants(lr, beta1, beta2, eps, step)
        consts = (float(beta1), float(beta2), c.eps_hat, c.step_size, float(weight_decay), bool(decoupled),
                  float(lr), bool(zero_grad))
        self._adam_update(param, grad, m, v, max_v, consts)

    def adam_step_device(self, param: Any, grad: Any, m: Any, v: Any, scalars: Any, beta1: float, beta2: float,
                         eps: float, weight_decay: float, decoupled: bool, zero_grad: bool = False,
                         max_v: Any = None) -> None:
        """adam_step with lr and step read from the device array `scalars` ([lr, step, ...], float64):
        no host read and no host-to-device copy, so a captured step replays it with the current
        values. See the module docstring."""
        where = "adam_step_device"
        _check_flat(where, param, param=param, grad=grad, m=m, v=v, max_v=max_v)
        if np.dtype(param.dtype).kind != "f":
            raise TypeError(f"{where}: argument 'param' must be a floating-point array, got dtype {param.dtype}")
        check_step_scalars(where, scalars, self.xp)
        n = int(param.shape[0])
        if n == 0:
            return
        work = self._optim_scratch(np.float64, 5, 1)[0]
        consts_t = self._optim_scratch(param.dtype, 3, 1)[0]
        adam_device_constants(self.xp, scalars, beta1, beta2, eps, weight_decay, decoupled, work, consts_t)
        x, y = self._optim_scratch(param.dtype, n, 2)
        adam_range_device(self.xp, param, grad, m, v, max_v, x, y, consts_t, float(beta1), float(beta2),
                          float(weight_decay), bool(decoupled), bool(zero_grad))

    def adam_step_mixed(self, param: Any, grad: Any, m: Any, v: Any, scalars: Any, beta1: float, beta2: float,
                        eps: float, weight_decay: float, decoupled: bool, inv_scale: Any, found_inf: Any,
                        max_v: Any = None) -> None:
        """adam_step_device on float32 master buffers from a float16 / bfloat16 gradient, unscaled by
        inv_scale[0], and skipped on the device when found_inf[0] != 0 (see the module docstring).

        No host read: the update goes into scratch copies (the same passes as adam_step_device, so
        the same bits as adam_step_device given float32(grad) * inv_scale[0]), and is copied back
        through a 1-element `found_inf == 0` mask; a skipped step leaves every buffer bit-identical."""
        where = "adam_step_mixed"
        xp = self.xp
        check_mixed_args(where, xp, param, grad, m, v, inv_scale, found_inf, max_v)
        check_step_scalars(where, scalars, xp)
        n = int(param.shape[0])
        if n == 0:
            return
        f32 = np.float32
        work = self._optim_scratch(np.float64, 5, 1)[0]
        consts_t = self._optim_scratch(f32, 3, 1)[0]
        adam_device_constants(xp, scalars, beta1, beta2, eps, weight_decay, decoupled, work, consts_t)
        bufs = self._optim_scratch(f32, n, 6 if max_v is None else 7)
        g, x, y, p2, m2, v2 = bufs[:6]
        mv2 = None if max_v is None else bufs[6]
        # a step that will be skipped may hold inf / NaN: NumPy's warnings about them are noise here
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            xp.copyto(g, grad, casting="unsafe")  # the exact widening
            xp.multiply(g, inv_scale, out=g)  # one float32 multiply (inv_scale broadcast, read on the device)
            for dst, src in ((p2, param), (m2, m), (v2, v), (mv2, max_v)):
                if dst is not None:
                    xp.copyto(dst, src)
            adam_range_device(xp, p2, g, m2, v2, mv2, x, y, consts_t, float(beta1), float(beta2),
                              float(weight_decay), bool(decoupled), False)
        ok = self._optim_scratch(np.bool_, 1, 1)[0]
        xp.equal(found_inf, 0, out=ok)
        for dst, src in ((param, p2), (m, m2), (v, v2), (max_v, mv2)):
            if dst is not None:
                xp.copyto(dst, src, where=ok)

    def _adam_update(self, param: Any, grad: Any, m: Any, v: Any, max_v: Any, consts: tuple) -> None:
        """Apply a validated update (consts as `adam_range` takes them): one pass over the buffer."""
        n = int(param.shape[0])
        x, y = self._optim_scratch(param.dtype, n, 2)
        adam_range(self.xp, param, grad, m, v, max_v, x, y, 0, n, n, consts)


def update_moments(xp: Any, m: Any, v: Any, g: Any, beta1: float, beta2: float, scratch: Any) -> None:
    """Adam's moments in place: m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2 (scratch is clobbered)."""
    m *= beta1
    xp.multiply(g, 1.0 - beta1, out=scratch)
    m += scratch
    v *= beta2
    xp.multiply(g, g, out=scratch)
    scratch *= 1.0 - beta2
    v += scratch


def adam_range(xp: Any, param: Any, grad: Any, m: Any, v: Any, max_v: Any, x_full: Any, y_full: Any,
                lo: int, hi: int, chunk: int, consts: tuple) -> None:
    """Update elements [lo, hi) chunk by chunk; every pass is in place into a chunk-sized scratch."""
    beta1, beta2, eps_hat, step_size, wd, decoupled, lr, zero_grad = consts
    coupled = wd != 0.0 and not decoupled
    shrink = 1.0 - lr * wd if (decoupled and wd != 0.0) else None
    for a in range(lo, hi, chunk):
        b = min(a + chunk, hi)
        k = b - a
        p, g0, mm, vv = param[a:b], grad[a:b], m[a:b], v[a:b]
        x, y = x_full[:k], y_full[:k]
        g = g0
        if coupled:
            # g + wd * p into scratch, so the caller's gradient is left as it was
            xp.multiply(p, wd, out=y)
            y += g0
            g = y
        if shrink is not None:
            p *= shrink
        update_moments(xp, mm, vv, g, beta1, beta2, x)
        if zero_grad:
            g0.fill(0)
        u = vv
        if max_v is not None:
            mv = max_v[a:b]
            xp.maximum(mv, vv, out=mv)
            u = mv
        _apply_moments(xp, p, mm, u, x, eps_hat, step_size)


def _apply_moments(xp: Any, p: Any, m: Any, u: Any, x: Any, eps_hat: Any, step_size: Any) -> None:
    """p -= step_size * m / (sqrt(u) + eps_hat), through the scratch x (scalars or 1-element arrays)."""
    xp.sqrt(u, out=x)
    x += eps_hat
    xp.divide(m, x, out=x)
    x *= step_size
    p -= x


def adam_range_device(xp: Any, param: Any, grad: Any, m: Any, v: Any, max_v: Any, x: Any, y: Any, consts_t: Any,
                      beta1: float, beta2: float, wd: float, decoupled: bool, zero_grad: bool) -> None:
    """adam_range over the whole buffer, with step_size, eps_hat and shrink read from the device
    (`consts_t`, param dtype, from `adam_device_constants`) as 1-element operands: the same passes
    in the same order, so the same bits as the host-scalar path given the same constants."""
    step_size, eps_hat, shrink = consts_t[0:1], consts_t[1:2], consts_t[2:3]
    g = grad
    if wd != 0.0 and not decoupled:
        xp.multiply(param, wd, out=y)
        y += grad
        g = y
    if decoupled and wd != 0.0:
        param *= shrink
    update_moments(xp, m, v, g, beta1, beta2, x)
    if zero_grad:
        grad.fill(0)
    u = v
    if max_v is not None:
        xp.maximum(max_v, v, out=max_v)
        u = max_v
    _apply_moments(xp, param, m, u, x, eps_hat, step_size)
