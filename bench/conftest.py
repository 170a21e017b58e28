"""Shared pieces of the pytest-benchmark suites in bench/ (files named bench_*.py).

    python -m gpunn bench                       # everything, peers in separate processes, with a report
    .venv/bin/pytest bench/bench_ops.py --benchmark-enable          # one suite by hand

Fixtures:
- `bench_backend`: the gpunn backends to measure: numpy always, emulated when
  GPUNN_BENCH_EMULATED=1 (slow; toy shapes), cupy when a CUDA device answers.
- `roofline`: the machine's own sgemm GFLOP/s and copy GB/s for a backend, measured once per
  session in the same run as the benchmarks, so every effective rate sits next to its ceiling.
- `record`: tags a finished benchmark for `python -m gpunn bench`'s report: a `key` that pairs the
  same work across implementations (gpunn / torch) and devices, plus effective GFLOP/s or GB/s.
- `torch_threads`: the thread count peers use (GPUNN_BENCH_THREADS, else os.cpu_count()); the
  job sets OPENBLAS_NUM_THREADS to the same value for NumPy.
Sizes: GPUNN_BENCH_QUICK=1 shrinks batch sizes (used by `python -m gpunn bench --quick`).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest


def pytest_collect_file(parent, file_path):
    # files named on the command line are collected by pytest itself; only add the others
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_terminal_summary(terminalreporter):
    for name, module in list(sys.modules.items()):
        results = getattr(module, "RESULTS", None)
        if name.split(".")[-1].startswith("bench_") and results and hasattr(module, "summary"):
            terminalreporter.write_line(module.summary(results))


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what decides CPU numbers: the BLAS library, its kernel and thread count, and the
    OpenBLAS variables (they halve NumPy's sgemm here when set)."""
    try:
        from threadpoolctl import threadpool_info
        machine_info["threadpools"] = threadpool_info()
    except ImportError:
        machine_info["threadpools"] = "threadpoolctl not installed"
    machine_info["openblas_env"] = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_"))}
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["bench_threads"] = bench_threads()


def bench_threads() -> int:
    return int(os.environ.get("GPUNN_BENCH_THREADS") or os.cpu_count() or 1)


def quick() -> bool:
    return os.environ.get("GPUNN_BENCH_QUICK", "") not in ("", "0")


# -- backends -----------------------------------------------------------------------------------
def _backend_params() -> list[Any]:
    params = [pytest.param("numpy", id="numpy")]
    if os.environ.get("GPUNN_BENCH_EMULATED", "") not in ("", "0"):
        params.append(pytest.param("emulated", id="emulated"))
    params.append(pytest.param("cupy", id="cupy", marks=pytest.mark.gpu))
    return params


DEVICE_OF = {"numpy": "cpu", "emulated": "emulated", "cupy": "cuda"}


@pytest.fixture(params=_backend_params())
def bench_backend(request):
    """A gpunn backend, current for the benchmark's duration; skips what this machine lacks."""
    import gpunn
    from gpunn.backend import cuda_status
    from gpunn.errors import BackendUnavailableError

    name = request.param
    if name == "cupy" and not cuda_status().usable:
        pytest.skip(f"no usable CUDA: {cuda_status().reason}")
    try:
        with gpunn.use_backend(name) as be:
            gpunn.manual_seed(0)
            yield be
    except BackendUnavailableError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))


