"""Backend: the array module plus the heavy ops, written once against `self.xp`.

Subclasses choose `xp` and the device; a device backend overrides only the ops that have a
custom kernel (Thinc's Ops pattern). Everything above this layer calls these methods and never
asks which array module is underneath.
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from gpunn.backend.ops.activation import ActivationOps
from gpunn.backend.ops.cast import CastOps
from gpunn.backend.ops.conv import ConvOps
from gpunn.backend.ops.dense import DenseOps
from gpunn.backend.ops.dropout import DropoutOps
from gpunn.backend.ops.norm import NormOps
from gpunn.backend.ops.optim import OptimOps
from gpunn.backend.ops.pool import PoolOps
from gpunn.errors import GraphCaptureError


def native_byte_order(a: Any) -> Any:
    """`a`, or a native-byte-order copy of it when it is a NumPy array stored the other way round
    (big-endian '>f4' from FITS files, some .npy files or network formats).

    Done on the host, where arrays enter gpunn: NumPy's random generator refuses such dtypes, the
    compiled kernels read their raw bytes, and CuPy, which only has little-endian arrays, may
    copy the bytes across without swapping them."""
    if isinstance(a, np.ndarray) and not a.dtype.isnative:
        return a.astype(a.dtype.newbyteorder("="))
    return a


#: DLPack device types (DLDeviceType) whose memory the host can read: kDLCPU, kDLCUDAHost (pinned),
#: kDLROCMHost and kDLCUDAManaged, the ones np.from_dlpack imports without a copy.
DLPACK_HOST_DEVICES = frozenset({1, 3, 11, 13})
#: the DLPack device types that CuPy imports in place (kDLCUDA, kDLCUDAManaged, kDLROCM).
DLPACK_CUDA_DEVICES = frozenset({2, 10, 13})
_DLPACK_DEVICE_NAMES = {1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal", 9: "vpi",
                        10: "rocm", 11: "rocm_host", 12: "ext_dev", 13: "cuda_managed", 14: "oneapi",
                        15: "webgpu", 16: "hexagon", 17: "maia"}


def is_foreign_array(a: Any) -> bool:
    """Whether `a` is an array of another library that gpunn imports through a protocol: it has
    `__dlpack__` (torch and JAX tensors, CuPy and NumPy-like arrays) or `__array__`, and is not
    a NumPy array or a CuPy array (both of which every backend already reads). Lists, scalars
    and NumPy arrays are not foreign."""
    if isinstance(a, (np.ndarray, np.generic, list, tuple, str, bytes, dict)) or a is None:
        return False
    if _is_cupy_like(a):
        return False
    return hasattr(a, "__dlpack__") or hasattr(a, "__array__")


def _is_cupy_like(a: Any) -> bool:
    return hasattr(a, "__cuda_array_interface__") and callable(getattr(a, "get", None))


def dlpack_device(a: Any) -> tuple[int, int] | None:
    """(device type, device id) from `a.__dlpack_device__()`, as plain ints; None when `a` does not
    say (a producer without `__dlpack_device__` is taken to be on the host, as NumPy does)."""
    fn = getattr(a, "__dlpack_device__", None)
    if not callable(fn):
        return None
    device = fn()
    try:
        kind, index = device
        return int(kind), int(index)
    except (TypeError, ValueError):
        raise TypeError(f"{type(a).__name__}.__dlpack_device__() must return (device type, device id), "
                        f"got {device!r}") from None


def dlpack_device_name(device: tuple[int, int] | None) -> str:
    """'cuda:0', 'cpu:0', ... for a DLPack (device type, device id)."""
    if device is None:
        return "cpu (not stated)"
    return f"{_DLPACK_DEVICE_NAMES.get(device[0], f'device type {device[0]}')}:{device[1]}"


def _describe(a: Any) -> str:
    return f"{type(a).__module__}.{type(a).__qualname__}"


def foreign_to_host(a: Any, where: str = "gpunn.from_dlpack") -> np.ndarray:
    """A foreign array (see `is_foreign_array`) as a host NumPy array.

    - On the host (DLPack device cpu, pinned or managed memory, or no `__dlpack_device__`):
      `np.from_dlpack`, no copy: the array shares the producer's memory (a torch CPU tensor's
      `data_ptr()`); it may be read-only (NumPy 2 honours DLPack's read-only flag).
    - On a device (a torch CUDA tensor, a JAX GPU array): one copy, through the producer's own
      `__array__` when it has one that works, else DLPack asking the producer for a host copy
      (`np.from_dlpack(a, device="cpu", copy=True)`, DLPack 1.0's dl_device); if neither works, a
      TypeError saying what to do (copy it to the host yourself, or use the cupy backend).
    - No `__dlpack__`, only `__array__`: `np.asarray(a)`, whatever the producer does (a copy or not).

    A torch tensor that requires grad is refused by torch itself: call .detach() first."""
    if not hasattr(a, "__dlpack__"):
        return np.asarray(a)
    device = dlpack_device(a)
    if device is None or device[0] in DLPACK_HOST_DEVICES:
        try:
            return np.from_dlpack(a)
        except (BufferError, RuntimeError, TypeError, ValueError) as exc:
            # a dtype DLPack lacks, a tensor that requires grad: the producer's __array__ may still
            # work; if not, DLPack's refusal is the one that says what to do ("use tensor.detach()")
            if hasattr(a, "__array__"):
                try:
                    return np.asarray(a)
                except (BufferError, RuntimeError, TypeError, ValueError):
                    pass
            raise TypeError(f"{where}: cannot import the {_describe(a)} through DLPack: {exc}") from None
    if hasattr(a, "__array__"):
        try:
            return np.asarray(a)  # the producer's own device-to-host copy (JAX, and similar)
        except (BufferError, RuntimeError, TypeError, ValueError):
            pass  # torch refuses a CUDA tensor here ("use Tensor.cpu()"): ask through DLPack
    try:
        return np.from_dlpack(a, device="cpu", copy=True)  # DLPack 1.0: the producer copies to the host
    except (BufferError, RuntimeError, TypeError, ValueError, NotImplementedError):
        pass
    raise TypeError(f"{where}: the {_describe(a)} lives on {dlpack_device_name(device)}, which this backend cannot "
                    "read, and the producer would not copy it to the host; copy it first (torch: t.cpu(), JAX: "
                    "jax.device_get(a)) or use a backend on that device (gpunn.set_backend('cupy'))")


def to_host(a: Any) -> np.ndarray:
    """`a` as a host NumPy array, whichever backend's array it is: the one way gpunn reads an array
    back to the host (metrics, callbacks, state_dict, moving between backends).

    A NumPy array comes back as it is (no copy: call .copy() to own it); a device array (CuPy, or
    anything with `__cuda_array_interface__` and a `.get()`) is copied to the host; a foreign array
    (a torch or JAX tensor, anything with `__dlpack__` or `__array__`) goes through
    `foreign_to_host` (no copy when it is on the host); anything else (a list, a scalar) through
    np.asarray."""
    if isinstance(a, np.ndarray):
        hook = getattr(type(a), "__gpunn_to_host__", None)  # the emulator's device memory (gpunn.emu.capture)
        return a if hook is None else hook(a)
    if _is_cupy_like(a):
        return a.get()  # CuPy's device-to-host copy; np.asarray refuses a CuPy array
    if is_foreign_array(a):
        return foreign_to_host(a, "to_host")
    return np.asarray(a)


class Backend(ConvOps, PoolOps, NormOps, OptimOps, DenseOps, DropoutOps, ActivationOps, CastOps):
    name: str = "generic"
    device: str = "cpu"
    default_dtype = np.dtype(np.float32)

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.rng = xp.random.default_rng()

    # -- arrays -------------------------------------------------------------------------------
    def asarray(self, a: Any, dtype: Any = None, *, where: str | None = None) -> Any:
        """`a` as an array of this backend (no copy when it already is one of the right dtype),
        in native byte order. A foreign array (a torch or JAX tensor, anything with `__dlpack__`
        or `__array__`) is imported without a copy when it is on this backend's device, with one
        copy when it is not (see `foreign_to_host`); `where` names the caller in its errors."""
        if is_foreign_array(a):
            a = self._import_foreign(a, where or f"{self.name} backend: asarray")
        return self.xp.asarray(native_byte_order(a), dtype=dtype)

    def _import_foreign(self, a: Any, where: str) -> Any:
        """A foreign array as an array this backend's `xp.asarray` reads: on the host here (a
        device backend imports arrays on its own device in place)."""
        return foreign_to_host(a, where)

    def to_numpy(self, a: Any) -> np.ndarray:
        """`a` (this or any backend's array) on the host: see `to_host`."""
        return to_host(a)

    def is_native(self, a: Any) -> bool:
        return isinstance(a, self.xp.ndarray)

    def manual_seed(self, seed: int) -> None:
        self.rng = self.xp.random.default_rng(seed)

    def synchronize(self) -> None:
        """Wait for queued device work; a no-op on the CPU."""

    # -- captured steps (CUDA graphs; see gpunn/train/captured.py) ------------------------------
    #: whether this backend can record a step as a graph and replay it (CuPy: CUDA graphs; the
    #: emulated backend: its recorder). The NumPy backend cannot: a captured step runs eagerly there.
    supports_graphs: bool = False

    @property
    def capturing(self) -> bool:
        """True while this backend is recording a graph: host reads of device memory, host-to-device
        copies and data-dependent checks are not allowed then (the code that would do them asks)."""
        return False

    def capture_graph(self, body: Any) -> tuple[Any, Any]:
        """Record `body()`'s device work as a graph without running it (the device state is as it
        was before); returns (graph, body's result). `graph.replay()` then runs the recorded work
        again on the same memory. Backends without graphs raise GraphCaptureError."""
        raise GraphCaptureError(f"the {self.name} backend cannot capture a graph; use the cupy backend (a GPU) or "
                                "the emulated backend (the CUDA path on the CPU)")

    def graph_scope(self) -> Any:
        """A context for the eager warm-up runs of a step that will be captured: the stream and the
        memory pool the capture will use (CuPy); nothing elsewhere."""
        return contextlib.nullcontext()

    def host_to_device(self, dst: Any, values: Any) -> None:
        """Copy host `values` (a scalar, a sequence or a NumPy array, cast to dst's dtype) into the
        device array `dst` in place: one host-to-device copy, done outside a captured step (the lr
        an optimizer reads from device memory, a static input buffer). Raises GraphCaptureError
        while capturing: a graph would replay the value of the capture, not the current one."""
        if self.capturing:
            raise GraphCaptureError("host_to_device: a host-to-device copy inside a captured step would replay the "
                                    "value seen at capture; write the value before the step (outside the graph)")
        dst[...] = self.asarray(np.asarray(values, dtype=dst.dtype))

    def describe(self) -> str:
        return f"{self.name} ({self.device})"

    def __repr__(self) -> str:
        return f"<gpunn {type(self).__name__} name={self.name!r} device={self.device!r}>"
