"""Backends: the only package that knows whether arrays live in NumPy or CuPy."""
from gpunn.backend.base import Backend
from gpunn.backend.detect import CudaStatus, cuda_status
from gpunn.backend.registry import (available_names, get_backend, register_backend, selection_reason,
                                    set_backend, use_backend)
from gpunn.errors import BackendUnavailableError

__all__ = ["Backend", "BackendUnavailableError", "CudaStatus", "available_names", "cuda_status", "get_backend",
           "register_backend", "selection_reason", "set_backend", "use_backend"]
