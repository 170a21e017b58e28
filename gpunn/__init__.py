"""gpunn: neural-network training on NVIDIA GPUs (CuPy + custom CUDA kernels) with a NumPy fallback.

`import gpunn` never imports CuPy or touches CUDA; the backend is chosen on first use. The stack
runs one way: no module imports one above it and no two import each other (tests/test_import_graph.py
holds the levels and enforces them):

    models -> train -> callbacks, io, metrics, tune -> layers -> optim, losses, data
      -> init, regularizers, constraints, testing -> backend -> emu, random, parameter, errors, _checks

This package re-exports the public surface (Sequential's home is gpunn/train/sequential.py, Model's
and Input's gpunn/train/network.py and gpunn/layers/symbolic.py);
gpunn/jobs/ and gpunn/cli.py sit above it. CONTRIBUTING.md's "Where things live" says what each
package owns.
"""
from gpunn import (callbacks, constraints, data, init, io, layers, losses, metrics, models, optim, regularizers,
                   train, tune)
from gpunn import utils
from gpunn.backend import (Backend, BackendUnavailableError, cuda_status, from_dlpack, get_backend, set_backend,
                           use_backend)
from gpunn.backend.cpu.threads import get_num_threads, set_num_threads
from gpunn.io import load_model
from gpunn.parameter import Parameter
from gpunn.precision import POLICIES
from gpunn.random import manual_seed
from gpunn.train import Ensemble, Input, Model, Sequential
from gpunn.train.mixed_precision import MixedPrecision, mixed_precision

__version__ = "0.1.0"

__all__ = ["POLICIES", "Backend", "BackendUnavailableError", "Ensemble", "Input", "MixedPrecision", "Model", "Parameter",
           "Sequential", "__version__", "mixed_precision",
           "callbacks", "constraints", "cuda_status", "data", "from_dlpack", "get_backend", "get_num_threads", "init",
           "io", "layers", "load_model", "losses", "manual_seed", "metrics", "models", "optim", "regularizers",
           "set_backend", "set_num_threads", "train", "tune", "use_backend", "utils"]
