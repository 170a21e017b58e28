"""Adam step on 10M float32 parameters: gpunn vs plain NumPy vs torch fused.

"gpunn" is gpunn.optim.Adam on the NumPy backend, i.e. whatever NumpyBackend.adam_step runs: the
numba-fused parallel kernel (gpunn/backend/cpu/jit.py) when numba is installed (the `cpu-jit`
extra), else the chunked NumPy path. The summary names which. The untimed first step compiles the
kernel (about a second, or a cache load from __pycache__) before any timing. With a CUDA device,
"gpunn_cuda" (the fused kernel in kernels/adam.cu through CuPy) and "torch_fused_cuda" join.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/pytest bench/bench_adam.py --benchmark-enable
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_adam.py      # without pytest-benchmark

The CPU variants run in one process, on the same gradient; the summary line gives each one's ms per step
and its ratio to torch.optim.Adam(fused=True) (or to plain NumPy when torch does not import).
torch is optional and never a test dependency: its benchmark skips cleanly without it.
(Unset the OpenBLAS variables for the benchmark command only: they slow NumPy here.)
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest

import gpunn
from gpunn import Parameter
from gpunn.optim import Adam

N = 10_000_000
LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8
RESULTS: dict[str, float] = {}  # name -> median seconds per step, read by the summary


def _grad() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(N, dtype=np.float32)


def _gpunn_on(backend: str) -> Callable[[], None]:
    with gpunn.use_backend(backend) as be:
        p = Parameter(be.asarray(np.random.default_rng(1).standard_normal(N, dtype=np.float32)), name="w")
        p.grad[...] = be.asarray(_grad())
        opt = Adam([p], lr=LR, beta1=B1, beta2=B2, eps=EPS)

    def step() -> None:
        with gpunn.use_backend(backend) as be:
            opt.step()
            be.synchronize()
    return step


def make_gpunn() -> Callable[[], None]:
    return _gpunn_on("numpy")


def make_gpunn_cuda() -> Callable[[], None]:
    """gpunn.optim.Adam on the CuPy backend: the fused kernel in kernels/adam.cu."""
    from gpunn.backend import cuda_status
    if not cuda_status().usable:
        pytest.skip(f"no usable CUDA: {cuda_status().reason}")
    return _gpunn_on("cupy")


def make_numpy() -> Callable[[], None]:
    """Adam as one would write it in NumPy: whole-array expressions with temporaries."""
    p = np.random.default_rng(1).standard_normal(N, dtype=np.float32)
    g = _grad()
    m, v = np.zeros_like(p), np.zeros_like(p)
    t = [0]

    def step() -> None:
        t[0] += 1
        m[:] = B1 * m + (1 - B1) * g
        v[:] = B2 * v + (1 - B2) * g * g
        m_hat = m / (1 - B1 ** t[0])
        v_hat = v / (1 - B2 ** t[0])
        p[:] -= LR * m_hat / (np.sqrt(v_hat) + EPS)
    return step


def _torch_on(device: str) -> Callable[[], None]:
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    p = torch.from_numpy(np.random.default_rng(1).standard_normal(N, dtype=np.float32)).to(device).requires_grad_()
    p.grad = torch.from_numpy(_grad()).to(device)
    opt = torch.optim.Adam([p], lr=LR, betas=(B1, B2), eps=EPS, fused=True)
    if device == "cpu":
        return opt.step

    def step() -> None:
        opt.step()
        torch.cuda.synchronize()
    return step


def make_torch() -> Callable[[], None]:
    return _torch_on("cpu")


def make_torch_cuda() -> Callable[[], None]:
    return _torch_on("cuda")


# name -> (factory, impl, device); the *_cuda variants skip without a device
VARIANTS = {"gpunn": (make_gpunn, "gpunn", "cpu"), "numpy": (make_numpy, "numpy", "cpu"),
            "torch_fused": (make_torch, "torch", "cpu"), "gpunn_cuda": (make_gpunn_cuda, "gpunn", "cuda"),
            "torch_fused_cuda": (make_torch_cuda, "torch", "cuda")}
GPU_VARIANTS = ("gpunn_cuda", "torch_fused_cuda")


@pytest.mark.parametrize("name", [pytest.param(v, marks=pytest.mark.gpu) if v in GPU_VARIANTS else v
                                  for v in VARIANTS])
def test_adam_step_10m(benchmark, record, name):
    make, impl, device = VARIANTS[name]
    step = make()
    step()  # first step: packing, state allocation, thread pool start, kernel compile
    benchmark.group = "adam-10M-float32"
    benchmark.pedantic(step, rounds=20 if device == "cpu" else 100, warmup_rounds=2, iterations=1)
    RESULTS[name] = benchmark.stats.stats.median if benchmark.stats else float("nan")
    roof = None
    if impl == "gpunn":  # the target is a share of this backend's own copy bandwidth
        from conftest import backend_roofline  # bench/ is on sys.path under pytest's default import mode
        roof = backend_roofline(_backend("numpy" if device == "cpu" else "cupy"))
    # the minimum traffic of one step: read p, g, m, v and write p, m, v
    record(benchmark, "adam_step/10M-float32", impl, device, nbytes=7 * 4 * N, roof=roof)


def _backend(name: str) -> gpunn.Backend:
    with gpunn.use_backend(name) as be:
        return be


def summary(results: dict[str, float]) -> str:
    def ref_of(name: str) -> str:  # torch fused on the same device, else plain NumPy
        ref = "torch_fused_cuda" if name.endswith("_cuda") else "torch_fused"
        return ref if ref in results else "numpy"
    parts = [f"{k} {1e3 * s:.2f} ms ({s / results[ref_of(k)]:.2f}x {ref_of(k)})" if ref_of(k) in results
             else f"{k} {1e3 * s:.2f} ms" for k, s in results.items()]
    return f"adam 10M float32 per step (gpunn: {gpunn_path()}): " + "; ".join(parts)


def gpunn_path() -> str:
    """Which CPU adam_step the "gpunn" variant runs."""
    from gpunn.backend.cpu import jit as cpu_jit
    return "numba fused kernel" if cpu_jit.numba_available() else "chunked NumPy"


def main() -> None:
    """Round-robin timing (one step of each variant per round), so all share the same machine load."""
    steps = {}
    for name, (make, _impl, _device) in VARIANTS.items():
        try:
            steps[name] = make()
        except pytest.skip.Exception as exc:
            print(f"{name}: skipped ({exc})")
            continue
        steps[name]()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(20):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    results = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name}: median {1e3 * results[name]:.2f} ms, min {1e3 * min(t):.2f} ms")
    print(summary(results))


if __name__ == "__main__":
    main()
