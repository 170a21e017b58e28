"""Optional numba-compiled CPU kernels: a fused, multithreaded Adam/AdamW step over flat buffers.

NumPy's chunked adam_step (gpunn/backend/ops/optim.py) still makes a dozen elementwise passes
per chunk and one core cannot stream the 28 bytes/parameter of a step fast enough. Here the whole
update is one loop, split over gpunn's CPU threads (cpu_threads.py): each element is read and
written once.

numba is optional (the `cpu-jit` extra). It is imported on the first call, never at
`import gpunn`; without it, or when it fails to compile, the backend runs the chunked path.

Numerics: the loop performs the same IEEE operations in the same order and dtype as the chunked
path (constants rounded to the array dtype as NumPy does with Python scalars; fastmath off, so
no FMA contraction or reassociation), so the two agree bit for bit on this machine; the tests
allow 2 ulps. AMSGrad (max_v) is not compiled here: the caller falls back to the chunked path.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from gpunn.backend import cpu_threads
from gpunn.backend.ops import optim as optim_ops

log = logging.getLogger(__name__)

#: below this many elements the serial kernel runs: a parallel launch costs more than it saves
#: (the same threshold the chunked path uses before it starts worker threads)
PARALLEL_MIN = 4 * optim_ops.CPU_CHUNK

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


def _adam_body(p, g, m, v, beta1, omb1, beta2, omb2, eps_hat, step_size, l2, shrink, coupled, decoupled,
               zero_grad):  # pragma: no cover - compiled by numba, see _build
    # Each statement mirrors one in-place pass of optim._adam_range, in the same order.
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
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        return False
    if not _applies((param, grad, m, v)) or not numba_available():
        return False
    n = int(param.shape[0])
    if n == 0:
        return True
    t = param.dtype.type
    # Host-side constants, computed in float64 exactly as the chunked path computes them and then
    # rounded to the array dtype (what NumPy does with a Python float against a float32 array).
    bc1 = 1.0 - float(beta1) ** int(step)
    sqrt_bc2 = (1.0 - float(beta2) ** int(step)) ** 0.5
    wd = float(weight_decay)
    coupled = wd != 0.0 and not decoupled
    shrink_on = bool(decoupled) and wd != 0.0
    args = (t(beta1), t(1.0 - float(beta1)), t(beta2), t(1.0 - float(beta2)), t(float(eps) * sqrt_bc2),
            t(float(lr) * sqrt_bc2 / bc1), t(wd), t(1.0 - float(lr) * wd if shrink_on else 1.0),
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
        _state["ok"] = False
        return False
