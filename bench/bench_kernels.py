"""Kernel benchmarks: each kernel op on every available backend, reported as effective GB/s.

    .venv/bin/pytest bench/bench_kernels.py --benchmark-enable            # numpy (+ cupy when usable)
    GPUNN_BENCH_EMULATED=1 .venv/bin/pytest bench/bench_kernels.py --benchmark-enable   # + the emulator

"Effective" bandwidth counts the bytes an op must move at least once (inputs read once, outputs
written once: 28 bytes per float32 parameter for Adam), divided by the mean time; it is what the
targets are stated in (fused Adam >= 90% of device-to-device copy bandwidth, batch norm forward +
backward >= 70%). `test_copy_bandwidth` measures that copy bandwidth on the same backend. On CuPy
both the kernel and the generic (use_kernels=False) path are measured. The emulator is slow by
design (one fiber per CUDA thread); it is benchmarked only on request, with small shapes.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from conftest import DEVICE_OF, backend_roofline, tag  # bench/ is on sys.path under pytest
from gpunn.backend import cuda_status
from gpunn.backend.base import Backend
from gpunn.backend.ops.geometry import conv_output_size

# (name, use_kernels) -> shapes scale: the emulator gets toy sizes, the GPU realistic ones.
SCALE = {"numpy": "medium", "emulated": "small", "cupy": "large"}
SHAPES = {  # conv/pool/bn activation (N, C, H, W) and the Adam parameter count
    "small": ((2, 8, 16, 16), 1 << 14),
    "medium": ((16, 32, 32, 32), 1 << 20),
    "large": ((64, 64, 56, 56), 1 << 25),
}


def _backends() -> list[Any]:
    params = [pytest.param(("numpy", True), id="numpy")]
    if os.environ.get("GPUNN_BENCH_EMULATED"):
        params.append(pytest.param(("emulated", True), id="emulated"))
    params += [pytest.param(("cupy", True), id="cupy-kernels", marks=pytest.mark.gpu),
               pytest.param(("cupy", False), id="cupy-generic", marks=pytest.mark.gpu)]
    return params


_made: dict[tuple[str, bool], Backend] = {}


def _make(name: str, use_kernels: bool) -> Backend:
    key = (name, use_kernels)
    if key not in _made:
        if name == "numpy":
            from gpunn.backend.cpu.backend import NumpyBackend
            _made[key] = NumpyBackend()
        elif name == "emulated":
            from gpunn.backend.cuda.emulated import EmulatedBackend
            _made[key] = EmulatedBackend(use_kernels=use_kernels)
        else:
            if not cuda_status().usable:
                pytest.skip(f"no usable CUDA: {cuda_status().reason}")
            from gpunn.backend.cuda.cupy_backend import CupyBackend
            _made[key] = CupyBackend(use_kernels=use_kernels)
    return _made[key]


@pytest.fixture(params=_backends())
def bench_backend(request: Any) -> tuple[Backend, str]:
    name, use_kernels = request.param
    return _make(name, use_kernels), SCALE[name]


def _measure(benchmark: Any, backend: Backend, fn: Callable[[], Any], nbytes: int, op: str, scale: str) -> None:
    def run() -> Any:
        out = fn()
        backend.synchronize()
        return out

    run()  # warm-up: compiles the kernel family outside the timing
    benchmark(run)
    if benchmark.stats is not None:  # None under --benchmark-disable (a plain smoke run)
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["bytes"] = nbytes
        benchmark.extra_info["GB/s"] = round(nbytes / mean / 1e9, 2)
        print(f"\n{benchmark.name}: {benchmark.extra_info['GB/s']} GB/s effective ({nbytes} bytes in {mean * 1e6:.1f} us)")
        # the report pairs the kernel with the generic path of the same backend, at the same scale
        generic = getattr(backend, "use_kernels", None) == frozenset()
        tag(benchmark, f"kernel_{op}/{scale}", "gpunn-generic" if generic else "gpunn", DEVICE_OF[backend.name],
            nbytes=nbytes, roof=backend_roofline(backend))


def _data(backend: Backend, shape: tuple[int, ...], seed: int = 0, dtype: Any = np.float32) -> Any:
    return backend.asarray(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def test_copy_bandwidth(benchmark: Any, bench_backend: tuple[Backend, str]) -> None:
    be, scale = bench_backend
    n = SHAPES[scale][1] * 4
    src, dst = _data(be, (n,)), be.xp.empty(n, np.float32)
    _measure(benchmark, be, lambda: be.xp.copyto(dst, src), 2 * src.nbytes, "copy", scale)


def test_im2col(benchmark: Any, bench_backend: tuple[Backend, str]) -> None:
    be, scale = bench_backend
    x = _data(be, SHAPES[scale][0])
    n, c, h, w = x.shape
    cols_bytes = n * c * 9 * h * w * 4
    _measure(benchmark, be, lambda: be.im2col(x, 3, 3, (1, 1), (1, 1), (1, 1)), x.nbytes + cols_bytes,
             "im2col", scale)


def test_col2im(benchmark: Any, bench_backend: tuple[Backend, str]) -> None:
    be, scale = bench_backend
    shape = SHAPES[scale][0]
    n, c, h, w = shape
    cols = _data(be, (n, c * 9, h * w))
    _measure(benchmark, be, lambda: be.col2im(cols, shape, 3, 3, (1, 1), (1, 1), (1, 1)),
             cols.nbytes + 4 * n * c * h * w, "col2im", scale)


def test_maxpool_forward_backward(benchmark: Any, bench_backend: tuple[Backend, str]) -> None:
    be, scale = bench_backend
    x = _data(be, SHAPES[scale][0])
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, 3, 2, 1), conv_output_size(w, 3, 2, 1)
    dy = _data(be, (n, c, oh, ow), seed=1)

    def step() -> Any:
        _, arg = be.maxpool2d_forward(x, 3, 3, (2, 2), (1, 1))
        return be.maxpool2d_backward(dy, arg, x.shape, 3, 3, (2, 2), (1, 1))

    out = n * c * oh * ow
    # forward: x in, y + argmax out; backward: dy + argmax in, dx out
    _measure(benchmark, be, step, x.nbytes + 8 * out + 8 * out + x.nbytes, "maxpool_fwd_bwd", scale)


def test_batchnorm_forward_backward(benchmark: Any, bench_backend: tuple[Backend, str]) -> None:
    be, scale = bench_backend
    x = _data(be, SHAPES[scale][0])
    c = x.shape[1]
    gamma, beta = be.asarray(np.ones(c, np.float32)), be.asarray(np.zeros(c, np.float32))
    rm, rv = be.asarray(np.zeros(c, np.float32)), be.asarray(np.ones(c, np.float32))
    dy = _data(be, x.shape, seed=1)

    def step() -> Any:
        _, mean, invstd = be.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5)
        return be.batchnorm_backward(dy, x, gamma, mean, invstd)

    # forward: x in, y out; backward: x and dy in, dx out
    _measure(benchmark, be, step, 5 * x.nbytes, "batchnorm_fwd_bwd", scale)


def test_adam_step(benchmark: Any, bench_backend: tuple[Backend, str]) -> None:
    be, scale = bench_backend
    n = SHAPES[scale][1]
    p, g, m = _data(be, (n,)), _data(be, (n,), 1), _data(be, (n,), 2)
    v = be.xp.abs(_data(be, (n,), 3))
    state = {"step": 0}

    def step() -> None:
        state["step"] += 1
        be.adam_step(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, state["step"], True)

    _measure(benchmark, be, step, 28 * n, "adam", scale)


def test_dropout_forward_backward(benchmark: Any, bench_backend: tuple[Backend, str]) -> None:
    """kernels/philox.cu (Philox draw + advance, then the backward kernel) on cupy-kernels, against
    CuPy's own generator path (the generic op: cupy.random's `random` then the comparisons) on
    cupy-generic; the NumPy backend draws from its generator."""
    be, scale = bench_backend
    x = _data(be, SHAPES[scale][0])
    dy = _data(be, x.shape, seed=1)

    def step() -> Any:
        _, mask = be.dropout_forward(x, 0.1)
        return be.dropout_backward(dy, mask, 0.1)

    # forward: x in, y and a uint8 mask out; backward: dy and the mask in, dx out (18 B per float32)
    _measure(benchmark, be, step, 4 * x.nbytes + 2 * x.size, "dropout_fwd_bwd", scale)
