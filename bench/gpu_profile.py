"""Host overhead versus GPU time of each CUDA kernel op, with cupyx.profiler.benchmark.

    python bench/gpu_profile.py            # needs CuPy and a device; prints one line per op

pytest-benchmark (bench_kernels.py, bench_ops.py) times an op plus its device sync from the host.
This splits that into the CPU time of the call (argument checks, allocations, launches) and the
GPU time between CUDA events, which tells whether an op is launch-bound or kernel-bound. Each op
runs with the custom kernels and on the generic CuPy path.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np


def cases(be: Any) -> dict[str, Callable[[], Any]]:
    rng = np.random.default_rng(0)

    def data(*shape: int) -> Any:
        return be.asarray(rng.standard_normal(shape, dtype=np.float32))

    out: dict[str, Callable[[], Any]] = {}
    for label, shape in (("cifar-bn1", (128, 32, 32, 32)), ("large", (64, 64, 56, 56))):
        x, dy = data(*shape), data(*shape)
        c = shape[1]
        g, b = be.xp.ones(c, np.float32), be.xp.zeros(c, np.float32)
        rm, rv = be.xp.zeros(c, np.float32), be.xp.ones(c, np.float32)
        _, mean, inv = be.batchnorm_forward_train(x, g, b, rm, rv, 0.1, 1e-5)
        out[f"bn_fwd/{label}"] = lambda x=x, g=g, b=b, rm=rm, rv=rv: be.batchnorm_forward_train(
            x, g, b, rm, rv, 0.1, 1e-5)
        out[f"bn_bwd/{label}"] = lambda dy=dy, x=x, g=g, mean=mean, inv=inv: be.batchnorm_backward(
            dy, x, g, mean, inv)
        geo = (3, 3, (1, 1), (1, 1), (1, 1))
        cols = be.im2col(x, *geo)
        out[f"im2col3x3/{label}"] = lambda x=x: be.im2col(x, *geo)
        out[f"col2im3x3/{label}"] = lambda cols=cols, s=shape: be.col2im(cols, s, *geo)
        _, arg = be.maxpool2d_forward(x, 2, 2, (2, 2), (0, 0))
        pooled = data(*shape[:2], shape[2] // 2, shape[3] // 2)
        out[f"maxpool2_fwd/{label}"] = lambda x=x: be.maxpool2d_forward(x, 2, 2, (2, 2), (0, 0))
        out[f"maxpool2_bwd/{label}"] = lambda p=pooled, a=arg, s=shape: be.maxpool2d_backward(
            p, a, s, 2, 2, (2, 2), (0, 0))
    n = 10_000_000
    p, gr, m = data(n), data(n), data(n)
    v = be.xp.abs(data(n))
    out["adam/10M"] = lambda: be.adam_step(p, gr, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 3, True)
    return out


def main() -> int:
    from gpunn.backend import cuda_status
    if not cuda_status().usable:
        print(f"gpu_profile: no usable CUDA: {cuda_status().reason}", file=sys.stderr)
        return 2
    from cupyx.profiler import benchmark

    from gpunn.backend.cuda.cupy_backend import CupyBackend
    for use_kernels in (True, False):
        be = CupyBackend(use_kernels=use_kernels)
        for name, fn in cases(be).items():
            r = benchmark(fn, n_repeat=50, n_warmup=5)
            cpu, gpu = 1e6 * float(np.median(r.cpu_times)), 1e6 * float(np.median(r.gpu_times[0]))
            path = "kernel " if use_kernels else "generic"
            print(f"{path} {name:22s} cpu {cpu:8.1f} us  gpu {gpu:8.1f} us", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
