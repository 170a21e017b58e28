"""What weight-bearing layers (Dense, Conv2D, Maxout) share: the fused activation, the kernel
regularizer and constraint, and the features-on-the-last-axis input check."""
from __future__ import annotations

from typing import Any

from gpunn.constraints import get_constraint
from gpunn.layers.activations import get_activation
from gpunn.layers.base import Layer
from gpunn.parameter import Parameter
from gpunn.precision import grad_scale
from gpunn.regularizers import get_regularizer


def attach_kernel_options(layer: Layer, activation: Any, kernel_regularizer: Any, kernel_constraint: Any) -> None:
    """Wire activation=, kernel_regularizer= and kernel_constraint= onto `layer`'s "weight".

    The penalty's gradient is added in the layer's backward(); its value comes from
    gpunn.regularizers.regularization_loss. Constraints are applied by the optimizer after a step.
    """
    layer.kernel_regularizer = get_regularizer(kernel_regularizer)
    layer.kernel_constraint = get_constraint(kernel_constraint)
    layer.param_constraints = {"weight": layer.kernel_constraint} if layer.kernel_constraint is not None else {}
    act = get_activation(activation)
    if act is not None:
        layer.children["activation"] = act


def add_penalty_gradient(layer: Layer, w: Parameter) -> None:
    """w.grad += the gradient of `layer`'s kernel regularizer at w (when it has one). Inside an
    fp16 mixed-precision step it is multiplied by the loss scale, as backward's gradients are, so
    that unscaling divides every part of the gradient by the same factor."""
    reg = layer.kernel_regularizer
    if reg is None:
        return
    g = reg.gradient(w.data)
    scale = grad_scale()
    if scale is not None:
        g = g * scale.astype(g.dtype)  # a device multiply by the current scale: no host read
    w.grad += g


class FeaturesInput:
    """Inputs of rank >= 2 whose last axis holds the features the layer was built for."""

    input_ndim = None  # any rank >= 2, checked in check_rank
    input_layout = "(N, ..., features)"

    def check_rank(self, x: Any) -> None:
        if getattr(x, "ndim", 2) < 2:
            raise ValueError(f"{self.name}.forward: argument 'x' must have at least 2 dimensions (N, ..., features), "
                             f"got shape {tuple(x.shape)}")

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        if shape[-1:] != self.input_shape[-1:]:
            raise ValueError(f"{where}: argument 'x' must have {self.input_shape[-1]} features on its last axis "
                             f"as built, got shape {('N', *shape)}")
