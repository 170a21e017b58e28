"""Backend: the array module plus the heavy ops, written once against `self.xp`.

Subclasses choose `xp` and the device; a device backend overrides only the ops that have a
custom kernel (Thinc's Ops pattern). Everything above this layer calls these methods and never
asks which array module is underneath.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn.backend.ops.activation import ActivationOps
from gpunn.backend.ops.conv import ConvOps
from gpunn.backend.ops.dense import DenseOps
from gpunn.backend.ops.norm import NormOps
from gpunn.backend.ops.optim import OptimOps
from gpunn.backend.ops.pool import PoolOps


def native_byte_order(a: Any) -> Any:
    """`a`, or a native-byte-order copy of it when it is a NumPy array stored the other way round
    (big-endian '>f4' from FITS files, some .npy files or network formats).

    Done on the host, where arrays enter gpunn: NumPy's random generator refuses such dtypes, the
    compiled kernels read their raw bytes, and CuPy, which only has little-endian arrays, may
    copy the bytes across without swapping them."""
    if isinstance(a, np.ndarray) and not a.dtype.isnative:
        return a.astype(a.dtype.newbyteorder("="))
    return a


def to_host(a: Any) -> np.ndarray:
    """`a` as a host NumPy array, whichever backend's array it is: the one way gpunn reads an array
    back to the host (metrics, callbacks, state_dict, moving between backends).

    A NumPy array comes back as it is (no copy: call .copy() to own it); a device array (CuPy, or
    anything with `__cuda_array_interface__` and a `.get()`) is copied to the host; anything else
    (a list, a scalar, an array-like) goes through np.asarray."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "__cuda_array_interface__") and callable(getattr(a, "get", None)):
        return a.get()  # CuPy's device-to-host copy; np.asarray refuses a CuPy array
    return np.asarray(a)


class Backend(ConvOps, PoolOps, NormOps, OptimOps, DenseOps, ActivationOps):
    name: str = "generic"
    device: str = "cpu"
    default_dtype = np.dtype(np.float32)

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.rng = xp.random.default_rng()

    # -- arrays -------------------------------------------------------------------------------
    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """`a` as an array of this backend (no copy when it already is one of the right dtype),
        in native byte order."""
        return self.xp.asarray(native_byte_order(a), dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        """`a` (this or any backend's array) on the host: see `to_host`."""
        return to_host(a)

    def is_native(self, a: Any) -> bool:
        return isinstance(a, self.xp.ndarray)

    def manual_seed(self, seed: int) -> None:
        self.rng = self.xp.random.default_rng(seed)

    def synchronize(self) -> None:
        """Wait for queued device work; a no-op on the CPU."""

    def describe(self) -> str:
        return f"{self.name} ({self.device})"

    def __repr__(self) -> str:
        return f"<gpunn {type(self).__name__} name={self.name!r} device={self.device!r}>"
