"""Backends: the only package that knows whether arrays live in NumPy or CuPy.

- base.py: `Backend`, what every layer, loss and optimizer computes through (`xp`, asarray /
  to_numpy, the random generator, and the heavy ops mixed in from ops/), and the array protocols:
  foreign arrays (torch, JAX: `__dlpack__` or `__array__`) imported by asarray / to_host /
  `from_dlpack` below, without a copy when they are on the backend's device;
- registry.py: which backend is current (set_backend, use_backend, get_backend, GPUNN_BACKEND,
  "auto") and why (selection_reason);
- detect.py: cuda_status(), whether CuPy can run here and if not which piece is missing (never
  raises, never hangs, cached);
- ops/: the generic reference ops, one family per module, written once against `xp`;
- cpu/: NumpyBackend and what makes it fast (gpunn's CPU threads, the stride-1 convolution, the
  numba kernels);
- cuda/: the custom-kernel path CuPy and the emulator share (kernel_ops.py, launchers.py,
  source.py) and the two backends on it (cupy_backend.py, emulated.py).

It imports only the bottom of the stack (gpunn.emu, gpunn.random, gpunn.parameter, gpunn.errors,
gpunn._checks). CuPy is imported lazily, when a CUDA backend is chosen: `import gpunn` never does.
"""
from typing import Any

from gpunn.backend.base import Backend, foreign_to_host, is_foreign_array, to_host
from gpunn.backend.detect import CudaStatus, cuda_status
from gpunn.backend.registry import (available_names, backend_named, get_backend, register_backend, selection_reason,
                                    set_backend, use_backend)
from gpunn.errors import BackendUnavailableError


def from_dlpack(obj: Any, dtype: Any = None) -> Any:
    """`obj` as an array of the current backend: anything with `__dlpack__` (torch and JAX
    tensors, CuPy and NumPy arrays) or `__array__`, or a NumPy/CuPy array, list or scalar.

    No copy when `obj` already lives on the backend's device (a torch CPU tensor into the NumPy
    backend shares its memory: writes to one show in the other; a torch CUDA tensor into the cupy
    backend likewise); one copy when it does not (see `gpunn.backend.base.foreign_to_host`), or
    when `dtype` differs from the array's. The result may be read-only (a read-only DLPack export).
    Errors name the type and what to do, e.g. for a tensor that requires grad (detach it) or one
    on a device this backend cannot read."""
    if obj is None or isinstance(obj, (str, bytes, dict)):
        raise TypeError(f"gpunn.from_dlpack: argument 'obj' must be an array (anything with __dlpack__ or "
                        f"__array__), got {type(obj).__name__}")
    backend = get_backend()
    out = backend.asarray(obj, dtype=dtype, where="gpunn.from_dlpack")
    if getattr(out, "dtype", None) is not None and out.dtype == object:
        raise TypeError(f"gpunn.from_dlpack: argument 'obj' must be an array (anything with __dlpack__ or "
                        f"__array__), got {type(obj).__name__}, which NumPy can only hold as an object array")
    return out


__all__ = ["Backend", "BackendUnavailableError", "CudaStatus", "available_names", "backend_named", "cuda_status",
           "foreign_to_host",
           "from_dlpack", "get_backend", "is_foreign_array",
           "register_backend", "selection_reason", "set_backend", "to_host", "use_backend"]
