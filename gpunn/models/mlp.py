"""Multilayer perceptron: Flatten, then Dense [-BatchNorm] -activation [-Dropout] per hidden layer."""
from __future__ import annotations

from collections.abc import Sequence

from gpunn.layers import BatchNorm, Dense, Dropout, Flatten, get_activation
from gpunn.models._common import check_classes, check_rate, check_shape, finish
from gpunn.train import Sequential

_HE = {"relu", "leaky_relu", "elu", "relu6", "prelu", "gelu", "silu", "swish"}


def mlp(input_shape: tuple[int, ...] = (1, 28, 28), hidden: Sequence[int] = (512, 256), num_classes: int = 10,
        activation: str = "relu", batchnorm: bool = False, dropout: float = 0.0) -> Sequential:
    """An MLP for `input_shape` (flattened) with `hidden` layer widths and `num_classes` logits.

    He initialization for ReLU-family activations, Glorot otherwise. With `batchnorm`, each hidden
    Dense has no bias (BN's beta replaces it) and BN sits before the activation.
    """
    where = "mlp"
    input_shape = check_shape(input_shape, where)
    num_classes = check_classes(num_classes, where)
    dropout = check_rate(dropout, where)
    if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) and h >= 1 for h in hidden):
        raise ValueError(f"{where}: argument 'hidden' must be a sequence of positive ints, got {hidden!r}")
    get_activation(activation)  # validates the name early
    init = "he_normal" if str(activation).lower() in _HE else "glorot_uniform"
    layers = [Flatten()]
    for width in hidden:
        layers.append(Dense(width, use_bias=not batchnorm, kernel_initializer=init))
        if batchnorm:
            layers.append(BatchNorm())
        layers.append(get_activation(activation))
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(num_classes))
    return finish(layers, input_shape, "mlp")
