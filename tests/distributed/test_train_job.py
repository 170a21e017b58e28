"""The CLI: `mpiexec -n 2 python -m gpunn train` trains data-parallel and prints once;
`python -m gpunn info` lists the engines."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.distributed import launch


def test_info_lists_the_engines() -> None:
    done = subprocess.run([sys.executable, "-m", "gpunn", "info"], env=launch._env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "distributed mpi:" in done.stdout and "distributed nccl:" in done.stdout


@pytest.mark.mpi
def test_train_job_on_two_ranks(tmp_path) -> None:
    reason = launch.unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "run"
    cmd = [launch.mpiexec(), "-n", "2", sys.executable, "-m", "gpunn", "train", "--epochs", "2", "--batch-size", "16",
           "--out", str(out)]
    done = subprocess.run(cmd, env=launch._env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("data parallel: 2 ranks (MPI), batch 16 per rank, 32 in all") == 1  # rank 0 prints
    assert done.stdout.count("final test accuracy:") == 1
    assert (out / "best.safetensors").is_file() and (out / "metrics.json").is_file()
