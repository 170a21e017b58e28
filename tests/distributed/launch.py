"""Start real MPI jobs for the tests: `mpiexec -n 2 python script ...` from this interpreter's
environment (the mpich wheel puts mpiexec beside python). Skips cleanly, with the reason, where
MPI cannot start here."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent / "scripts"
REPO = Path(__file__).resolve().parents[2]


def mpiexec() -> str | None:
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("GPUNN_BACKEND", "numpy")
    env["OMP_NUM_THREADS"] = "1"  # two ranks on two cores: one thread each
    for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"):
        env.pop(var, None)  # the job's own launcher sets them
    return env


@functools.lru_cache(maxsize=None)
def unavailable() -> str | None:
    """Why a 2-rank MPI job cannot run here, or None when it can."""
    try:
        import mpi4py  # noqa: F401, PLC0415
    except ImportError:
        return "mpi4py is not installed (pip install 'gpunn[mpi]')"
    launcher = mpiexec()
    if launcher is None:
        return "no mpiexec found (pip install mpich)"
    probe = "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2"
    try:
        done = subprocess.run([launcher, "-n", "2", sys.executable, "-c", probe], env=_env(), capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mpiexec -n 2 could not start: {exc}"
    if done.returncode != 0:
        return f"mpiexec -n 2 failed here: {(done.stderr or done.stdout).strip()[-300:]}"
    return None


def run(script: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run scripts/<script> on 2 ranks; returns the finished process (never raises on its status)."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    cmd = [mpiexec(), "-n", "2", sys.executable, str(SCRIPTS / script), *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)  # type: ignore[arg-type]
