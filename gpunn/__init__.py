"""gpunn: neural-network training on NVIDIA GPUs (CuPy + custom CUDA kernels) with a NumPy fallback.

`import gpunn` never imports CuPy or touches CUDA; the backend is chosen on first use. The stack
runs one way, each package importing only those below it:
train -> callbacks, io, metrics -> layers -> optim, losses, data -> backend -> emu
(README's "Where things live" and CONTRIBUTING.md say what each package owns).
"""
from gpunn import (callbacks, constraints, data, init, io, layers, losses, metrics, models, optim, regularizers,
                   train, tune)
from gpunn.backend import (Backend, BackendUnavailableError, cuda_status, get_backend, set_backend,
                           use_backend)
from gpunn.backend.cpu.threads import get_num_threads, set_num_threads
from gpunn.io import load_model
from gpunn.parameter import Parameter
from gpunn.random import manual_seed
from gpunn.train import Ensemble, Sequential

__version__ = "0.1.0"

__all__ = ["Backend", "BackendUnavailableError", "Ensemble", "Parameter", "Sequential", "__version__", "callbacks",
           "constraints", "cuda_status", "data", "get_backend", "get_num_threads", "init", "io", "layers",
           "load_model", "losses", "manual_seed", "metrics", "models", "optim", "regularizers", "set_backend",
           "set_num_threads", "train", "tune", "use_backend"]
