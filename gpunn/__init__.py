"""gpunn: neural-network training on NVIDIA GPUs (CuPy + custom CUDA kernels) with a NumPy fallback.

`import gpunn` never imports CuPy or touches CUDA; the backend is chosen on first use.
"""
from gpunn import constraints, data, init, layers, losses, models, optim, regularizers
from gpunn.backend import (Backend, BackendUnavailableError, cuda_status, get_backend, set_backend,
                           use_backend)
from gpunn.backend.cpu_threads import get_num_threads, set_num_threads
from gpunn.layers import Sequential
from gpunn.parameter import Parameter
from gpunn.random import manual_seed
from gpunn import callbacks, metrics, tune  # noqa: E402  (the training workflow's public modules)
from gpunn.train.ensemble import Ensemble
from gpunn.train.io import load_model

__version__ = "0.1.0"

__all__ = ["Backend", "BackendUnavailableError", "Ensemble", "Parameter", "Sequential", "__version__", "callbacks",
           "constraints", "cuda_status", "data", "get_backend", "get_num_threads", "init", "layers", "load_model", "losses", "manual_seed",
           "metrics", "models", "optim", "regularizers", "set_backend", "set_num_threads", "tune", "use_backend"]
