"""Sequential: a chain of layers that is also a Keras-style model.

The container (forward in order, backward in reverse) is gpunn.layers.container.Chain; the
workflow (compile, fit, evaluate, predict, save, to) is gpunn.train.model.TrainingMixin. Nothing
else is added here: a Sequential nests inside a Residual like any Chain.
"""
from __future__ import annotations

from gpunn.io.registry import register_builtin
from gpunn.layers.container import Chain
from gpunn.train.model import TrainingMixin


class Sequential(TrainingMixin, Chain):
    """Layers in order, with compile / fit / evaluate / predict / save (see gpunn.train.model)."""


# checkpoints name it "Sequential": gpunn.io sits below this package and learns it from here
register_builtin(Sequential)
