"""KernelOpsMixin: the backend ops that have a CUDA kernel, switchable per op.

Mixed in before `Backend` by CupyBackend (kernels through cupy.RawModule) and EmulatedBackend
(the same kernels through gpunn.emu.RawModule), so the switch logic and the launcher calls exist
once. When an op is switched off, or its arrays have a dtype the kernels do not cover (anything
but float32 / float64, or a mix; float16 / bfloat16 too for im2col, col2im, max-pool, the casts and
the 2-D matmul through the tensor-core GEMM; batch norm with float16 / bfloat16 x, dy, gamma and
beta of one dtype and float32 running / saved statistics), the generic implementation inherited from
gpunn/backend/ops/*.py runs. Convolution has no 16-bit kernels: half inputs take the generic conv
(im2col + matmul, both of which then reach their 16-bit kernels).
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

import numpy as np

from gpunn.backend.cuda import cast_launch, conv_launch, dropout_launch, gemm_launch, gemm_tc_launch, launchers
from gpunn.backend.cuda.source import KernelCache, ModuleLoader
from gpunn.backend.ops.conv import check_conv_grad, check_relu_y
from gpunn.backend.ops.cast import HALF_DTYPES, check_out, check_scale_args, is_half
from gpunn.backend.ops.dense import check_matmul
from gpunn.backend.ops.optim import check_mixed_args

KERNEL_OPS: frozenset[str] = frozenset({
    "im2col", "col2im", "maxpool2d_forward", "maxpool2d_backward", "batchnorm_forward_train",
    "batchnorm_forward_infer", "batchnorm_backward", "adam_step", "adam_step_mixed",
    "conv2d_forward", "conv2d_backward", "matmul", "dropout_forward", "dropout_backward",
    "cast_to_half", "cast_to_float", "unscale_into", "nonfinite_check",  # kernels/cast.cu
})

UseKernels = bool | Iterable[str]

#: ops whose kernels also have float16 / bfloat16 variants (GPUNN_HALF sections of im2col.cu, maxpool.cu);
#: batch norm's (batchnorm.cu) take float32 statistics beside 16-bit x and route through _bn_kernel_for
HALF_KERNEL_OPS: frozenset[str] = frozenset({"im2col", "col2im", "maxpool2d_forward", "maxpool2d_backward"})
_F32 = np.dtype(np.float32)
#: gemm_tc precision for a pair of 2-D operands of one 16-bit dtype
_TC_HALF = {np.dtype(np.float16): "fp16", HALF_DTYPES[1]: "bf16"}


def resolve_use_kernels(use_kernels: UseKernels, where: str = "use_kernels") -> frozenset[str]:
    """True -> every kernel op, False -> none, or a collection of op names from KERNEL_OPS."""
    if isinstance(use_kernels, bool):
        return KERNEL_OPS if use_kernels else frozenset()
    if isinstance(use_kernels, str) or not isinstance(use_kernels, Iterable):
        raise TypeError(f"{where}: argument 'use_kernels' must be True, False or a set of op names from "
                        f"{sorted(KERNEL_OPS)}, got {use_kernels!r}")
    ops = frozenset(use_kernels)
    unknown = sorted(op for op in ops if op not in KERNEL_OPS)
    if unknown:
        raise ValueError(f"{where}: argument 'use_kernels' names ops without a kernel: {unknown}; "
                         f"expected a subset of {sorted(KERNEL_OPS)}")
    return ops


class KernelOpsMixin:
    xp: Any
    kernels: KernelCache
    _kernel_ops: frozenset[str]

    def _init_kernels(self, loader: ModuleLoader, use_kernels: UseKernels) -> None:
        self._kernel_ops = resolve_use_kernels(use_kernels, type(self).__name__)
        self.kernels = KernelCache(loader)  # nothing compiles until a kernel op first runs
        self._philox_state: Any = None
        self._philox_seed: int | None = None

    @property
    def use_kernels(self) -> frozenset[str]:
        """The ops currently routed to the CUDA kernels."""
        return self._kernel_ops

    @use_kernels.setter
    def use_kernels(self, value: UseKernels) -> None:
        self._kernel_ops = resolve_use_kernels(value, type(self).__name__)

    def _kernel_for(self, op: str, *arrays: Any) -> bool:
        """Route `op` to its kernel: switched on, and every array of one dtype the kernels cover.

        Mixed dtypes (which the generic op promotes) also take the generic path; the launchers
        themselves refuse them, with an error naming the argument."""
        if op not in self._kernel_ops:
            return False
        dtypes = {a.dtype for a in arrays if a is not None}
        if len(dtypes) != 1:
            return False
        dtype = dtypes.pop()
        return dtype in launchers.SUPPORTED_DTYPES or (op in HALF_KERNEL_OPS and dtype in launchers.HALF_DTYPES)

    def _contig(self, a: Any) -> Any:
        """Read-only inputs may arrive as strided views; the kernels index flat buffers."""
        return self.xp.ascontiguousarray(a)

    # -- random state -----------------------------------------------------------------------
    @property
    def philox_state(self) -> Any:
        """The dropout generator's state, a 2-element uint64 device array (seed, offset), made on
        first use: seeded by the last manual_seed, else from the OS's entropy. The kernels read it and
        advance it on the device; manual_seed rewrites it in place (the same buffer, so a captured
        CUDA graph that points at it sees the new seed)."""
        if self._philox_state is None:
            seed = self._philox_seed if self._philox_seed is not None else secrets.randbits(64)
            self._philox_state = dropout_launch.make_state(self.xp, seed)
        return self._philox_state

    def manual_seed(self, seed: int) -> None:
        """Seed the generic generator (`rng`) and the Philox state: (seed mod 2^64, offset 0)."""
        super().manual_seed(seed)  # type: ignore[misc]
        self._philox_seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        if self._philox_state is not None:
            self._philox_state[...] = dropout_launch.make_state(self.xp, self._philox_seed)

    def get_philox(self) -> tuple[int, int]:
        """(seed, offset) of the Philox state, read back to the host (checkpoints save it)."""
        seed, offset = (int(v) for v in self.to_numpy(self.philox_state))  # type: ignore[attr-defined]
        return seed, offset

    def set_philox(self, seed: int, offset: int) -> None:
        """Set the Philox state to (seed, offset), both taken mod 2^64, in place (checkpoints restore it)."""
        self._philox_seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.philox_state[...] = dropout_launch.make_state(self.xp, seed, offset)

    # -- dropout ------------------------------------------------------------------------------
    def dropout_forward(self, x: Any, rate: float) -> tuple[Any, Any]:
        half = is_half(x)  # 16-bit activations: the float32 kernel on an upcast copy, so the masks come
        # from the same device Philox stream (a captured step draws fresh ones; the generic op would not)
        probe = x.astype(np.float32) if half and isinstance(x, self.xp.ndarray) else x
        if not (isinstance(x, self.xp.ndarray) and self._kernel_for("dropout_forward", probe)):
            return super().dropout_forward(x, rate)  # type: ignore[misc]
        y, mask = dropout_launch.dropout_forward(self.kernels, self.xp, self._contig(probe), rate, self.philox_state)
        return (y.astype(x.dtype) if half else y), mask

    def dropout_backward(self, dy: Any, mask: Any, rate: float) -> Any:
        half = is_half(dy)
        probe = dy.astype(np.float32) if half and isinstance(dy, self.xp.ndarray) else dy
        if not (isinstance(dy, self.xp.ndarray) and self._kernel_for("dropout_backward", probe)
                and isinstance(mask, self.xp.ndarray) and mask.dtype == np.uint8 and mask.shape == dy.shape):
            return super().dropout_backward(dy, mask, rate)  # type: ignore[misc]
        dx = dropout_launch.dropout_backward(self.kernels, self.xp, self._contig(probe), self._contig(mask), rate)
        return dx.astype(dy.dtype) if half else dx

    # -- convolution ------------------------------------------------------------------------
    def im2col(self, x: Any, kh: int, kw: int, stride: Any, padding: Any, dilation: Any) -> Any:
        if not self._kernel_for("im2col", x):
            return super().im2col(x, kh, kw, stride, padding, dilation)  # type: ignore[misc]
        return launchers.im2col(self.kernels, self.xp, self._contig(x), kh, kw, stride, padding, dilation)

    def col2im(self, cols: Any, x_shape: tuple[int, int, int, int], kh: int, kw: int, stride: Any,
               padding: Any, dilation: Any) -> Any:
        if not self._kernel_for("col2im", cols):
            return super().col2im(cols, x_shape, kh, kw, stride, padding, dilation)  # type: ignore[misc]
        n, c = x_shape[0], x_shape[1]
        # The generic accepts any layout that reshapes to (N, C*kh*kw, OH*OW); so does this.
        cols = self._contig(cols).reshape(n, c * kh * kw, -1)
        return launchers.col2im(self.kernels, self.xp, cols, x_shape, kh, kw, stride, padding, dilation)

    def conv2d_forward(self, x: Any, weight: Any, bias: Any | None, stride: Any, padding: Any, dilation: Any,
                       relu: bool = False) -> tuple[Any, Any]:
        """On the kernel path (kernels/conv.cu, implicit GEMM) the saved value is the contiguous
        input itself: the backward kernels gather from x, so no im2col matrix is ever built."""
        if not self._kernel_for("conv2d_forward", x, weight, bias) or x.size == 0:  # empty: nothing to launch
            return super().conv2d_forward(x, weight, bias, stride, padding, dilation, relu)  # type: ignore[misc]
        xc = self._contig(x)
        bc = None if bias is None else self._contig(bias)
        y = conv_launch.conv2d_forward(self.kernels, self.xp, xc, self._contig(weight), bc, stride, padding,
                                       dilation, relu)
        return y, xc

    def conv2d_backward(self, dy: Any, x_shape: tuple[int, int, int, int], weight: Any, cols: Any, stride: Any,
                        padding: Any, dilation: Any, need_dx: bool = True,
                        relu_y: Any | None = None) -> tuple[Any | None, Any, Any]:
        # `cols` is whatever conv2d_forward saved: the input x (4-D, x_shape) from the kernel path,
        # or the generic path's 3-D im2col matrix. Either forward may meet either backward (an op
        # switched between the passes, a dtype the kernels do not take), so route by what was saved.
        saved_x = getattr(cols, "ndim", 0) == 4 and tuple(cols.shape) == tuple(x_shape)
        if saved_x:  # the generic op's own checks and messages, before any columns are rebuilt
            check_conv_grad(dy, x_shape, weight, stride, padding, dilation)
            if relu_y is not None:
                check_relu_y(dy, relu_y)
        if saved_x and self._kernel_for("conv2d_backward", dy, weight, cols, relu_y):
            c = self._contig
            return conv_launch.conv2d_backward(self.kernels, self.xp, c(dy), c(cols), c(weight), stride, padding,
                                               dilation, need_dx, None if relu_y is None else c(relu_y))
        if saved_x:  # the generic backward wants the generic forward's columns: rebuild them
            cols = self._generic_cols(cols, weight.shape[2], weight.shape[3], stride, padding, dilation)
        return super().conv2d_backward(  # type: ignore[misc]
            dy, x_shape, weight, cols, stride, padding, dilation, need_dx, relu_y)

    def _generic_cols(self, x: Any, kh: int, kw: int, stride: Any, padding: Any, dilation: Any) -> Any:
        """What ConvOps.conv2d_forward saves for input x: the im2col matrix, or x as (N, C, H*W) for a
        1x1 convolution at stride 1 without padding."""
        n, c, h, w = x.shape
        if kh == kw == 1 and tuple(stride) == (1, 1) and tuple(padding) == (0, 0):
            return x.reshape(n, c, h * w)
        return self.im2col(x, kh, kw, stride, padding, dilation)

    # -- dense ------------------------------------------------------------------------------
    def matmul(self, a: Any, b: Any) -> Any:
        """2-D products of one kernel dtype run kernels/gemm.cu; 2-D float16 / bfloat16 pairs of one
        dtype, and float32 pairs under matmul_precision "tf32", run kernels/gemm_tc.cu (float32
        result, cast to the half dtype by kernels/cast.cu); batched (> 2-D) ones, mixed dtypes and
        other dtypes take the generic (broadcasting) path. Transposed views are read in place."""
        precision = self._tc_precision(a, b)
        if precision is not None:
            check_matmul(a, b)
            c = gemm_tc_launch.gemm_tc(self.kernels, self.xp, a, b, precision=precision)
            if precision == "tf32":
                return c
            return cast_launch.cast_f32_to_half(self.kernels, self.xp, c, a.dtype)
        if not self._gemm_for(a, b):
            return super().matmul(a, b)  # type: ignore[misc]
        check_matmul(a, b)  # the generic op's messages, whichever path runs
        return gemm_launch.gemm(self.kernels, self.xp, a, b)

    def matmul_acc(self, out: Any, a: Any, b: Any) -> None:
        """out += a @ b, accumulated by the kernel's epilogue (no temporary for the product). Tensor-core
        pairs (see matmul): a float32 `out` accumulates directly; a half `out` of the operands' dtype
        is upcast into a float32 scratch (cast kernel), accumulated there and rounded back once."""
        precision = self._tc_precision(a, b)
        if (precision is not None and isinstance(out, self.xp.ndarray) and out.ndim == 2
                and out.flags.c_contiguous and getattr(out.flags, "writeable", True)
                and (out.dtype == _F32 or (precision != "tf32" and out.dtype == a.dtype))):
            check_matmul(a, b)
            k, xp = self.kernels, self.xp
            if out.dtype == _F32:
                gemm_tc_launch.gemm_tc(k, xp, a, b, out=out, accumulate=True, precision=precision)
            else:
                acc = cast_launch.cast_half_to_f32(k, xp, out)
                gemm_tc_launch.gemm_tc(k, xp, a, b, out=acc, accumulate=True, precision=precision)
                cast_launch.cast_f32_to_half(k, xp, acc, out.dtype, out=out)
            return None
        # CuPy's flags have no `writeable` (device arrays always are)
        if not (self._gemm_for(a, b) and isinstance(out, self.xp.ndarray) and out.ndim == 2 and out.dtype == a.dtype
                and out.flags.c_contiguous and getattr(out.flags, "writeable", True)):
            return super().matmul_acc(out, a, b)  # type: ignore[misc]
        check_matmul(a, b)
        gemm_launch.gemm(self.kernels, self.xp, a, b, out=out, accumulate=True)
        return None

    def _tc_precision(self, a: Any, b: Any) -> str | None:
        """gemm_tc's precision for a @ b on the kernel path, or None: "matmul" switched on, both 2-D
        arrays of this backend, one dtype, float16 ("fp16") / bfloat16 ("bf16"), or float32 while
        matmul_precision is "tf32"."""
        if not ("matmul" in self._kernel_ops and isinstance(a, self.xp.ndarray) and isinstance(b, self.xp.ndarray)
                and a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype):
            return None
        if a.dtype == _F32:
            return "tf32" if getattr(self, "matmul_precision", "highest") == "tf32" else None
        return _TC_HALF.get(np.dtype(a.dtype))

    def _gemm_for(self, a: Any, b: Any) -> bool:
        return (isinstance(a, self.xp.ndarray) and isinstance(b, self.xp.ndarray) and a.ndim == 2 and b.ndim == 2
                and self._kernel_for("matmul", a, b))

    # -- precision casts (kernels/cast.cu) -------------------------------------------------
    def _cast_for(self, op: str, *arrays: Any) -> bool:
        """Route a cast op to its kernel: switched on, every array one of this backend's, C-contiguous."""
        return op in self._kernel_ops and all(
            isinstance(a, self.xp.ndarray) and a.flags.c_contiguous for a in arrays if a is not None)

    def cast_to_half(self, x: Any, dtype: Any, out: Any = None) -> Any:
        """cast_f32_to_{f16,bf16} for C-contiguous float32 x; else the generic op (its checks)."""
        try:
            half = np.dtype(dtype) in HALF_DTYPES
        except TypeError:
            half = False
        if not (half and getattr(x, "dtype", None) == _F32 and self._cast_for("cast_to_half", x, out)):
            return super().cast_to_half(x, dtype, out=out)  # type: ignore[misc]
        if out is not None:  # the generic op's messages
            check_out(out, tuple(x.shape), dtype, "cast_to_half")
        return cast_launch.cast_f32_to_half(self.kernels, self.xp, x, dtype, out=out)

    def cast_to_float(self, x: Any, out: Any = None) -> Any:
        """cast_{f16,bf16}_to_f32 for a C-contiguous half x; else the generic op."""
        if not (getattr(x, "dtype", None) in HALF_DTYPES and self._cast_for("cast_to_float", x, out)):
            return super().cast_to_float(x, out=out)  # type: ignore[misc]
        if out is not None:
            check_out(out, tuple(x.shape), np.float32, "cast_to_float")
        return cast_launch.cast_half_to_f32(self.kernels, self.xp, x, out=out)

    def unscale_into(self, g: Any, inv_scale: Any, found_inf: Any, out: Any = None) -> Any:
        """unscale_check_{f16,bf16}_to_f32 for a half g (float32 g: the generic op), C-contiguous arrays."""
        check_scale_args(g, inv_scale, found_inf, "unscale_into")
        if out is not None:
            check_out(out, tuple(g.shape), np.float32, "unscale_into")
        if not (g.dtype in HALF_DTYPES and self._cast_for("unscale_into", g, inv_scale, found_inf, out)):
            return super().unscale_into(g, inv_scale, found_inf, out=out)  # type: ignore[misc]
        return cast_launch.unscale_check(self.kernels, self.xp, g, inv_scale, found_inf, out=out)

    def nonfinite_check(self, g: Any, inv_scale: Any, found_inf: Any) -> None:
        """check_finite_{f16,bf16} for a half g (float32 g: the generic op), C-contiguous arrays."""
        check_scale_args(g, inv_scale, found_inf, "nonfinite_check")
        if not (g.dtype in HALF_DTYPES and self._cast_for("nonfinite_check", g, inv_scale, found_inf)):
            return super().nonfinite_check(g, inv_scale, found_inf)  # type: ignore[misc]
        cast_launch.check_finite(self.kernels, self.xp, g, inv_scale, found_inf)
        return None

    # -- pooling ----------------------------------------------------------------------------
    def maxpool2d_forward(self, x: Any, kh: int, kw: int, stride: Any, padding: Any) -> tuple[Any, Any]:
        if not self._kernel_for("maxpool2d_forward", x):
            return super().maxpool2d_forward(x, kh, kw, stride, padding)  # type: ignore[misc]
        return launchers.maxpool2d_forward(self.kernels, self.xp, self._contig(x), kh, kw, stride, padding)

    def maxpool2d_backward(self, dy: Any, argmax: Any, x_shape: tuple[int, int, int, int], kh: int, kw: int,
                           stride: Any, padding: Any) -> Any:
        if not self._kernel_for("maxpool2d_backward", dy):
            return super().maxpool2d_backward(dy, argmax, x_shape, kh, kw, stride, padding)  # type: ignore[misc]
        return launchers.maxpool2d_backward(self.kernels, self.xp, self._contig(dy), self._contig(argmax), x_shape,
                                           kh, kw, stride, padding)

    # -- batch norm -------------------------------------------------------------------------
    def _bn_kernel_for(self, op: str, halves: tuple[Any, ...], stats: tuple[Any, ...]) -> bool:
        """Route a batch-norm op to its kernel: every array of one float32 / float64 dtype (as
        _kernel_for), or mixed precision: `halves` (x, dy, gamma, beta) of one 16-bit dtype and
        `stats` (running / saved statistics, None allowed) float32, the kernels' 16-bit variants.
        Any other mix takes the generic path."""
        if op not in self._kernel_ops:
            return False
        hdtypes = {a.dtype for a in halves}
        if (len(hdtypes) == 1 and next(iter(hdtypes)) in launchers.HALF_DTYPES
                and all(a.dtype == _F32 for a in stats if a is not None)):
            return True
        return self._kernel_for(op, *halves, *stats)

    def batchnorm_forward_train(self, x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any,
                                momentum: float, eps: float) -> tuple[Any, Any, Any]:
        if not self._bn_kernel_for("batchnorm_forward_train", (x, gamma, beta), (running_mean, running_var)):
            return super().batchnorm_forward_train(  # type: ignore[misc]
                x, gamma, beta, running_mean, running_var, momentum, eps)
        # Running statistics are updated in place, so they are passed as they are (the launcher
        # rejects a non-contiguous one rather than silently updating a copy).
        return launchers.batchnorm_forward_train(self.kernels, self.xp, self._contig(x), self._contig(gamma),
                                                self._contig(beta), running_mean, running_var, momentum, eps)

    def batchnorm_forward_infer(self, x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any,
                                eps: float) -> Any:
        if not self._bn_kernel_for("batchnorm_forward_infer", (x, gamma, beta), (running_mean, running_var)):
            return super().batchnorm_forward_infer(  # type: ignore[misc]
                x, gamma, beta, running_mean, running_var, eps)
        c = self._contig
        return launchers.batchnorm_forward_infer(self.kernels, self.xp, c(x), c(gamma), c(beta), c(running_mean),
                                                c(running_var), eps)

    def batchnorm_backward(self, dy: Any, x: Any, gamma: Any, mean: Any, invstd: Any) -> tuple[Any, Any, Any]:
        if not self._bn_kernel_for("batchnorm_backward", (dy, x, gamma), (mean, invstd)):
            return super().batchnorm_backward(dy, x, gamma, mean, invstd)  # type: ignore[misc]
        c = self._contig
        return launchers.batchnorm_backward(self.kernels, self.xp, c(dy), c(x), c(gamma), c(mean), c(invstd))

    # -- optimizers -------------------------------------------------------------------------
    def adam_step(self, param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float,
                  weight_decay: float, step: int, decoupled: bool, zero_grad: bool = False,
                  max_v: Any = None) -> None:
        # AMSGrad keeps a fourth buffer; it is rare enough that the generic path serves it.
        if max_v is not None or not self._kernel_for("adam_step", param, grad, m, v):
            return super().adam_step(  # type: ignore[misc]
                param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled, zero_grad=zero_grad,
                max_v=max_v)
        launchers.adam_step(self.kernels, self.xp, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step,
                           decoupled, zero_grad)
        return None

    def adam_step_device(self, param: Any, grad: Any, m: Any, v: Any, scalars: Any, beta1: float, beta2: float,
                         eps: float, weight_decay: float, decoupled: bool, zero_grad: bool = False,
                         max_v: Any = None) -> None:
        """lr and step from the device array `scalars` (see gpunn/backend/ops/optim.py): the kernel
        reads them itself; AMSGrad and unusual arrays take the generic device-scalar op."""
        if max_v is not None or not self._kernel_for("adam_step", param, grad, m, v):
            return super().adam_step_device(  # type: ignore[misc]
                param, grad, m, v, scalars, beta1, beta2, eps, weight_decay, decoupled, zero_grad=zero_grad,
                max_v=max_v)
        launchers.adam_step_device(self.kernels, self.xp, param, grad, m, v, scalars, beta1, beta2, eps,
                                   weight_decay, decoupled, zero_grad)
        return None

    def adam_step_mixed(self, param: Any, grad: Any, m: Any, v: Any, scalars: Any, beta1: float, beta2: float,
                        eps: float, weight_decay: float, decoupled: bool, inv_scale: Any, found_inf: Any,
                        max_v: Any = None) -> None:
        """float32 master buffers, float16 / bfloat16 grad (gpunn/backend/ops/optim.py): the kernel
        adam_step_mixed_{f16,bf16} unscales and skips on the device when switched on and every array
        is this backend's, C-contiguous and of the dtypes the kernel takes; AMSGrad and anything else
        take the generic op (which validates and names the offending argument)."""
        xp = self.xp
        arrays = (param, grad, m, v, scalars, inv_scale, found_inf)
        if (max_v is not None or "adam_step_mixed" not in self._kernel_ops
                or not all(isinstance(a, xp.ndarray) and a.flags.c_contiguous for a in arrays)
                or not all(a.dtype == _F32 for a in (param, m, v)) or grad.dtype not in launchers.HALF_DTYPES):
            return super().adam_step_mixed(  # type: ignore[misc]
                param, grad, m, v, scalars, beta1, beta2, eps, weight_decay, decoupled, inv_scale, found_inf,
                max_v=max_v)
        check_mixed_args("adam_step_mixed", xp, param, grad, m, v, inv_scale, found_inf)
        launchers.adam_step_mixed(self.kernels, xp, param, grad, m, v, scalars, beta1, beta2, eps, weight_decay,
                                  decoupled, inv_scale, found_inf)
        return None
