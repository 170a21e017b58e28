"""gpunn: neural-network training on NVIDIA GPUs (CuPy + custom CUDA kernels) with a NumPy fallback.

`import gpunn` never imports CuPy or touches CUDA; the backend is chosen on first use.
"""
from gpunn import init, layers, losses
from gpunn.backend import (Backend, BackendUnavailableError, cuda_status, get_backend, set_backend,
                           use_backend)
from gpunn.layers import Sequential
from gpunn.parameter import Parameter
from gpunn.random import manual_seed

__version__ = "0.1.0"

__all__ = ["Backend", "BackendUnavailableError", "Parameter", "Sequential", "__version__", "cuda_status",
           "get_backend", "init", "layers", "losses", "manual_seed", "set_backend", "use_backend"]
