"""Optional numba-compiled CPU kernels for the NumPy backend: one module for every numba path.

numba is optional (the `cpu-jit` extra). It is imported on the first call, never at
`import gpunn`; without it, or when a kernel fails to compile, `disable()` turns the JIT off for
the process and every caller runs its NumPy path.

## Adam
NumPy's chunked adam_step (gpunn/backend/ops/optim.py) still makes a dozen elementwise passes
per chunk and one core cannot stream the 28 bytes/parameter of a step fast enough. Here the whole
update is one loop, split over gpunn's CPU threads (threads.py): each element is read and
written once.

Numerics: the loop performs the same IEEE operations in the same order and dtype as the chunked
path (constants rounded to the array dtype as NumPy does with Python scalars; fastmath off, so
no FMA contraction or reassociation), so the two agree bit for bit on this machine; the tests
allow 2 ulps. AMSGrad (max_v) is not compiled here: the caller falls back to the chunked path.

## The memory-bound ops
NumPy spends most of a small CNN's step moving memory: a tiled max-pool is a dozen strided passes,
batch norm a dozen elementwise passes. Here each op is one or two passes. The kernels are serial
and nogil; `_launch(..., split=...)` cuts their arrays along the first axis (planes, channels,
elements) and runs the pieces on gpunn's CPU threads (gpunn/backend/cpu/threads.py). numba's own
parallel=True is not used: its workers and OpenBLAS's spinning threads fought for the cores
(measured: LeNet-5 step 40 ms parallel vs 26 ms serial), while one pool that also runs the GEMMs
(with BLAS held to one thread) keeps every core busy with one thing.

- `maxpool_tiled_forward / _backward`: non-overlapping windows (stride == window, no padding) on
  contiguous planes (P, H, W). The contract of the generic op (gpunn/backend/ops/pool.py): int32
  argmax, the flat h*W + w inside the plane; ties and NaN resolved by a strict '>' scan in
  row-major window order from the first offset.
- `batchnorm_forward_train / batchnorm_backward`: per-channel statistics on (C, N, HW) views
  (channel-major conv outputs are contiguous there; NCHW arrays are a strided view of the same
  shape). Sums are accumulated in float64 and the variance is two-pass, as in
  gpunn/backend/ops/norm.py; results agree with it to rounding.

Every function returns None when it does not apply (numba missing or failing to compile, a dtype
other than float32/float64); the caller then runs the NumPy path.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from gpunn._checks import is_int
from gpunn.backend.cpu import threads as cpu_threads
from gpunn.backend.ops.optim import adam_constants

log = logging.getLogger(__name__)

#: the NumPy backend's Adam chunk without numba (cpu/backend.py): it splits over threads from 4 chunks
ADAM_CHUNK = 65536
#: below this many elements the serial kernel runs: a parallel launch costs more than it saves
#: (the same threshold the chunked path uses before it starts worker threads)
PARALLEL_MIN = 4 * ADAM_CHUNK

_lock = threading.Lock()
_state: dict[str, Any] = {}  # "ok": bool once probed; "kernel": the Adam dispatcher once built


def numba_available() -> bool:
    """Whether numba imports here (probed once, cached; never raises)."""
    ok = _state.get("ok")
    if ok is None:
        with _lock:
            ok = _state.get("ok")
            if ok is None:
                try:
                    import numba  # noqa: F401, PLC0415 - optional, and slow to import: only on first use
                    ok = True
                except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
                    log.debug("numba unavailable, CPU adam_step uses the chunked NumPy path: %s", exc)
                    ok = False
                _state["ok"] = ok
    return bool(ok)


def disable() -> None:
    """Turn the JIT off for this process (a kernel failed to compile): every caller then runs
    its NumPy path instead of retrying the compiler on every call."""
    _state["ok"] = False


def _adam_body(p, g, m, v, beta1, omb1, beta2, omb2, eps_hat, step_size, l2, shrink, coupled, decoupled,
               zero_grad):  # pragma: no cover - compiled by numba, see _build
    # Each statement mirrors one in-place pass of ops.optim.adam_range, in the same order.
    for i in range(p.shape[0]):
        gi = g[i]
        pi = p[i]
        if coupled:
            gi = pi * l2 + gi
        if decoupled:
            pi = pi * shrink
        mi = m[i] * beta1 + gi * omb1
        vi = v[i] * beta2 + (gi * gi) * omb2
        m[i] = mi
        v[i] = vi
        if zero_grad:
            g[i] = 0
        p[i] = pi - (mi / (np.sqrt(vi) + eps_hat)) * step_size


def compile_kernel(fn: Callable[..., Any], **options: Any) -> Any:
    """numba.njit(fn): nogil (gpunn's CPU threads run kernels side by side), error_model="numpy"
    (IEEE division without Python's zero-divisor branch, which kept loops from vectorizing: the
    Adam step went 3.1 -> 0.7 ns per element), and cached on disk where numba finds a writable
    cache location (else compiled once per process). Compilation itself happens on the first call."""
    import numba  # noqa: PLC0415 - optional, imported on first use

    opts = dict(nogil=True, error_model="numpy", **options)
    try:
        return numba.njit(cache=True, **opts)(fn)
    except RuntimeError:  # no writable cache location here
        return numba.njit(cache=False, **opts)(fn)


def _build() -> Any:
    """The compile-on-call Adam dispatcher (serial; cpu_threads splits the buffers). Types are
    fixed per call by the arguments."""
    kernel = _state.get("kernel")
    if kernel is None:
        with _lock:
            kernel = _state.get("kernel")
            if kernel is None:
                kernel = _state["kernel"] = compile_kernel(_adam_body, fastmath=False)
    return kernel


def _applies(arrays: tuple[Any, ...]) -> bool:
    """True when every buffer is a writable, contiguous 1-D float32/float64 NumPy array with
    param's shape and dtype. Anything else goes to the chunked path, which raises the errors."""
    p = arrays[0]
    if not isinstance(p, np.ndarray) or p.ndim != 1 or p.dtype not in (np.float32, np.float64):
        return False
    return all(isinstance(a, np.ndarray) and a.shape == p.shape and a.dtype == p.dtype
               and a.flags.c_contiguous and a.flags.writeable for a in arrays)


def adam_step(param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float,
              weight_decay: float, step: int, decoupled: bool, zero_grad: bool = False) -> bool:
    """One fused Adam/AdamW update in place (contract: gpunn/backend/ops/optim.py).

    Returns False, having changed nothing, when it does not apply (numba missing or failing to
    compile, unusual arrays, a bad `step`); the caller then runs the chunked path, which also
    reports bad input."""
    if not (is_int(step) and step >= 1):
        return False
    if not _applies((param, grad, m, v)) or not numba_available():
        return False
    n = int(param.shape[0])
    if n == 0:
        return True
    t = param.dtype.type
    # Host-side constants, computed in float64 exactly as the chunked path computes them and then
    # rounded to the array dtype (what NumPy does with a Python float against a float32 array).
    c = adam_constants(lr, beta1, beta2, eps, step)
    wd = float(weight_decay)
    coupled = wd != 0.0 and not decoupled
    shrink_on = bool(decoupled) and wd != 0.0
    args = (t(beta1), t(1.0 - float(beta1)), t(beta2), t(1.0 - float(beta2)), t(c.eps_hat),
            t(c.step_size), t(wd), t(1.0 - float(lr) * wd if shrink_on else 1.0),
            coupled, shrink_on, bool(zero_grad))
    try:
        kernel = _build()

        def part(lo: int, hi: int) -> None:
            kernel(param[lo:hi], grad[lo:hi], m[lo:hi], v[lo:hi], *args)
        # below PARALLEL_MIN elements one thread: a hand-off costs more than it saves
        cpu_threads.parallel_for(part, n, work=n if n >= PARALLEL_MIN else 0, align=4096)
        return True
    except Exception as exc:
        from numba.core.errors import NumbaError  # noqa: PLC0415

        if not isinstance(exc, NumbaError):
            raise
        # Compilation failed (nothing was written: typing/lowering precede the loop). Disable the
        # JIT for this process and let the chunked path do this and every later step.
        log.warning("numba could not compile the fused Adam kernel; using the chunked NumPy path: %s", exc)
        disable()
        return False


# -- the memory-bound ops (pool, batch norm, stride-1 conv, ReLU) ------------------------------
_kernels: dict[str, Any] = {}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# -- kernel bodies (compiled by numba; plain Python here) ----------------------------------------
def _pool_fwd(x, kh, kw, y, am):  # pragma: no cover - compiled
    p_count, h, w = x.shape
    oh, ow = y.shape[1], y.shape[2]
    for p in range(p_count):
        for r in range(oh):
            for s in range(ow):
                r0 = r * kh
                s0 = s * kw
                best = x[p, r0, s0]
                idx = r0 * w + s0
                for i in range(kh):
                    for j in range(kw):
                        v = x[p, r0 + i, s0 + j]
                        if v > best:
                            best = v
                            idx = (r0 + i) * w + s0 + j
                y[p, r, s] = best
                am[p, r, s] = idx


def _pool_fwd_2x2(x, y, am):  # pragma: no cover - compiled
    # The common 2x2 case, branch-free (selects), so the column loop vectorizes. Same scan order
    # and strict '>' as _pool_fwd: (0,0), (0,1), (1,0), (1,1).
    p_count, h, w = x.shape
    oh, ow = y.shape[1], y.shape[2]
    for p in range(p_count):
        for r in range(oh):
            t = x[p, 2 * r]
            u = x[p, 2 * r + 1]
            base = 2 * r * w
            yr = y[p, r]
            ar = am[p, r]
            for s in range(ow):
                best = t[2 * s]
                k = 0
                v = t[2 * s + 1]
                g = v > best
                best = v if g else best
                k = 1 if g else k
                v = u[2 * s]
                g = v > best
                best = v if g else best
                k = w if g else k
                v = u[2 * s + 1]
                g = v > best
                best = v if g else best
                k = w + 1 if g else k
                yr[s] = best
                ar[s] = base + 2 * s + k


def _pool_bwd(dy, am, dx):  # pragma: no cover - compiled
    p_count, h, w = dx.shape
    oh, ow = dy.shape[1], dy.shape[2]
    for p in range(p_count):
        plane = dx[p]
        for r in range(h):
            for s in range(w):
                plane[r, s] = 0
        for r in range(oh):
            for s in range(ow):
                k = am[p, r, s]
                plane[k // w, k % w] += dy[p, r, s]


def _pool_bwd_2x2(dy, am, dx):  # pragma: no cover - compiled
    # Every covered input pixel written once (its window's share or zero), so no zero fill first
    # except for a ragged last row/column that no window covers.
    p_count, h, w = dx.shape
    oh, ow = dy.shape[1], dy.shape[2]
    for p in range(p_count):
        if 2 * oh < h:
            for s in range(w):
                dx[p, h - 1, s] = 0
        if 2 * ow < w:
            for r in range(h):
                dx[p, r, w - 1] = 0
        for r in range(oh):
            t = dx[p, 2 * r]
            u = dx[p, 2 * r + 1]
            base = 2 * r * w
            gr = dy[p, r]
            ar = am[p, r]
            for s in range(ow):
                k = ar[s] - base - 2 * s
                g = gr[s]
                t[2 * s] = g if k == 0 else 0
                t[2 * s + 1] = g if k == 1 else 0
                u[2 * s] = g if k == w else 0
                u[2 * s + 1] = g if k == w + 1 else 0


def _bn_stats(x, mean, var):  # pragma: no cover - compiled
    # x: (C, N, HW). Two passes per channel, float64 sums.
    c_count, n, hw = x.shape
    m = n * hw
    for c in range(c_count):
        s = 0.0
        for i in range(n):
            for k in range(hw):
                s += x[c, i, k]
        mu = s / m
        q = 0.0
        for i in range(n):
            for k in range(hw):
                d = x[c, i, k] - mu
                q += d * d
        mean[c] = mu
        var[c] = q / m


def _bn_apply(x, mean, scale, shift, relu, y):  # pragma: no cover - compiled
    # y = (x - mean) * scale + shift, in y's dtype; with `relu`, max(., 0) in the same pass (NaN
    # propagates, as relu_forward)
    c_count, n, hw = x.shape
    for c in range(c_count):
        mu = mean[c]
        sc = scale[c]
        sh = shift[c]
        for i in range(n):
            for k in range(hw):
                v = (x[c, i, k] - mu) * sc + sh
                y[c, i, k] = 0.0 if relu and v <= 0 else v


def _bn_bwd(dy, y, masked, x, mean, invstd, k_scale, dx, dgamma, dbeta):  # pragma: no cover - compiled
    # Two passes per channel: the sums of dy and dy * xhat (float64), then dx. With `masked`, dy
    # counts only where y > 0 (y: the output of a ReLU fused after the batch norm).
    c_count, n, hw = x.shape
    m = n * hw
    for c in range(c_count):
        mu = mean[c]
        inv = invstd[c]
        sb = 0.0
        sg = 0.0
        for i in range(n):
            for k in range(hw):
                d = 0.0 if masked and not y[c, i, k] > 0 else dy[c, i, k]
                sb += d
                sg += d * ((x[c, i, k] - mu) * inv)
        dbeta[c] = sb
        dgamma[c] = sg
        kc = k_scale[c]
        b = sb / m
        g = sg / m
        for i in range(n):
            for k in range(hw):
                xhat = (x[c, i, k] - mu) * inv
                d = 0.0 if masked and not y[c, i, k] > 0 else dy[c, i, k]
                dx[c, i, k] = kc * (d - (b + xhat * g))


def _frame_corr(src, base, offs, w, count, frame, span, out):  # pragma: no cover - compiled
    # out[f, p] = sum_{o, r} w[f, o*R + r] * src[r, base + p + offs[o]] for p < count, only at the
    # first `span` positions of every `frame` (the rest of a frame is outside the output): the frame
    # conv's GEMM over its im2col columns, without building them. Per block of positions every
    # output row accumulates in a small scratch that stays in L1; taps go four at a time, so each
    # pass over a scratch row does four multiply-adds per load and store (measured 25-35% faster
    # than one tap per pass).
    nf = out.shape[0]
    nr = src.shape[0]
    nk = offs.shape[0] * nr  # taps: k = o*R + r
    blk = 256
    acc = np.empty((nf, blk), dtype=out.dtype)  # shared by every block: a serial loop
    for f0 in range(0, count, frame):  # the first `span` positions of every frame
        end = min(f0 + span, count)
        for p0 in range(f0, end, blk):
            m = min(blk, end - p0)
            acc[:] = 0
            k = 0
            while k < nk:
                t = min(4, nk - k)
                a0 = base + p0 + offs[k // nr]
                x0 = src[k % nr, a0:a0 + m]
                if t == 4:
                    a1 = base + p0 + offs[(k + 1) // nr]
                    a2 = base + p0 + offs[(k + 2) // nr]
                    a3 = base + p0 + offs[(k + 3) // nr]
                    x1 = src[(k + 1) % nr, a1:a1 + m]
                    x2 = src[(k + 2) % nr, a2:a2 + m]
                    x3 = src[(k + 3) % nr, a3:a3 + m]
                    for f in range(nf):
                        w0 = w[f, k]
                        w1 = w[f, k + 1]
                        w2 = w[f, k + 2]
                        w3 = w[f, k + 3]
                        af = acc[f]
                        for q in range(m):
                            af[q] += w0 * x0[q] + w1 * x1[q] + w2 * x2[q] + w3 * x3[q]
                    k += 4
                else:
                    for f in range(nf):
                        w0 = w[f, k]
                        af = acc[f]
                        for q in range(m):
                            af[q] += w0 * x0[q]
                    k += 1
            for f in range(nf):
                for q in range(m):
                    out[f, p0 + q] = acc[f, q]


def _im2col_win(x, s0, kh, kw, dh, dw, oh, ow, cols):  # pragma: no cover - compiled
    # cols[(i*kw + j)*C + c, (s*OH + y)*OW + u] = x[c, s0 + s, y + i*dh, u + j*dw]: the im2col
    # columns of samples s0.. at valid output positions, from padded frames x (C, N, Hp, Wp).
    nc = x.shape[0]
    m = cols.shape[1] // (oh * ow)
    for i in range(kh):
        for j in range(kw):
            for c in range(nc):
                row = cols[(i * kw + j) * nc + c]
                for s in range(m):
                    for y in range(oh):
                        src = x[c, s0 + s, y + i * dh, j * dw:j * dw + ow]
                        o = (s * oh + y) * ow
                        for u in range(ow):
                            row[o + u] = src[u]


def _col2im_win(dcols, kh, kw, dh, dw, oh, ow, dx):  # pragma: no cover - compiled
    # The adjoint of _im2col_win into zeroed frames dx (C, m, Hp, Wp): every column entry added
    # back at its input pixel. One sample's frames at a time, so the adds stay in cache.
    nc, m = dx.shape[0], dx.shape[1]
    dx[...] = 0
    for s in range(m):
        for i in range(kh):
            for j in range(kw):
                for c in range(nc):
                    row = dcols[(i * kw + j) * nc + c]
                    for y in range(oh):
                        dst = dx[c, s, y + i * dh, j * dw:j * dw + ow]
                        o = (s * oh + y) * ow
                        for u in range(ow):
                            dst[u] += row[o + u]


def _frame_dw(dy, dbase, src, sbase, offs, count, frame, span, dw):  # pragma: no cover - compiled
    # dw[f, o*R + r] = sum_{p < count} dy[f, dbase + p] * src[r, sbase + p + offs[o]] over the first
    # `span` positions of every `frame` (dy is zero elsewhere), in blocks of positions (each
    # block's dot products in the array dtype, the blocks summed in float64).
    # dy comes whole with an offset, not as a column slice: numba vectorizes only unit-stride
    # ('C') rows, and a sliced 2-D view is typed 'A' (measured 17x slower).
    nf = dy.shape[0]
    nr = src.shape[0]
    no = offs.shape[0]
    blk = 2048
    acc = np.zeros(dw.shape, dtype=np.float64)
    for f0 in range(0, count, frame):  # the first `span` positions of every frame
        end = min(f0 + span, count)
        for p0 in range(f0, end, blk):
            m = min(blk, end - p0)
            f = 0
            while f + 4 <= nf:  # four dy rows share each load of an input slice
                d0 = dy[f, dbase + p0:dbase + p0 + m]
                d1 = dy[f + 1, dbase + p0:dbase + p0 + m]
                d2 = dy[f + 2, dbase + p0:dbase + p0 + m]
                d3 = dy[f + 3, dbase + p0:dbase + p0 + m]
                for o in range(no):
                    a = sbase + p0 + offs[o]
                    for r in range(nr):
                        xs = src[r, a:a + m]
                        v = xs[0]
                        s0 = d0[0] * v
                        s1 = d1[0] * v
                        s2 = d2[0] * v
                        s3 = d3[0] * v
                        for q in range(1, m):
                            v = xs[q]
                            s0 += d0[q] * v
                            s1 += d1[q] * v
                            s2 += d2[q] * v
                            s3 += d3[q] * v
                        k = o * nr + r
                        acc[f, k] += s0
                        acc[f + 1, k] += s1
                        acc[f + 2, k] += s2
                        acc[f + 3, k] += s3
                f += 4
            while f < nf:
                d = dy[f, dbase + p0:dbase + p0 + m]
                for o in range(no):
                    a = sbase + p0 + offs[o]
                    for r in range(nr):
                        xs = src[r, a:a + m]
                        s = d[0] * xs[0]
                        for q in range(1, m):
                            s += d[q] * xs[q]
                        acc[f, o * nr + r] += s
                f += 1
    for f in range(nf):
        for k in range(dw.shape[1]):
            dw[f, k] = acc[f, k]


def _relu_fwd(x, y):  # pragma: no cover - compiled
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = 0.0 if v <= 0 else v  # NaN fails the test and propagates, as np.maximum


def _relu_bwd(dy, y, dx):  # pragma: no cover - compiled
    for i in range(dy.shape[0]):
        dx[i] = dy[i] if y[i] > 0 else 0.0


_BODIES = {name: globals()[f"_{name}"] for name in (
    "pool_fwd", "pool_fwd_2x2", "pool_bwd", "pool_bwd_2x2", "bn_stats", "bn_apply", "bn_bwd",
    "frame_corr", "frame_dw", "im2col_win", "col2im_win", "relu_fwd", "relu_bwd")}
# Reductions may be reassociated (vectorized); nothing else changes the IEEE operations.
_FASTMATH = {"bn_stats": {"reassoc", "contract"}, "bn_bwd": {"reassoc", "contract"},
             "frame_corr": {"contract"}, "frame_dw": {"reassoc", "contract"}}


def _kernel(name: str) -> Any:
    """The numba dispatcher for one body (built once), or None without numba."""
    k = _kernels.get(name)
    if k is not None:
        return k
    if not numba_available():
        return None
    with _lock:
        k = _kernels.get(name)
        if k is None:
            k = _kernels[name] = compile_kernel(_BODIES[name], fastmath=_FASTMATH.get(name, False))
    return k


def _launch(name: str, *args: Any, split: tuple[int, ...] = ()) -> bool:
    """Run kernel `name`; False (nothing written that the caller keeps) when numba cannot.

    `split` names the arguments cut along their first axis into one range per thread
    (gpunn/backend/cpu/threads.py); the kernels are serial and nogil, so the ranges run at once."""
    k = _kernel(name)
    if k is None:
        return False
    try:
        if split:
            def part(lo: int, hi: int) -> None:
                k(*(a[lo:hi] if i in split else a for i, a in enumerate(args)))
            cpu_threads.parallel_for(part, args[split[0]].shape[0], work=sum(args[i].size for i in split))
        else:
            k(*args)
        return True
    except Exception as exc:
        from numba.core.errors import NumbaError  # noqa: PLC0415

        if not isinstance(exc, NumbaError):
            raise
        log.warning("numba could not compile %s; using the NumPy path: %s", name, exc)
        _kernels[name] = None
        disable()  # stop trying in this process
        return False


# -- entry points --------------------------------------------------------------------------------
def maxpool_tiled_forward(planes: np.ndarray, kh: int, kw: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(y, argmax) over (P, H, W) planes for kh x kw windows at stride (kh, kw), or None."""
    if planes.dtype not in _FLOATS or not numba_available():
        return None
    p, h, w = planes.shape
    y = np.empty((p, h // kh, w // kw), dtype=planes.dtype)
    am = np.empty(y.shape, dtype=np.int32)
    if kh == kw == 2:
        return (y, am) if _launch("pool_fwd_2x2", planes, y, am, split=(0, 1, 2)) else None
    return (y, am) if _launch("pool_fwd", planes, kh, kw, y, am, split=(0, 3, 4)) else None


def maxpool_tiled_backward(dy: np.ndarray, argmax: np.ndarray, h: int, w: int, kh: int,
                           kw: int) -> np.ndarray | None:
    """dx planes (P, H, W) from dy and argmax planes (P, OH, OW), or None. Every window is disjoint,
    so each input pixel receives at most one share."""
    if dy.dtype not in _FLOATS or argmax.dtype != np.int32 or not numba_available():
        return None
    dx = np.empty((dy.shape[0], h, w), dtype=dy.dtype)
    if kh == kw == 2:
        return dx if _launch("pool_bwd_2x2", dy, argmax, dx, split=(0, 1, 2)) else None
    return dx if _launch("pool_bwd", dy, argmax, dx, split=(0, 1, 2)) else None


def batchnorm_stats(x3: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (mean, biased var) in float64 over x3 (C, N, HW), or None."""
    if x3.dtype not in _FLOATS or not numba_available():
        return None
    mean = np.empty(x3.shape[0], dtype=np.float64)
    var = np.empty(x3.shape[0], dtype=np.float64)
    return (mean, var) if _launch("bn_stats", x3, mean, var, split=(0, 1, 2)) else None


def batchnorm_apply(x3: np.ndarray, mean: np.ndarray, scale: np.ndarray, shift: np.ndarray,
                    y3: np.ndarray, relu: bool = False) -> bool:
    """y3 = (x3 - mean) * scale + shift per channel (all (C,) in x's dtype), then max(., 0) when
    `relu`; False if not run."""
    return x3.dtype in _FLOATS and numba_available() and _launch(
        "bn_apply", x3, mean, scale, shift, bool(relu), y3, split=(0, 1, 2, 3, 5))


def batchnorm_backward(dy3: np.ndarray, x3: np.ndarray, mean: np.ndarray, invstd: np.ndarray,
                       k_scale: np.ndarray, dx3: np.ndarray,
                       relu_y3: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Writes dx3 and returns float64 (dgamma, dbeta), or None when it did not run. With relu_y3
    (a fused ReLU's output) dy3 counts only where relu_y3 > 0."""
    if x3.dtype not in _FLOATS or dy3.dtype != x3.dtype or not numba_available():
        return None
    dgamma = np.empty(x3.shape[0], dtype=np.float64)
    dbeta = np.empty(x3.shape[0], dtype=np.float64)
    y3 = dy3 if relu_y3 is None else relu_y3  # unread without a mask
    ok = _launch("bn_bwd", dy3, y3, relu_y3 is not None, x3, mean, invstd, k_scale, dx3, dgamma, dbeta,
                 split=(0, 1, 3, 4, 5, 6, 7, 8, 9))
    return (dgamma, dbeta) if ok else None


def frame_corr(src: np.ndarray, base: int, offsets: np.ndarray, w: np.ndarray, count: int,
               out: np.ndarray, frame: int = 0, span: int = 0) -> bool:
    """out[f, p] = sum_{o, r} w[f, o*R + r] * src[r, base + p + offsets[o]] for p < count (R =
    src rows); every index must be in range (the caller's frame geometry guarantees it). False
    when it did not run."""
    if src.dtype not in _FLOATS or not (src.dtype == w.dtype == out.dtype) or not numba_available():
        return False
    return _launch("frame_corr", src, base, offsets, w, count, frame or count, span or frame or count, out)


def frame_dw(dy: np.ndarray, dbase: int, src: np.ndarray, sbase: int, offsets: np.ndarray, count: int,
             dw: np.ndarray, frame: int = 0, span: int = 0) -> bool:
    """dw[f, o*R + r] = sum_{p < count} dy[f, dbase + p] * src[r, sbase + p + offsets[o]]; False when it did
    not run. Pass C-contiguous arrays (strided ones compile to scalar code)."""
    if src.dtype not in _FLOATS or not (src.dtype == dy.dtype == dw.dtype) or count < 1 \
            or not numba_available():
        return False
    return _launch("frame_dw", dy, dbase, src, sbase, offsets, count, frame or count, span or frame or count, dw)


def relu_forward(x: np.ndarray, y: np.ndarray) -> bool:
    """y = max(x, 0) over 1-D arrays, NaN propagating; False when it did not run."""
    return x.dtype in _FLOATS and y.dtype == x.dtype and numba_available() \
        and _launch("relu_fwd", x, y, split=(0, 1))


def relu_backward(dy: np.ndarray, y: np.ndarray, dx: np.ndarray) -> bool:
    """dx = dy where y > 0, else 0, over 1-D arrays; False when it did not run."""
    return dy.dtype in _FLOATS and dy.dtype == y.dtype == dx.dtype and numba_available() \
        and _launch("relu_bwd", dy, y, dx, split=(0, 1, 2))


def im2col_window(x: np.ndarray, s0: int, kernel: tuple[int, int], dilation: tuple[int, int],
                  out_hw: tuple[int, int], cols: np.ndarray) -> bool:
    """Fill cols (kh*kw*C, m*OH*OW) from padded frames x (C, N, Hp, Wp), samples s0..s0+m;
    False when it did not run."""
    return x.dtype in _FLOATS and cols.dtype == x.dtype and numba_available() \
        and _launch("im2col_win", x, s0, *kernel, *dilation, *out_hw, cols)


def col2im_window(dcols: np.ndarray, kernel: tuple[int, int], dilation: tuple[int, int], out_hw: tuple[int, int],
                  dx: np.ndarray) -> bool:
    """dx (C, m, Hp, Wp) = the adjoint of im2col_window applied to dcols; False when it did not run."""
    return dx.dtype in _FLOATS and dcols.dtype == dx.dtype and numba_available() \
        and _launch("col2im_win", dcols, *kernel, *dilation, *out_hw, dx)
