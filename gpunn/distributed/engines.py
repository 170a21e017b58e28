"""What this machine can use for data parallelism, for `python -m gpunn info`. Imports nothing
heavy at module import; each probe imports its engine only when asked."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from gpunn.backend.cuda import nccl


def _mpiexec() -> str | None:
    beside = Path(sys.executable).with_name("mpiexec")  # the mpich wheel puts it next to python
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


def engines() -> dict[str, str]:
    """Engine name -> a line saying whether it is usable and, if not, how to get it."""
    out: dict[str, str] = {}
    if importlib.util.find_spec("mpi4py") is None:
        out["mpi"] = "not installed: pip install 'gpunn[mpi]' (mpi4py and the mpich wheel)"
    else:
        import mpi4py  # noqa: PLC0415 - the version only; MPI itself is not started here

        launcher = _mpiexec()
        out["mpi"] = (f"mpi4py {mpi4py.__version__}, launcher {launcher}" if launcher else
                      f"mpi4py {mpi4py.__version__}, but no mpiexec found: pip install mpich, or use your system's")
    out["nccl"] = nccl.status()
    return out
