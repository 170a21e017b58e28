"""ResNet for 32x32 input (He et al. 2016, section 4.2): depth = 6n + 2."""
from __future__ import annotations

from gpunn.layers import AvgPool2D, BatchNorm, Conv2D, Dense, Flatten, Layer, ReLU, basic_block
from gpunn.models._common import check_classes, check_shape, finish
from gpunn.train import Sequential


def resnet_small(depth: int = 20, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32),
                 widths: tuple[int, int, int] = (16, 32, 64)) -> Sequential:
    """conv3x3(16)-BN-ReLU, three stages of n basic blocks (16, 32, 64 filters; the 2nd and 3rd
    stages halve the size with a stride-2 first block and a projection shortcut), global average
    pooling and the classifier. depth 20, 32, 44, 56, 110 give n = 3, 5, 7, 9, 18."""
    where = "resnet_small"
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"{where}: argument 'depth' must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110), "
                         f"got {depth!r}")
    shape = check_shape(input_shape, where, ndim=3)
    num_classes = check_classes(num_classes, where)
    if not isinstance(widths, (list, tuple)) or len(widths) != 3 or not all(isinstance(v, int) and v >= 1
                                                                           for v in widths):
        raise ValueError(f"{where}: argument 'widths' must be three positive ints, got {widths!r}")
    if min(shape[1:]) < 4:
        raise ValueError(f"{where}: argument 'input_shape' must be at least 4x4, got {shape}")
    n = (depth - 2) // 6
    layers: list[Layer] = [Conv2D(widths[0], 3, padding=1, use_bias=False), BatchNorm(), ReLU()]
    for stage, width in enumerate(widths):
        for i in range(n):
            layers.append(basic_block(width, strides=2 if stage > 0 and i == 0 else 1))
    # global average pooling: one window over the final feature map (size after two stride-2 stages)
    final = tuple((s + 3) // 4 for s in shape[1:])
    layers += [AvgPool2D(final), Flatten(), Dense(num_classes)]
    return finish(layers, shape, f"resnet{depth}")


