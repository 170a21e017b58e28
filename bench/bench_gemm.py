"""Dense GEMM on the GPU: gpunn's tiled kernels (kernels/gemm.cu) vs cuBLAS (cupy.matmul), float32.

    .venv/bin/pytest bench/bench_gemm.py --benchmark-enable -s      # needs a CUDA device

Variants, each on the same shapes and data, through the backend op `matmul` (as Dense calls it):
- "gemm":   CupyBackend with every kernel on: 2-D matmul runs kernels/gemm.cu.
- "cublas": CupyBackend with every kernel but matmul: the generic path, cupy.matmul (cuBLAS).
Shapes: 4096^3 (the kernel's ceiling), and each Dense layer of the bench's models (bench_e2e.py:
LeNet-5's fc 400->120->84->10, the CIFAR CNN's fc 4096->10) at the bench's batch (128; 16 with
GPUNN_BENCH_QUICK=1), in the three products of a training step: "fwd" y = x @ W (nn), "dx" dy @ W^T
(nt, W^T a transposed view) and "dw" x^T @ dy (tn, x^T a transposed view).
extra_info: `gflops` (through `record`), `pct_of_fp32_peak` (of H200_FP32_PEAK_TFLOPS); the summary
line gives each variant's microseconds, GFLOP/s and gemm's time ratio to cuBLAS (below 1 is faster).
Everything skips cleanly without a GPU.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

H200_FP32_PEAK_TFLOPS = 67.0  # H200 SXM, non-tensor-core fp32 (NVIDIA's datasheet figure)
# name -> (M, K, N) of the forward product: x (M x K) @ W (K x N); None for M means the bench's batch
SHAPES: dict[str, tuple[int | None, int, int]] = {
    "square-4096": (4096, 4096, 4096),
    "lenet-fc1": (None, 400, 120),
    "lenet-fc2": (None, 120, 84),
    "lenet-fc3": (None, 84, 10),
    "cifar-fc": (None, 4096, 10),
}
PRODUCTS = ("fwd", "dx", "dw")
VARIANTS = ("gemm", "cublas")
QUICK = os.environ.get("GPUNN_BENCH_QUICK", "") not in ("", "0")
ROUNDS = 5 if QUICK else 20
RESULTS: dict[str, dict[str, float]] = {}  # "shape/product" -> variant -> median seconds, for the summary
_backends: dict[str, Any] = {}


def _dims(shape: str) -> tuple[int, int, int]:
    m, k, n = SHAPES[shape]
    return (m if m is not None else (16 if QUICK else 128)), k, n


def _cupy_backend(variant: str) -> Any:
    """A CupyBackend per variant (the kernel switch is per backend instance); skips without a GPU."""
    from gpunn.backend import cuda_status
    if not cuda_status().usable:
        pytest.skip(f"no usable CUDA: {cuda_status().reason}")
    if variant not in _backends:
        from gpunn.backend.cuda.cupy_backend import CupyBackend
        from gpunn.backend.cuda.kernel_ops import KERNEL_OPS
        _backends[variant] = CupyBackend(use_kernels=KERNEL_OPS if variant == "gemm" else KERNEL_OPS - {"matmul"})
    return _backends[variant]


def _product_fn(variant: str, shape: str, product: str) -> tuple[Any, Any]:
    be = _cupy_backend(variant)
    m, k, n = _dims(shape)
    rng = np.random.default_rng(0)
    x, w, dy = (be.asarray(rng.standard_normal(s, dtype=np.float32)) for s in ((m, k), (k, n), (m, n)))
    a, b = {"fwd": (x, w), "dx": (dy, w.T), "dw": (x.T, dy)}[product]
    return (lambda: be.matmul(a, b)), be.synchronize


def _flops(shape: str, product: str) -> float:
    m, k, n = _dims(shape)
    return 2.0 * m * k * n  # each product of a layer has the same m*k*n multiply-adds


# 4096^3 is measured as nn only: it is the ceiling, not a layer
CASES = [(s, p) for s in SHAPES for p in PRODUCTS if s != "square-4096" or p == "fwd"]


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape, product", CASES)
def test_matmul_gpu(benchmark: Any, record: Any, timed: Any, shape: str, product: str, variant: str) -> None:
    fn, sync = _product_fn(variant, shape, product)
    benchmark.group = f"matmul/{shape}/{product}"
    timed(benchmark, fn, sync, ROUNDS)
    record(benchmark, f"matmul_{product}/{shape}", "gpunn" if variant == "gemm" else "gpunn-cublas", "cuda",
           flops=_flops(shape, product))
    if benchmark.stats:
        median = benchmark.stats.stats.median
        RESULTS.setdefault(f"{shape}/{product}", {})[variant] = median
        tflops = _flops(shape, product) / median / 1e12
        benchmark.extra_info["pct_of_fp32_peak"] = round(100 * tflops / H200_FP32_PEAK_TFLOPS, 2)


def summary(results: dict[str, dict[str, float]]) -> str:
    """One line per shape and product: us and GFLOP/s per variant, gemm's time ratio to cuBLAS."""
    lines = [f"matmul float32 on CUDA (gemm.cu vs cuBLAS; % of the {H200_FP32_PEAK_TFLOPS:g} TFLOP/s fp32 peak):"]
    for key, times in results.items():
        shape, product = key.split("/")
        flops = _flops(shape, product)
        parts = [f"{v} {1e6 * times[v]:.1f} us {flops / times[v] / 1e9:.0f} GFLOP/s "
                 f"({100 * flops / times[v] / 1e12 / H200_FP32_PEAK_TFLOPS:.1f}%)" for v in VARIANTS if v in times]
        ratio = f" (gemm = {times['gemm'] / times['cublas']:.2f}x cuBLAS)" if len(times) == 2 else ""
        lines.append(f"  {key}: " + ", ".join(parts) + ratio)
    return "\n".join(lines)
