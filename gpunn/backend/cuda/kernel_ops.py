"""KernelOpsMixin: the backend ops that have a CUDA kernel, switchable per op.

Mixed in before `Backend` by CupyBackend (kernels through cupy.RawModule) and EmulatedBackend
(the same kernels through gpunn.emu.RawModule), so the switch logic and the launcher calls exist
once. When an op is switched off, or its arrays have a dtype the kernels do not cover (anything
but float32 / float64, or a mix), the generic implementation inherited from gpunn/backend/ops/*.py runs.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

import numpy as np

from gpunn.backend.cuda import conv_launch, dropout_launch, gemm_launch, launchers
from gpunn.backend.cuda.source import KernelCache, ModuleLoader
from gpunn.backend.ops.conv import check_conv_grad, check_relu_y
from gpunn.backend.ops.dense import check_matmul

KERNEL_OPS: frozenset[str] = frozenset({
    "im2col", "col2im", "maxpool2d_forward", "maxpool2d_backward", "batchnorm_forward_train",
    "batchnorm_forward_infer", "batchnorm_backward", "adam_step",
    "conv2d_forward", "conv2d_backward", "matmul", "dropout_forward", "dropout_backward",
})

UseKernels = bool | Iterable[str]


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
        return len(dtypes) == 1 and dtypes.pop() in launchers.SUPPORTED_DTYPES

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
        if not (isinstance(x, self.xp.ndarray) and self._kernel_for("dropout_forward", x)):
            return super().dropout_forward(x, rate)  # type: ignore[misc]
        return dropout_launch.dropout_forward(self.kernels, self.xp, self._contig(x), rate, self.philox_state)

    def dropout_backward(self, dy: Any, mask: Any, rate: float) -> Any:
        if not (isinstance(dy, self.xp.ndarray) and self._kernel_for("dropout_backward", dy)
                and isinstance(mask, self.xp.ndarray) and mask.dtype == np.uint8 and mask.shape == dy.shape):
            return super().dropout_backward(dy, mask, rate)  # type: ignore[misc]
        return dropout_launch.dropout_backward(self.kernels, self.xp, self._contig(dy), self._contig(mask), rate)

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
        """2-D products of one kernel dtype run kernels/gemm.cu; batched (> 2-D) ones, mixed dtypes
        and other dtypes take the generic (broadcasting) path. Transposed views are read in place."""
        if not self._gemm_for(a, b):
            return super().matmul(a, b)  # type: ignore[misc]
        check_matmul(a, b)  # the generic op's messages, whichever path runs
        return gemm_launch.gemm(self.kernels, self.xp, a, b)

    def matmul_acc(self, out: Any, a: Any, b: Any) -> None:
        """out += a @ b, accumulated by the kernel's epilogue (no temporary for the product)."""
        # CuPy's flags have no `writeable` (device arrays always are)
        if not (self._gemm_for(a, b) and isinstance(out, self.xp.ndarray) and out.ndim == 2 and out.dtype == a.dtype
                and out.flags.c_contiguous and getattr(out.flags, "writeable", True)):
            return super().matmul_acc(out, a, b)  # type: ignore[misc]
        check_matmul(a, b)
        gemm_launch.gemm(self.kernels, self.xp, a, b, out=out, accumulate=True)
        return None

    def _gemm_for(self, a: Any, b: Any) -> bool:
        return (isinstance(a, self.xp.ndarray) and isinstance(b, self.xp.ndarray) and a.ndim == 2 and b.ndim == 2
                and self._kernel_for("matmul", a, b))

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
    def batchnorm_forward_train(self, x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any,
                                momentum: float, eps: float) -> tuple[Any, Any, Any]:
        if not self._kernel_for("batchnorm_forward_train", x, gamma, beta, running_mean, running_var):
            return super().batchnorm_forward_train(  # type: ignore[misc]
                x, gamma, beta, running_mean, running_var, momentum, eps)
        # Running statistics are updated in place, so they are passed as they are (the launcher
        # rejects a non-contiguous one rather than silently updating a copy).
        return launchers.batchnorm_forward_train(self.kernels, self.xp, self._contig(x), self._contig(gamma),
                                                self._contig(beta), running_mean, running_var, momentum, eps)

    def batchnorm_forward_infer(self, x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any,
                                eps: float) -> Any:
        if not self._kernel_for("batchnorm_forward_infer", x, gamma, beta, running_mean, running_var):
            return super().batchnorm_forward_infer(  # type: ignore[misc]
                x, gamma, beta, running_mean, running_var, eps)
        c = self._contig
        return launchers.batchnorm_forward_infer(self.kernels, self.xp, c(x), c(gamma), c(beta), c(running_mean),
                                                c(running_var), eps)

    def batchnorm_backward(self, dy: Any, x: Any, gamma: Any, mean: Any, invstd: Any) -> tuple[Any, Any, Any]:
        if not self._kernel_for("batchnorm_backward", dy, x, gamma, mean, invstd):
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
