"""Op-level benchmarks on every available gpunn backend: im2col / col2im, conv2d forward and
backward, max-pool forward and backward, batch norm forward and backward.

    .venv/bin/pytest bench/bench_ops.py --benchmark-enable

Each result carries, in extra_info, its effective GFLOP/s (convolutions: 2*N*F*OH*OW*C*kh*kw per
GEMM) or GB/s (everything else: the bytes the op must read and write at least once), next to the
roofline measured in the same run (sgemm GFLOP/s, copy GB/s). The same keys are measured in
PyTorch by bench_peers.py, so the report can pair them.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DEVICE_OF  # bench/ is on sys.path under pytest's default import mode
from gpunn.backend.ops.geometry import conv_output_size

# name -> ((C, H, W) at batch N, (F, kh, kw), padding): LeNet-5's second conv, a CIFAR CNN conv
CONVS = {
    "lenet-conv2": ((6, 14, 14), (16, 5, 5), 0),
    "cifar-conv2": ((32, 32, 32), (32, 3, 3), 1),
}
POOLS = {"lenet-pool1": (6, 28, 28), "cifar-pool1": (32, 32, 32)}
NORMS = {"cifar-bn1": (32, 32, 32)}
EMULATED_CONV = ((4, 8, 8), (4, 3, 3), 1)


def _conv_case(name: str, backend_name: str) -> tuple[tuple[int, int, int], tuple[int, int, int], int]:
    return EMULATED_CONV if backend_name == "emulated" else CONVS[name]


def _random(be, shape, seed=0):
    return be.asarray(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


@pytest.mark.parametrize("case", list(CONVS))
@pytest.mark.parametrize("op", ["im2col", "col2im"])
def test_unfold(benchmark, bench_backend, roofline, record, timed, bench_rounds, batch_size, case, op):
    be = bench_backend
    (c, h, w), (f, kh, kw), pad = _conv_case(case, be.name)
    args = (kh, kw, (1, 1), (pad, pad), (1, 1))
    x = _random(be, (batch_size, c, h, w))
    cols = be.im2col(x, *args)
    fn = (lambda: be.im2col(x, *args)) if op == "im2col" else (lambda: be.col2im(cols, x.shape, *args))
    timed(benchmark, fn, be.synchronize, bench_rounds)
    nbytes = 4 * (x.size + cols.size)
    record(benchmark, f"{op}/{case}", "gpunn", _device(be), nbytes=nbytes, roof=roofline)


@pytest.mark.parametrize("case", list(CONVS))
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_conv2d(benchmark, bench_backend, roofline, record, timed, bench_rounds, batch_size, case, direction):
    be = bench_backend
    (c, h, w), (f, kh, kw), pad = _conv_case(case, be.name)
    n = batch_size
    x = _random(be, (n, c, h, w))
    weight = _random(be, (f, c, kh, kw), seed=1)
    bias = _random(be, (f,), seed=2)
    geo = ((1, 1), (pad, pad), (1, 1))
    y, cache = be.conv2d_forward(x, weight, bias, *geo)
    dy = _random(be, y.shape, seed=3)
    if direction == "fwd":
        fn = lambda: be.conv2d_forward(x, weight, bias, *geo)  # noqa: E731
        gemms = 1
    else:
        fn = lambda: be.conv2d_backward(dy, x.shape, weight, cache, *geo, need_dx=True)  # noqa: E731
        gemms = 2  # dW and dX
    timed(benchmark, fn, be.synchronize, bench_rounds)
    oh, ow = conv_output_size(h, kh, 1, pad), conv_output_size(w, kw, 1, pad)
    flops = gemms * 2.0 * n * f * oh * ow * c * kh * kw
    record(benchmark, f"conv2d_{direction}/{case}", "gpunn", _device(be), flops=flops, roof=roofline)


@pytest.mark.parametrize("case", list(POOLS))
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_maxpool(benchmark, bench_backend, roofline, record, timed, bench_rounds, batch_size, case, direction):
    be = bench_backend
    c, h, w = (4, 8, 8) if be.name == "emulated" else POOLS[case]
    x = _random(be, (batch_size, c, h, w))
    geo = (2, 2, (2, 2), (0, 0))
    y, argmax = be.maxpool2d_forward(x, *geo)
    dy = _random(be, y.shape, seed=1)
    if direction == "fwd":
        fn = lambda: be.maxpool2d_forward(x, *geo)  # noqa: E731
    else:
        fn = lambda: be.maxpool2d_backward(dy, argmax, x.shape, *geo)  # noqa: E731
    timed(benchmark, fn, be.synchronize, bench_rounds)
    nbytes = 4 * (x.size + 2 * y.size)  # x and dx once; y (or dy) and the int32 argmax once
    record(benchmark, f"maxpool_{direction}/{case}", "gpunn", _device(be), nbytes=nbytes, roof=roofline)


@pytest.mark.parametrize("case", list(NORMS))
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_batchnorm(benchmark, bench_backend, roofline, record, timed, bench_rounds, batch_size, case, direction):
    be = bench_backend
    c, h, w = (4, 8, 8) if be.name == "emulated" else NORMS[case]
    x = _random(be, (batch_size, c, h, w))
    gamma, beta = _random(be, (c,), 1), _random(be, (c,), 2)
    rm, rv = be.xp.zeros((c,), dtype=np.float32), be.xp.ones((c,), dtype=np.float32)
    y, mean, invstd = be.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5)
    dy = _random(be, y.shape, seed=3)
    if direction == "fwd":
        fn = lambda: be.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5)  # noqa: E731
        nbytes = 4 * 2 * x.size  # read x, write y
    else:
        fn = lambda: be.batchnorm_backward(dy, x, gamma, mean, invstd)  # noqa: E731
        nbytes = 4 * 3 * x.size  # read dy and x, write dx
    timed(benchmark, fn, be.synchronize, bench_rounds)
    record(benchmark, f"batchnorm_{direction}/{case}", "gpunn", _device(be), nbytes=nbytes, roof=roofline)


def _device(be) -> str:
    return DEVICE_OF.get(be.name, be.name)