# -- roofline -----------------------------------------------------------------------------------
def _best_time(fn: Callable[[], Any], sync: Callable[[], None], repeat: int) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_roofline(xp: Any, sync: Callable[[], None], gemm_n: int, copy_bytes: int,
                     copy: Callable[[Any, Any], Any] | None = None) -> dict[str, float]:
    """sgemm GFLOP/s (square float32 matmul) and copy GB/s (bytes read + bytes written), best of a
    few. `copy(dst, src)` replaces xp.copyto, e.g. by one that uses every thread the ops use."""
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((gemm_n, gemm_n), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((gemm_n, gemm_n), dtype=np.float32))
    c = xp.empty((gemm_n, gemm_n), dtype=np.float32)
    t_gemm = _best_time(lambda: xp.matmul(a, b, out=c), sync, 5)
    n = copy_bytes // 4
    src = xp.ones(n, dtype=np.float32)
    dst = xp.empty(n, dtype=np.float32)
    copy = copy or xp.copyto
    t_copy = _best_time(lambda: copy(dst, src), sync, 5)
    return {"sgemm_gflops": 2 * gemm_n ** 3 / t_gemm / 1e9, "copy_gbs": 2 * copy_bytes / t_copy / 1e9}


_rooflines: dict[str, dict[str, float]] = {}


def backend_roofline(be: Any) -> dict[str, float]:
    """The roofline of a gpunn backend, measured once per process (GPU sizes for cupy)."""
    name = be.name
    if name not in _rooflines:
        big = name == "cupy"
        _rooflines[name] = measure_roofline(be.xp, be.synchronize, gemm_n=8192 if big else 1024,
                                            copy_bytes=(1 << 30) if big else (64 << 20),
                                            copy=None if big else threaded_copy)
    return _rooflines[name]


def threaded_copy(dst: np.ndarray, src: np.ndarray) -> None:
    """np.copyto split over gpunn's CPU threads, as the ops are: a one-thread copy understates the
    host's bandwidth, and multi-threaded ops then showed several times "100% of copy"."""
    from gpunn.backend.cpu import threads as cpu_threads

    def part(a: int, b: int) -> None:
        np.copyto(dst[a:b], src[a:b])
    cpu_threads.parallel_for(part, src.size, work=2 * src.size)


@pytest.fixture
def roofline(bench_backend) -> dict[str, float]:
    return backend_roofline(bench_backend)


# -- tagging results ----------------------------------------------------------------------------
def tag(benchmark: Any, key: str, impl: str, device: str, flops: float | None = None,
        nbytes: float | None = None, roof: dict[str, float] | None = None, items: int | None = None) -> None:
    """Write the report's fields into benchmark.extra_info (call after the benchmark ran)."""
    info = benchmark.extra_info
    info.update({"key": key, "impl": impl, "device": device})
    stats = getattr(benchmark, "stats", None)
    median = stats.stats.median if stats else None
    if roof:
        info["roofline_sgemm_gflops"] = round(roof["sgemm_gflops"], 2)
        info["roofline_copy_gbs"] = round(roof["copy_gbs"], 2)
    if not median:
        return
    if flops:
        info["gflops"] = round(flops / median / 1e9, 2)
        if roof:
            info["pct_of_sgemm"] = round(100 * info["gflops"] / roof["sgemm_gflops"], 1)
    if nbytes:
        info["gbs"] = round(nbytes / median / 1e9, 2)
        if roof:
            info["pct_of_copy"] = round(100 * info["gbs"] / roof["copy_gbs"], 1)
    if items:
        info["items_per_s"] = round(items / median, 1)


@pytest.fixture
def record() -> Callable[..., None]:
    return tag


@pytest.fixture
def bench_rounds(bench_backend) -> int:
    """Timed rounds per benchmark: the emulator is slow by design, quick mode is for smoke runs."""
    if bench_backend.name == "emulated":
        return 2
    return 5 if quick() else 15


@pytest.fixture
def batch_size(bench_backend) -> int:
    """128 as the issue states; 16 in quick mode, 2 on the emulator."""
    if bench_backend.name == "emulated":
        return 2
    return 16 if quick() else 128


def run_timed(benchmark: Any, fn: Callable[[], Any], sync: Callable[[], None], rounds: int) -> None:
    """Benchmark fn (plus a device sync) with explicit rounds, one call per round."""
    def call() -> None:
        fn()
        sync()
    benchmark.pedantic(call, rounds=rounds, warmup_rounds=2, iterations=1)


@pytest.fixture
def timed() -> Callable[..., None]:
    return run_timed
