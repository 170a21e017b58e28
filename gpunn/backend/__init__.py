"""Backends: the only package that knows whether arrays live in NumPy or CuPy.

- base.py: `Backend`, what every layer, loss and optimizer computes through (`xp`, asarray /
  to_numpy, the random generator, and the heavy ops mixed in from ops/);
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
from gpunn.backend.base import Backend, to_host
from gpunn.backend.detect import CudaStatus, cuda_status
from gpunn.backend.registry import (available_names, get_backend, register_backend, selection_reason,
                                    set_backend, use_backend)
from gpunn.errors import BackendUnavailableError

__all__ = ["Backend", "BackendUnavailableError", "CudaStatus", "available_names", "cuda_status", "get_backend",
           "register_backend", "selection_reason", "set_backend", "to_host", "use_backend"]
