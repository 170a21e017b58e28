"""The training workflow: TrainingMixin (compile / fit / evaluate / predict / to / save, in
model.py), Sequential = TrainingMixin + the layer Chain (sequential.py; `gpunn.Sequential`), and
Ensemble (ensemble.py).

It drives what sits below it: gpunn.layers, gpunn.optim, gpunn.losses, gpunn.callbacks, gpunn.io
and gpunn.metrics. Nothing below imports it; above it are only gpunn.models (the zoo builds
Sequentials), the gpunn package itself and the jobs.
"""
from gpunn.train.ensemble import Ensemble
from gpunn.train.model import TrainingMixin
from gpunn.train.sequential import Sequential

__all__ = ["Ensemble", "Sequential", "TrainingMixin"]
