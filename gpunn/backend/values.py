"""Where a scalar result lives: read back to the host as a Python float (the default, what a loss
or a penalty has always returned), or kept on the device as a 0-d array inside `device_values()`.

A captured step (a CUDA graph, gpunn/train/captured.py) runs its losses, penalties and metrics
inside `device_values()`: nothing in it may read device memory on the host, and the host reads the
accumulated values once per logging interval instead. Code that produces such a scalar returns
`host_scalar(x)` rather than `float(x)`.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

_local = threading.local()


@contextlib.contextmanager
def device_values() -> Iterator[None]:
    """Within this block (on this thread) `host_scalar` keeps values on the device."""
    before = getattr(_local, "keep", False)
    _local.keep = True
    try:
        yield
    finally:
        _local.keep = before


def keeping_on_device() -> bool:
    """Whether scalar results stay on the device here (inside `device_values()`)."""
    return getattr(_local, "keep", False)


def host_scalar(x: Any) -> Any:
    """`float(x)`, or inside `device_values()` x as a 0-d float64 device array: float64 as a Python
    float is, so that what is computed from it next (a mean, a weighted sum) rounds as it would on
    the host."""
    return x.astype(np.float64) if keeping_on_device() else float(x)
