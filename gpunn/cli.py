"""Command line: `python -m gpunn info | train | bench | export`."""
from __future__ import annotations

import argparse
import platform
import sys

import numpy as np

from gpunn.jobs.arguments import backend_name


def cmd_info(args: argparse.Namespace) -> int:
    import gpunn
    from gpunn.backend import cuda_status, get_backend, selection_reason
    from gpunn.errors import BackendUnavailableError

    print(f"gpunn {gpunn.__version__}  python {platform.python_version()}  numpy {np.__version__}")
    status = cuda_status()
    print(f"cuda: {'usable' if status.usable else 'not usable'} - {status.reason}")
    if status.cupy_version:
        print(f"cupy: {status.cupy_version}")
    try:
        backend = gpunn.set_backend(args.backend) if args.backend else get_backend()
    except (BackendUnavailableError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"backend: {backend.name} ({backend.device}) - {selection_reason()}")
    if status.usable and status.device_name:
        print(f"device: {status.device_name}, {status.device_memory_bytes / 2**30:.1f} GiB")
    from gpunn.distributed import engines

    for name, line in engines().items():
        print(f"distributed {name}: {line}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m gpunn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, the chosen backend and why, the device")
    info.add_argument("--backend", type=backend_name, default=None,
                      help="force a backend: auto, numpy, cupy, emulated")
    sub.add_parser("train", help="train a model (see `python -m gpunn train --help`)", add_help=False)
    sub.add_parser("bench", help="run the benchmark suites", add_help=False)
    sub.add_parser("export", help="a saved model as an ONNX file (see `python -m gpunn export --help`)",
                   add_help=False)
    if argv and argv[0] == "export":
        from gpunn.jobs.export import main as export_main
        return export_main(argv[1:])
    if argv and argv[0] in ("train", "bench"):
        if argv[0] == "train":
            from gpunn.jobs.train import main as train_main
            return train_main(argv[1:])
        from gpunn.jobs.bench import main as bench_main
        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    return cmd_info(args)
