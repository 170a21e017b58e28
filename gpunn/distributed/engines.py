"""What this machine can use for data parallelism, for `python -m gpunn info`. Imports nothing
heavy at module import; each probe imports its engine only when asked."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path


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
    if importlib.util.find_spec("cupy") is None:
        out["nccl"] = "no CuPy: pip install 'gpunn[cuda12]' (or cuda13) on a machine with an NVIDIA GPU"
    else:
        try:
            from cupy.cuda import nccl  # noqa: PLC0415

            ok = bool(getattr(nccl, "available", True))
            out["nccl"] = f"NCCL {nccl.get_version()}" if ok else "CuPy has no NCCL: install the nvidia-nccl wheel"
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable", said in words
            out["nccl"] = f"not usable: {exc}"
    return out
