"""Convolutional reference networks: LeNet-5, a small VGG, a scaled-down AlexNet."""
from __future__ import annotations

from gpunn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, ReLU, Tanh
from gpunn.models._common import check_classes, check_rate, check_shape, finish
from gpunn.train import Sequential


def _act(name: str) -> Layer:
    return ReLU() if name == "relu" else Tanh()


def lenet5(num_classes: int = 10, batchnorm: bool = False, input_shape: tuple[int, int, int] = (1, 28, 28),
           activation: str = "relu", dropout: float = 0.0) -> Sequential:
    """LeNet-5: conv5(6)-pool-conv5(16)-pool-fc120-fc84-fc.

    The first conv is 'same'-padded, so 28x28 MNIST sees what the original saw on its 32x32
    padded digits (16 x 5 x 5 features after the second pool). For inputs too small for a 'valid'
    second conv (e.g. 8x8 digits) that conv is 'same'-padded too. `batchnorm` puts BN after every
    conv and hidden fc (before the activation); `activation` is "relu" or "tanh" (the original).
    """
    where = "lenet5"
    c, h, w = check_shape(input_shape, where, ndim=3)
    num_classes = check_classes(num_classes, where)
    dropout = check_rate(dropout, where)
    if activation not in ("relu", "tanh"):
        raise ValueError(f"{where}: argument 'activation' must be 'relu' or 'tanh', got {activation!r}")
    if min(h, w) < 4:
        raise ValueError(f"{where}: argument 'input_shape' must be at least 4x4, got {input_shape!r}")
    second = "valid" if min(h, w) // 2 >= 8 else "same"
    init = "he_normal" if activation == "relu" else "glorot_uniform"
    bn = bool(batchnorm)

    def block(layer: Layer) -> list[Layer]:
        return [layer, *([BatchNorm()] if bn else []), _act(activation)]

    layers: list[Layer] = [
        *block(Conv2D(6, 5, padding="same", use_bias=not bn, kernel_initializer=init)), MaxPool2D(2),
        *block(Conv2D(16, 5, padding=second, use_bias=not bn, kernel_initializer=init)), MaxPool2D(2),
        Flatten(),
        *block(Dense(120, use_bias=not bn, kernel_initializer=init)),
        *([Dropout(dropout)] if dropout else []),
        *block(Dense(84, use_bias=not bn, kernel_initializer=init)),
        *([Dropout(dropout)] if dropout else []),
        Dense(num_classes),
    ]
    return finish(layers, (c, h, w), "lenet5")


def vgg_small(num_classes: int = 10, bn: bool = True, input_shape: tuple[int, int, int] = (3, 32, 32),
              widths: tuple[int, ...] = (32, 64, 128), dense: int = 256, dropout: float = 0.3) -> Sequential:
    """A small VGG-style CNN for 32x32 input: per width, [conv3x3-BN-ReLU] x 2 then 2x2 max-pool;
    then fc(dense)-BN-ReLU-dropout and the classifier."""
    where = "vgg_small"
    shape = check_shape(input_shape, where, ndim=3)
    num_classes = check_classes(num_classes, where)
    dropout = check_rate(dropout, where)
    if not isinstance(widths, (list, tuple)) or not widths or not all(isinstance(v, int) and v >= 1 for v in widths):
        raise ValueError(f"{where}: argument 'widths' must be a non-empty sequence of positive ints, got {widths!r}")
    if min(shape[1:]) < 2 ** len(widths):
        raise ValueError(f"{where}: argument 'input_shape' {shape} is too small for {len(widths)} 2x2 pools")
    layers: list[Layer] = []
    for width in widths:
        for _ in range(2):
            layers += [Conv2D(width, 3, padding=1, use_bias=not bn), *([BatchNorm()] if bn else []), ReLU()]
        layers.append(MaxPool2D(2))
    layers += [Flatten(), Dense(dense, use_bias=not bn, kernel_initializer="he_normal"),
               *([BatchNorm()] if bn else []), ReLU(), *([Dropout(dropout)] if dropout else []),
               Dense(num_classes)]
    return finish(layers, shape, "vgg_small")


def alexnet_small(num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32), bn: bool = False,
                  dropout: float = 0.5, widths: tuple[int, int, int, int, int] = (48, 96, 128, 128, 96),
                  dense: tuple[int, int] = (512, 256)) -> Sequential:
    """AlexNet scaled down for 32x32: five convs (5x5, 5x5, 3x3, 3x3, 3x3) with ReLU and overlapping
    3x3 stride-2 max-pools after the 1st, 2nd and 5th, then two dropout fc layers and the
    classifier. Widths are about a quarter of the original's; `bn` adds BatchNorm after each conv
    (the original used local response normalization instead)."""
    where = "alexnet_small"
    shape = check_shape(input_shape, where, ndim=3)
    num_classes = check_classes(num_classes, where)
    dropout = check_rate(dropout, where)
    if not isinstance(widths, (list, tuple)) or len(widths) != 5 or not all(
            isinstance(v, int) and v >= 1 for v in widths):
        raise ValueError(f"{where}: argument 'widths' must be five positive ints (one per conv), got {widths!r}")
    if not isinstance(dense, (list, tuple)) or len(dense) != 2 or not all(isinstance(v, int) and v >= 1 for v in dense):
        raise ValueError(f"{where}: argument 'dense' must be two positive ints, got {dense!r}")
    if min(shape[1:]) < 15:
        raise ValueError(f"{where}: argument 'input_shape' must be at least 15x15 for three 3x3/2 pools, "
                         f"got {shape}")

    def conv(filters: int, k: int) -> list[Layer]:
        return [Conv2D(filters, k, padding=k // 2, use_bias=not bn), *([BatchNorm()] if bn else []), ReLU()]

    pool = lambda: MaxPool2D(3, strides=2)  # noqa: E731 - overlapping pooling, as in AlexNet
    w = widths
    layers: list[Layer] = [*conv(w[0], 5), pool(), *conv(w[1], 5), pool(), *conv(w[2], 3), *conv(w[3], 3),
                           *conv(w[4], 3), pool(), Flatten(),
                           Dense(dense[0], activation="relu", kernel_initializer="he_normal"),
                           *([Dropout(dropout)] if dropout else []),
                           Dense(dense[1], activation="relu", kernel_initializer="he_normal"),
                           *([Dropout(dropout)] if dropout else []), Dense(num_classes)]
    return finish(layers, shape, "alexnet_small")
