"""The training workflow: TrainingMixin (compile / fit / evaluate / predict / to / save, in
model.py), Sequential = TrainingMixin + the layer Chain (sequential.py; `gpunn.Sequential`),
Model, the functional and subclassed models (network.py; `gpunn.Model`, over functional.py's
graphs and subclassed.py's tapes), a step captured as a CUDA graph (captured.py: CapturedStep;
graph_mode.py: compile(cuda_graph=True)), mixed-precision steps (mixed_precision.py: compile(precision=...),
MixedPrecision; its factory is gpunn.mixed_precision), the per-output compile settings (outputs.py), what fit /
evaluate / predict accept turned into batches (data_adapter.py), and Ensemble (ensemble.py).

It drives what sits below it: gpunn.layers, gpunn.optim, gpunn.losses, gpunn.callbacks, gpunn.io
and gpunn.metrics. Nothing below imports it; above it are only gpunn.models (the zoo builds
Sequentials), the gpunn package itself and the jobs.
"""
from gpunn.layers.symbolic import Input
from gpunn.train.captured import CapturedStep
from gpunn.train.ensemble import Ensemble
from gpunn.train.mixed_precision import MixedPrecision
from gpunn.train.model import TrainingMixin
from gpunn.train.network import Model
from gpunn.train.sequential import Sequential

__all__ = ["CapturedStep", "Ensemble", "Input", "MixedPrecision", "Model", "Sequential", "TrainingMixin"]
