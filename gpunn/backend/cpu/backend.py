"""The CPU backend: NumPy, with CPU-specific fast paths, split over gpunn's CPU threads.

The generic ops (gpunn/backend/ops/*.py) keep the layouts the CUDA kernels implement: im2col's
(N, C*kh*kw, OH*OW) columns, max-pool's int32 flat argmax. On a CPU most of their time goes to
memory reshuffling, not arithmetic, so this backend overrides the ops whose cache the layers treat
as opaque:

- **Convolution at stride 1**: gpunn/backend/cpu/conv.py (FrameConvOps, mixed in here).
- **Max-pooling with non-overlapping windows** (stride == window, no padding) works on contiguous
  planes in whichever layout the input has (channel-major from the convs), one numba pass each
  way; the NumPy fallback reads the window offsets as strided views and tracks the winner with
  arithmetic. argmax keeps the int32 flat-index contract and first-offset ties.
- **Batch norm** (optionally with the ReLU after it), **ReLU**, **2-D matmul** and **Adam**: one
  or two numba passes, split by channels, elements or rows.
Anything else (strided convolutions, overlapping or padded pools) runs the generic op.

The numba kernels (the `cpu-jit` extra) live in gpunn/backend/cpu/jit.py, each
with a NumPy fallback here; `fast_paths=False` routes every op to the generic implementation.
Results agree with the generic path to rounding (the GEMMs sum in another order); the parity
tests in tests/backend/cpu/test_backend.py and tests/backend/cpu/test_jit.py pin that down in float64.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from gpunn.backend.cpu import jit as cpu_jit
from gpunn.backend.cpu import threads as cpu_threads
from gpunn.backend.base import Backend
from gpunn.backend.cpu.conv import FrameConvOps
from gpunn.backend.ops.activation import check_relu_grad
from gpunn.backend.ops.cast import is_half
from gpunn.backend.ops.dense import check_matmul
from gpunn.backend.ops.norm import stat_dtype, update_running_stats
from gpunn.backend.ops.optim import _check_flat, adam_range, check_step_scalars

Pair = tuple[int, int]



def _flat(a: Any) -> np.ndarray | None:
    """A 1-D view of every element of `a` in memory order, when `a` is a float array that fills
    its memory densely in some axis order (NCHW, or the channel-major views the convs return)."""
    if not isinstance(a, np.ndarray) or a.dtype.kind != "f" or a.size == 0:
        return None
    if a.flags.c_contiguous:
        return a.reshape(-1)
    t = a.transpose(np.argsort([-abs(st) for st in a.strides], kind="stable"))
    return t.reshape(-1) if t.flags.c_contiguous else None


# matmul counts 1/_MATMUL_WORK_DIV of its multiply-adds as work, so it splits over threads only
# above about 256 * cpu_threads.MIN_WORK (33M) of them: a LeNet-5 dense layer's GEMMs stay on one
# thread, where a pool hand-off costs more than it saves (measured 16 and 4: no gain or slower)
_MATMUL_WORK_DIV = 256

#: Adam's elements per chunk without numba: the ~5 float32 arrays a chunk touches (256 KiB each)
#: stay in a 2 MiB L2 across the dozen elementwise passes, instead of streaming DRAM a dozen times.
ADAM_CHUNK = cpu_jit.ADAM_CHUNK


class NumpyBackend(FrameConvOps, Backend):
    name = "numpy"
    device = "cpu"

    def __init__(self, fast_paths: bool = True) -> None:
        super().__init__(np)
        #: False routes every op to the generic implementation (for parity tests and benchmarks)
        self.fast_paths = fast_paths
        # Scratch reused across calls (no page faults per step); per thread, as backends are shared.
        self._scratch = threading.local()

    def _buffer(self, key: str, shape: tuple[int, ...], dtype: np.dtype, zero: bool = False) -> np.ndarray:
        """A scratch array that lives only inside one op call, reused across calls.

        With zero=True it is zeroed when first made; callers then only write the region they
        rewrite on every call, so the rest stays zero."""
        store = self._scratch.__dict__
        full_key = (key, shape, np.dtype(dtype).str)
        buf = store.get(full_key)
        if buf is None:
            if len(store) > 64:  # shapes vary (e.g. a last short batch): keep the cache bounded
                store.clear()
            buf = store[full_key] = (np.zeros if zero else np.empty)(shape, dtype=dtype)
        return buf

    def release_scratch(self) -> None:
        """Drop this thread's reused scratch buffers (they are remade on the next call)."""
        self._scratch.__dict__.clear()

    # -- optimizers ---------------------------------------------------------------------------
    def adam_step(self, param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float,
                  weight_decay: float, step: int, decoupled: bool, zero_grad: bool = False,
                  max_v: Any = None) -> None:
        """The fused numba kernel (gpunn/backend/cpu/jit.py) when numba is installed; otherwise,
        and for AMSGrad or unusual arrays, the generic chunked path (which also reports bad input)."""
        if self.fast_paths and max_v is None and cpu_jit.adam_step(
                param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled, zero_grad=zero_grad):
            return
        super().adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled,
                          zero_grad=zero_grad, max_v=max_v)

    def adam_step_device(self, param: Any, grad: Any, m: Any, v: Any, scalars: Any, beta1: float, beta2: float,
                         eps: float, weight_decay: float, decoupled: bool, zero_grad: bool = False,
                         max_v: Any = None) -> None:
        """Here "device" memory is host memory: lr and step are read from `scalars` and the host-
        scalar adam_step runs (the numba kernel or the chunked path: the same bits as before)."""
        where = "adam_step_device"
        _check_flat(where, param, param=param, grad=grad, m=m, v=v, max_v=max_v)
        check_step_scalars(where, scalars, np)
        lr, step = float(scalars[0]), float(scalars[1])
        if not (step >= 1.0 and step == int(step)):
            raise ValueError(f"{where}: argument 'scalars' must hold the step count (an int >= 1) in scalars[1], "
                             f"got {step!r}")
        self.adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, int(step), decoupled,
                       zero_grad=zero_grad, max_v=max_v)

    def _adam_update(self, param: Any, grad: Any, m: Any, v: Any, max_v: Any, consts: tuple) -> None:
        """The generic update walked in ADAM_CHUNK pieces: contiguous, chunk-aligned slices over
        gpunn's CPU threads (below 4 chunks: one slice), each with its own scratch."""
        n = int(param.shape[0])
        threads = cpu_threads.get_num_threads() if n >= 4 * ADAM_CHUNK else 1
        ranges = cpu_threads.split(n, threads, align=ADAM_CHUNK)
        scratch = self._optim_scratch(param.dtype, min(n, ADAM_CHUNK), 2 * len(ranges))
        slot = {lo: i for i, (lo, _) in enumerate(ranges)}

        def part(lo: int, hi: int) -> None:
            i = slot[lo]
            adam_range(np, param, grad, m, v, max_v, scratch[2 * i], scratch[2 * i + 1], lo, hi, ADAM_CHUNK, consts)
        cpu_threads.run(part, ranges)

    def squared_norm(self, g: Any) -> float:
        """BLAS's dot: one pass, no temporary."""
        return float(g.dot(g)) if g.size else 0.0

    def squared_norm_device(self, g: Any) -> Any:
        """BLAS's dot into a 1-element array (the host is this backend's device)."""
        out = np.zeros(1, dtype=g.dtype)
        if g.size:
            out[0] = g.dot(g)
        return out

    # -- dense and activations ----------------------------------------------------------------
    def matmul(self, a: Any, b: Any) -> Any:
        """2-D float products split by rows over gpunn's CPU threads (BLAS held to one thread)."""
        check_matmul(a, b)
        # float16 (kind "f") and bfloat16 take the generic op: float32 compute, one rounding
        if not (self.fast_paths and isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.ndim == 2
                and b.ndim == 2 and a.dtype.kind == "f" and b.dtype.kind == "f" and not is_half(a)
                and not is_half(b)):
            return super().matmul(a, b)
        if self.matmul_precision == "tf32" and a.dtype == np.float32 and b.dtype == np.float32:
            a, b = self.round_tf32(a), self.round_tf32(b)  # then float32 products of TF32 values
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a.dtype, b.dtype))

        def rows(lo: int, hi: int) -> None:
            np.matmul(a[lo:hi], b, out=out[lo:hi])
        cpu_threads.parallel_for(rows, a.shape[0], work=a.size * b.shape[1] // _MATMUL_WORK_DIV)
        return out

    def relu_forward(self, x: Any) -> Any:
        y = self._flat_op(cpu_jit.relu_forward, x)
        return super().relu_forward(x) if y is None else y

    def relu_backward(self, dy: Any, y: Any) -> Any:
        check_relu_grad(dy, y)
        dx = self._flat_op(cpu_jit.relu_backward, dy, y)
        return super().relu_backward(dy, y) if dx is None else dx

    def _flat_op(self, kernel: Any, *arrays: Any) -> np.ndarray | None:
        """kernel(*flat inputs, flat output) over every element, the output a new array in the
        inputs' memory order (all must share it); None, for the generic op, when that does not apply."""
        flats = [_flat(a) for a in arrays] if self.fast_paths else [None]
        if any(f is None for f in flats) or any(a.strides != arrays[0].strides or a.dtype != arrays[0].dtype
                                                for a in arrays):
            return None
        out = np.empty_like(arrays[0])  # keeps the memory order, so the flat views line up
        out_flat = _flat(out)
        if out.strides != arrays[0].strides or out_flat is None or not kernel(*flats, out_flat):
            return None
        return out

    # -- pooling ------------------------------------------------------------------------------
    def _tiled_pool(self, kh: int, kw: int, stride: Pair, padding: Pair) -> bool:
        return self.fast_paths and stride == (kh, kw) and padding == (0, 0)

    @staticmethod
    def _planes(x: np.ndarray) -> tuple[np.ndarray, bool]:
        """x (N, C, H, W) as contiguous planes (P, H, W), and whether they are channel-major.

        NumPy iterates a plain 3-D array much faster than a transposed 4-D view, so the pools
        work on planes: channel-major (C, N) order when x is laid out so (the fast conv's
        output), else NCHW order."""
        n, c, h, w = x.shape
        cn = x.transpose(1, 0, 2, 3)
        if cn.flags.c_contiguous and not x.flags.c_contiguous:
            return cn.reshape(c * n, h, w), True
        return np.ascontiguousarray(x).reshape(n * c, h, w), False

    @staticmethod
    def _unplanes(p: np.ndarray, n: int, c: int, channel_major: bool) -> np.ndarray:
        h, w = p.shape[1:]
        if channel_major:
            return p.reshape(c, n, h, w).transpose(1, 0, 2, 3)
        return p.reshape(n, c, h, w)

    def maxpool2d_forward(self, x: Any, kh: int, kw: int, stride: Pair, padding: Pair) -> tuple[Any, Any]:
        if not self._tiled_pool(kh, kw, stride, padding) or x.size == 0:
            return super().maxpool2d_forward(x, kh, kw, stride, padding)
        n, c, h, w = x.shape
        oh, ow = h // kh, w // kw
        planes, cmajor = self._planes(x)
        jit = cpu_jit.maxpool_tiled_forward(planes, kh, kw)  # one fused pass when numba is here
        if jit is not None:
            return self._unplanes(jit[0], n, c, cmajor), self._unplanes(jit[1], n, c, cmajor)
        planes = planes[:, :oh * kh, :ow * kw]
        # Masked copies (copyto/where) are ~10x slower than arithmetic in NumPy, so the winner is
        # tracked arithmetically, columns first, then rows. A strict '>' scan in window order
        # keeps the first maximal offset in row-major order: the first row holding the maximum,
        # then the first column of that row holding it (as the kernel's tie rule). NaN propagates
        # into y here (np.maximum), as in PyTorch; the generic op skips a NaN after the first offset.
        mcol = planes[:, :, 0::kw]  # (P, OH*kh, OW): the maximum over each window row
        jidx = None  # which column of the window row holds it (None: all zero)
        if kw > 1:
            mcol = mcol.copy()
            jidx = np.zeros(mcol.shape, dtype=np.int16)
            for j in range(1, kw):
                cand = planes[:, :, j::kw]
                better = cand > mcol
                np.maximum(mcol, cand, out=mcol)
                jidx += better * (np.int16(j) - jidx)
        y = mcol[:, 0::kh].copy()
        iidx = np.zeros(y.shape, dtype=np.int16)
        jwin = jidx[:, 0::kh].copy() if jidx is not None else None
        for i in range(1, kh):
            cand = mcol[:, i::kh]
            better = cand > y
            np.maximum(y, cand, out=y)
            iidx += better * (np.int16(i) - iidx)
            if jwin is not None:
                jwin += better * (jidx[:, i::kh] - jwin)
        argmax = np.multiply(iidx, np.int32(w), dtype=np.int32)
        argmax += self._pool_origin(oh, ow, kh, kw, w)
        if jwin is not None:
            argmax += jwin
        return self._unplanes(y, n, c, cmajor), self._unplanes(argmax, n, c, cmajor)

    @staticmethod
    def _pool_origin(oh: int, ow: int, kh: int, kw: int, w: int) -> np.ndarray:
        """Flat index of each window's top-left input pixel, (OH, OW) int32."""
        return (np.arange(oh, dtype=np.int32) * np.int32(kh * w))[:, None] + \
            np.arange(ow, dtype=np.int32)[None, :] * np.int32(kw)

    def maxpool2d_backward(self, dy: Any, argmax: Any, x_shape: tuple[int, int, int, int], kh: int, kw: int,
                           stride: Pair, padding: Pair) -> Any:
        if not self._tiled_pool(kh, kw, stride, padding) or dy.size == 0:
            return super().maxpool2d_backward(dy, argmax, x_shape, kh, kw, stride, padding)
        n, c, h, w = x_shape
        oh, ow = dy.shape[2:]
        # dx in the layout of the forward's input, which argmax kept: the layer before (a ReLU,
        # say) then sees dy in the layout of its own output. dy is small (pooled), so it moves.
        amp, cmajor = self._planes(argmax)
        dyp = np.ascontiguousarray(dy.transpose(1, 0, 2, 3) if cmajor else dy).reshape(amp.shape)
        if argmax.dtype == np.int32:
            jit = cpu_jit.maxpool_tiled_backward(dyp, amp, h, w, kh, kw)
            if jit is not None:
                return self._unplanes(jit, n, c, cmajor)
        rel = amp - self._pool_origin(oh, ow, kh, kw, w)  # winner's i*W + j in its window
        ragged = h != oh * kh or w != ow * kw  # rows/columns no window covers get zero gradient
        dx = (np.zeros if ragged else np.empty)((dyp.shape[0], h, w), dtype=dy.dtype)
        hit = np.empty(rel.shape, dtype=bool)
        for i in range(kh):
            for j in range(kw):
                np.equal(rel, np.int32(i * w + j), out=hit)
                np.multiply(dyp, hit, out=dx[:, i:oh * kh:kh, j:ow * kw:kw])
        return self._unplanes(dx, n, c, cmajor)

    # -- batch norm ---------------------------------------------------------------------------
    @staticmethod
    def _channel3(x: np.ndarray) -> tuple[np.ndarray, bool]:
        """x (N, C, H, W) as a (C, N, H*W) view (copying only an unusual layout), and whether
        x is channel-major (the fast conv's output layout)."""
        n, c, h, w = x.shape
        cn = x.transpose(1, 0, 2, 3)
        if cn.flags.c_contiguous:
            return cn.reshape(c, n, h * w), True
        return np.ascontiguousarray(x).reshape(n, c, h * w).transpose(1, 0, 2), False

    @staticmethod
    def _like3(shape: tuple[int, ...], dtype: np.dtype, cmajor: bool) -> tuple[np.ndarray, np.ndarray]:
        """A new (N, C, H, W) array in the given layout, and its (C, N, H*W) view."""
        n, c, h, w = shape
        if cmajor:
            buf = np.empty((c, n, h, w), dtype=dtype)
            return buf.transpose(1, 0, 2, 3), buf.reshape(c, n, h * w)
        buf = np.empty(shape, dtype=dtype)
        return buf, buf.reshape(n, c, h * w).transpose(1, 0, 2)

    def _bn_jit_ok(self, x: Any, *others: Any) -> bool:
        return (self.fast_paths and isinstance(x, np.ndarray) and x.ndim == 4 and x.size > 0
                and x.dtype in (np.float32, np.float64) and all(isinstance(a, np.ndarray) for a in others)
                and cpu_jit.numba_available())

    def batchnorm_forward_train(self, x: Any, gamma: Any, beta: Any, running_mean: Any | None,
                                running_var: Any | None, momentum: float, eps: float) -> tuple[Any, Any, Any]:
        """Two fused passes (statistics, then normalize) with numba; contract: ops/norm.py."""
        out = self._bn_train(x, gamma, beta, running_mean, running_var, momentum, eps, relu=False)
        return out or super().batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps)

    def batchnorm_relu_forward_train(self, x: Any, gamma: Any, beta: Any, running_mean: Any | None,
                                     running_var: Any | None, momentum: float, eps: float) -> tuple[Any, Any, Any]:
        """As batchnorm_forward_train, with the ReLU in its normalize pass."""
        out = self._bn_train(x, gamma, beta, running_mean, running_var, momentum, eps, relu=True)
        return out or super().batchnorm_relu_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps)

    def _bn_train(self, x: Any, gamma: Any, beta: Any, running_mean: Any | None, running_var: Any | None,
                  momentum: float, eps: float, relu: bool) -> tuple[Any, Any, Any] | None:
        if not (self._bn_jit_ok(x, gamma, beta) and x.shape[1] == gamma.shape[0] == beta.shape[0]):
            return None
        x3, cmajor = self._channel3(x)
        stats = cpu_jit.batchnorm_stats(x3)
        if stats is None:
            return None
        acc = stat_dtype(x.dtype)
        mean, var = stats[0].astype(acc), stats[1].astype(acc)
        invstd = 1.0 / np.sqrt(var + acc.type(eps))
        scale = gamma.astype(acc, copy=False) * invstd
        y, y3 = self._like3(x.shape, x.dtype, cmajor)
        if not cpu_jit.batchnorm_apply(x3, mean, scale, beta.astype(acc), y3, relu=relu):
            return None
        update_running_stats(running_mean, running_var, mean, var, x.size // x.shape[1], momentum)
        return y, mean, invstd

    def batchnorm_backward(self, dy: Any, x: Any, gamma: Any, mean: Any, invstd: Any) -> tuple[Any, Any, Any]:
        """One fused pass for the sums, one for dx, with numba; contract: ops/norm.py."""
        return self._bn_backward(dy, None, x, gamma, mean, invstd) or \
            super().batchnorm_backward(dy, x, gamma, mean, invstd)

    def batchnorm_relu_backward(self, dy: Any, y: Any, x: Any, gamma: Any, mean: Any,
                                invstd: Any) -> tuple[Any, Any, Any]:
        """As batchnorm_backward, with the ReLU's mask read in the same passes."""
        return self._bn_backward(dy, y, x, gamma, mean, invstd) or \
            super().batchnorm_relu_backward(dy, y, x, gamma, mean, invstd)

    def _bn_backward(self, dy: Any, y: Any | None, x: Any, gamma: Any, mean: Any,
                     invstd: Any) -> tuple[Any, Any, Any] | None:
        acc = stat_dtype(getattr(x, "dtype", np.float32))
        if not (self._bn_jit_ok(x, dy, gamma, mean, invstd) and dy.shape == x.shape and dy.dtype == x.dtype
                and mean.dtype == invstd.dtype == acc and mean.shape == invstd.shape == (x.shape[1],)):
            return None
        if y is not None and not (isinstance(y, np.ndarray) and y.shape == x.shape and y.dtype == x.dtype):
            return None
        x3, cmajor = self._channel3(x)
        dy3, _ = self._channel3(dy)
        y3 = None if y is None else self._channel3(y)[0]
        dx, dx3 = self._like3(x.shape, x.dtype, cmajor)
        k_scale = gamma.astype(acc, copy=False) * invstd
        sums = cpu_jit.batchnorm_backward(dy3, x3, mean, invstd, k_scale, dx3, relu_y3=y3)
        if sums is None:
            return None
        return dx, sums[0].astype(gamma.dtype), sums[1].astype(gamma.dtype)
