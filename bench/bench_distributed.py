"""Data-parallel training on 1 and 2 ranks (real `mpiexec` jobs of bench/distributed_steps.py):
steps per second, samples per second over all ranks, and the share of the gradient all-reduce
that backward hid, with the default buckets (LeNet-5's 0.25 MB gradient is one bucket, so nothing
can overlap) and with small buckets (several, started while backward runs).

    .venv/bin/pytest bench/bench_distributed.py --benchmark-enable -s

pytest-benchmark times each whole job (start-up included); the figures that matter are measured
inside the ranks, after warm-up, and land in extra_info and in the summary: the 2-rank samples
per second over the 1-rank ones is the scaling ratio (2.0 would be perfect). Every rank runs one
thread (GPUNN_NUM_THREADS=1), so 2 ranks use the 2 cores one process with 1 thread leaves idle.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RESULTS: dict[str, dict] = {}
CASES = [(1, 25.0), (2, 25.0), (2, 0.05)]


def _mpiexec() -> str | None:
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


def _job(ranks: int, bucket_mb: float, out: Path) -> dict:
    env = {**os.environ, "GPUNN_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "GPUNN_BACKEND": os.environ.get("GPUNN_BACKEND", "numpy"),
           "PYTHONPATH": str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [_mpiexec(), "-n", str(ranks), sys.executable, str(HERE / "distributed_steps.py"), str(out), "lenet5",
           "64", "40", str(bucket_mb)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)  # type: ignore[list-item]
    return json.loads(out.read_text())


@pytest.mark.parametrize("ranks,bucket_mb", CASES, ids=[f"{r}rank-{b:g}MB" for r, b in CASES])
def test_data_parallel_steps(benchmark, tmp_path: Path, ranks: int, bucket_mb: float) -> None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (pip install 'gpunn[mpi]')")
    if _mpiexec() is None:
        pytest.skip("no mpiexec (pip install mpich)")
    out = tmp_path / "job.json"
    result = benchmark.pedantic(_job, args=(ranks, bucket_mb, out), rounds=2, iterations=1)
    benchmark.extra_info.update({"key": f"data_parallel/lenet5/{bucket_mb:g}MB", "impl": f"gpunn-{ranks}rank",
                                 "device": "cpu", **result})
    RESULTS[f"{ranks}rank-{bucket_mb:g}MB"] = result


def summary(results: dict[str, dict]) -> str:
    lines = ["data parallel, LeNet-5, batch 64 per rank, 1 thread per rank:"]
    for name, r in results.items():
        line = f"  {name:12s} {r['step_s'] * 1e3:7.2f} ms/step  {r['samples_per_s']:9.0f} samples/s"
        if "hidden_share" in r:
            line += (f"  buckets {r['buckets']}  all-reduce alone {r['allreduce_alone_s'] * 1e3:.2f} ms, waited "
                     f"{r['waited_overlapped_s'] * 1e3:.2f} ms (not overlapped {r['waited_not_overlapped_s'] * 1e3:.2f})"
                     f"  hidden {100 * r['hidden_share']:.0f}%")
        lines.append(line)
    one = results.get("1rank-25MB")
    two = results.get("2rank-25MB")
    if one and two:
        lines.append(f"  scaling, 2 ranks over 1: {two['samples_per_s'] / one['samples_per_s']:.2f}x samples/s")
    return "\n".join(lines)
