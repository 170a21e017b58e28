"""Output sizes and window index arithmetic shared by convolution and pooling."""
from __future__ import annotations


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def window_slice(offset: int, stride: int, count: int) -> slice:
    """Rows (or columns) of a padded input that kernel offset `offset` touches, one per output."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)
