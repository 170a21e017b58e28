"""Argument types the command-line jobs share."""
from __future__ import annotations

import argparse

from gpunn.backend.registry import available_names


def backend_name(text: str) -> str:
    """argparse `type=` for --backend: a registered name (an unknown one is a usage error, exit 2)."""
    names = available_names()
    key = text.strip().lower()
    if key not in names:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(names)}, got {text!r}")
    return key
