"""Convolution on the GPU: gpunn's implicit-GEMM kernels (kernels/conv.cu) vs its im2col + GEMM path
vs torch cuDNN, forward and backward, float32.

    .venv/bin/pytest bench/bench_conv.py --benchmark-enable -s      # needs a CUDA device (and torch for cuDNN)

Variants, each on the same shapes and data:
- "implicit": CupyBackend with every kernel on: conv2d_forward / conv2d_backward run kernels/conv.cu.
- "im2col":   CupyBackend with every kernel but the two conv ops: the generic path, im2col / col2im
              kernels around cupy.matmul (cuBLAS).
- "cudnn":    torch.nn.functional.conv2d and its autograd backward, with TF32 off (cuDNN uses TF32 by
              default on Ampere and later; gpunn computes in true float32, so must the peer).
Shapes: the CIFAR CNN's four 3x3 convolutions and LeNet-5's two 5x5 ones at the bench's batch
(128, 16 with GPUNN_BENCH_QUICK=1), and a ResNet-style 64 -> 64 3x3 convolution on 56x56 at batch 32.
The summary line gives each variant's ms and the implicit kernels' ratio to cuDNN and to im2col
(below 1 is faster). Everything skips cleanly without a GPU; the cuDNN variant also without torch.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

# name -> ((C, H, W), (F, KH, KW), padding, batch or None for the bench's batch)
SHAPES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], int, int | None]] = {
    "lenet-conv1": ((1, 28, 28), (6, 5, 5), 2, None),
    "lenet-conv2": ((6, 14, 14), (16, 5, 5), 0, None),
    "cifar-conv1": ((3, 32, 32), (32, 3, 3), 1, None),
    "cifar-conv2": ((32, 32, 32), (32, 3, 3), 1, None),
    "cifar-conv3": ((32, 16, 16), (64, 3, 3), 1, None),
    "cifar-conv4": ((64, 16, 16), (64, 3, 3), 1, None),
    "resnet-64x56": ((64, 56, 56), (64, 3, 3), 1, 32),
}
VARIANTS = ("implicit", "im2col", "cudnn")
CONV_OPS = frozenset({"conv2d_forward", "conv2d_backward"})
QUICK = os.environ.get("GPUNN_BENCH_QUICK", "") not in ("", "0")
ROUNDS = 5 if QUICK else 20
RESULTS: dict[str, dict[str, float]] = {}  # "shape/direction" -> variant -> median seconds, for the summary
_backends: dict[str, Any] = {}


def _batch(fixed: int | None) -> int:
    return fixed if fixed is not None else (16 if QUICK else 128)


def _cupy_backend(variant: str) -> Any:
    """A CupyBackend per variant (the kernel switch is per backend instance); skips without a GPU."""
    from gpunn.backend import cuda_status
    if not cuda_status().usable:
        pytest.skip(f"no usable CUDA: {cuda_status().reason}")
    if variant not in _backends:
        from gpunn.backend.cuda.cupy_backend import CupyBackend
        from gpunn.backend.cuda.kernel_ops import KERNEL_OPS
        _backends[variant] = CupyBackend(use_kernels=KERNEL_OPS if variant == "implicit" else KERNEL_OPS - CONV_OPS)
    return _backends[variant]


def _host_data(shape: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    (c, h, w), (f, kh, kw), pad, fixed = SHAPES[shape]
    n = _batch(fixed)
    rng = np.random.default_rng(0)
    oh, ow = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    return (rng.standard_normal((n, c, h, w), dtype=np.float32), rng.standard_normal((f, c, kh, kw), dtype=np.float32),
            rng.standard_normal(f, dtype=np.float32), rng.standard_normal((n, f, oh, ow), dtype=np.float32), pad)


def _gpunn_fn(variant: str, shape: str, direction: str) -> tuple[Any, Any]:
    be = _cupy_backend(variant)
    x, w, b, dy, pad = (a if isinstance(a, int) else be.asarray(a) for a in _host_data(shape))
    geo = ((1, 1), (pad, pad), (1, 1))
    _, saved = be.conv2d_forward(x, w, b, *geo)
    if direction == "fwd":
        return (lambda: be.conv2d_forward(x, w, b, *geo)), be.synchronize
    return (lambda: be.conv2d_backward(dy, x.shape, w, saved, *geo)), be.synchronize


def _torch_fn(shape: str, direction: str) -> tuple[Any, Any]:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    torch.backends.cudnn.allow_tf32 = False  # strict float32, as gpunn
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True  # cuDNN at its best algorithm for the shape
    x, w, b, dy, pad = _host_data(shape)
    xt, wt, bt = (torch.from_numpy(a).cuda().requires_grad_() for a in (x, w, b))
    dyt = torch.from_numpy(dy).cuda()
    conv = torch.nn.functional.conv2d
    if direction == "fwd":
        def fwd() -> Any:
            with torch.no_grad():
                return conv(xt, wt, bt, padding=pad)
        return fwd, torch.cuda.synchronize
    y = conv(xt, wt, bt, padding=pad)
    return (lambda: torch.autograd.grad(y, (xt, wt, bt), dyt, retain_graph=True)), torch.cuda.synchronize


def _flops(shape: str, direction: str) -> float:
    (c, h, w), (f, kh, kw), pad, fixed = SHAPES[shape]
    oh, ow = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    forward = 2.0 * _batch(fixed) * f * oh * ow * c * kh * kw
    return forward if direction == "fwd" else 2 * forward  # backward: dx and dW


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_conv2d_gpu(benchmark: Any, record: Any, timed: Any, shape: str, direction: str, variant: str) -> None:
    fn, sync = _torch_fn(shape, direction) if variant == "cudnn" else _gpunn_fn(variant, shape, direction)
    benchmark.group = f"conv2d_{direction}/{shape}"
    timed(benchmark, fn, sync, ROUNDS)
    if benchmark.stats:
        RESULTS.setdefault(f"{shape}/{direction}", {})[variant] = benchmark.stats.stats.median
    impl = {"implicit": "gpunn", "im2col": "gpunn-im2col", "cudnn": "torch"}[variant]
    record(benchmark, f"conv2d_{direction}/{shape}", impl, "cuda", flops=_flops(shape, direction))


def summary(results: dict[str, dict[str, float]]) -> str:
    """One line per shape and direction: ms per variant, implicit's ratio to cuDNN and to im2col."""
    lines = ["conv2d float32 on CUDA (implicit-GEMM kernels vs im2col + cuBLAS vs cuDNN, TF32 off):"]
    for key, times in results.items():
        parts = [f"{v} {1e3 * times[v]:.3f} ms" for v in VARIANTS if v in times]
        ratios = [f"{times['implicit'] / times[ref]:.2f}x {ref}" for ref in ("cudnn", "im2col")
                  if "implicit" in times and ref in times]
        lines.append(f"  {key}: " + ", ".join(parts) + (f" (implicit = {', '.join(ratios)})" if ratios else ""))
    return "\n".join(lines)
