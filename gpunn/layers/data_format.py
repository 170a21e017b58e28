"""The image layout of the layers that read one: "channels_first" (N, C, H, W), gpunn's and
PyTorch's default, or "channels_last" (N, H, W, C), Keras's.

Conv2D, MaxPool2D, AvgPool2D, GlobalAveragePooling2D, BatchNorm, GroupNorm and InstanceNorm take
`data_format=`; Flatten takes it with Keras's meaning (see gpunn/layers/reshape.py).

How a channels_last layer computes: the backend ops and the kernels keep their NCHW contract. The
layer hands them its input as a transposed *view* (N, C, H, W) and returns their NCHW result as a
transposed view (N, H, W, C), and its backward does the same with dy and dx. No layer copies: an op
that needs contiguous memory (the CUDA launchers, some CPU fast paths) makes the copy itself, and
only when the view is not already contiguous NCHW memory. Between two channels_last layers the
views cancel (the NHWC view one returns is contiguous NCHW memory for the next), so a channels_last
network costs one transpose copy of its input batch, and one of the gradient where a layer that is
not an image layer (Flatten, on its backward) makes real (N, H, W, C) memory; the arithmetic is
that of the NCHW network.

The default for layers built without `data_format=` is "channels_first". `use_image_data_format`
changes it for a `with` block, in this thread (Keras's image_data_format(), scoped so that nothing
leaks out of the block); each layer captures the value when it is constructed and keeps it in its
config, so a saved model loads with the layout it was built with, whatever the default is then.
"""
from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from gpunn._checks import DATA_FORMATS, data_format_arg

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"
_default = threading.local()  # .value: the default of layers constructed in this thread, or unset


def image_data_format() -> str:
    """The data_format that image layers constructed now (in this thread) take when given none:
    "channels_first" unless a `use_image_data_format` block says otherwise."""
    return getattr(_default, "value", CHANNELS_FIRST)


@contextlib.contextmanager
def use_image_data_format(data_format: str) -> Iterator[str]:
    """Make `data_format` ("channels_first" or "channels_last") the default of the image layers
    constructed in this block, in this thread; the previous default is restored on exit.

        with gpunn.layers.use_image_data_format("channels_last"):
            model = gpunn.Sequential([Conv2D(8, 3, input_shape=(28, 28, 1)), MaxPool2D(2), ...])
    """
    value = data_format_arg(data_format, "data_format", "use_image_data_format")
    previous = getattr(_default, "value", None)
    _default.value = value
    try:
        yield value
    finally:
        if previous is None:
            del _default.value
        else:
            _default.value = previous


def resolve_data_format(value: Any, where: str) -> str:
    """A layer's `data_format=` argument: None takes image_data_format(), else it must name a layout."""
    return image_data_format() if value is None else data_format_arg(value, "data_format", where)


def layout_of(data_format: str, ndim: int = 4) -> str:
    """The axes of a `ndim`-D input in `data_format`, for error messages: "(N, H, W, C)"."""
    if ndim == 4:
        return DATA_FORMATS[data_format]
    if ndim == 2:
        return "(N, C)"
    spatial = "L" if ndim == 3 else "..."
    return f"(N, {spatial}, C)" if data_format == CHANNELS_LAST else f"(N, C, {spatial})"


def to_channels_first(a: Any) -> Any:
    """An (N, ..., C) array as an (N, C, ...) view (no copy)."""
    return a.transpose(0, a.ndim - 1, *range(1, a.ndim - 1)) if a.ndim > 2 else a


def to_channels_last(a: Any) -> Any:
    """An (N, C, ...) array as an (N, ..., C) view (no copy)."""
    return a.transpose(0, *range(2, a.ndim), 1) if a.ndim > 2 else a


def channels_first_shape(shape: tuple[int, ...], data_format: str) -> tuple[int, ...]:
    """A per-sample shape (no batch axis) in `data_format`, reordered to channels first."""
    if data_format == CHANNELS_LAST and len(shape) > 1:
        return (shape[-1], *shape[:-1])
    return tuple(shape)


def channels_last_shape(shape: tuple[int, ...], data_format: str) -> tuple[int, ...]:
    """A channels-first per-sample shape, reordered to `data_format`."""
    if data_format == CHANNELS_LAST and len(shape) > 1:
        return (*shape[1:], shape[0])
    return tuple(shape)


_FEW_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA: what a first layer's channel axis usually holds
_IMAGE_SIDE = 8  # the smallest side of a real image (the digits data are 8 x 8)


def layout_hint(shape: tuple[int, ...], data_format: str, channels: int | None = None) -> str:
    """A sentence for an error about an input of per-sample `shape` (3-D, no batch axis) given to a
    layer reading `data_format`, when the input looks like it is in the other layout: its other
    end holds `channels` (the count the layer was built for), or when unbuilt, a small count (1, 3
    or 4) at that end and an image side (8 or more) at this one. "" when it does not look transposed.

    (N, 28, 28, 1), Keras's MNIST, given to a channels_first Conv2D reads as 28 channels of 28 x 1."""
    if len(shape) != 3:
        return ""
    first, last = shape[0], shape[-1]
    if data_format == CHANNELS_FIRST:
        seen, other = last, first
    else:
        seen, other = first, last
    if channels is not None:
        looks = seen == channels and other != channels
    else:
        looks = seen in _FEW_CHANNELS and other >= _IMAGE_SIDE
    if not looks:
        return ""
    if data_format == CHANNELS_FIRST:
        return (f"; the input looks channels_last (N, H, W, C) with {seen} channel(s), but this layer reads "
                "channels_first (N, C, H, W): transpose the data with x.transpose(0, 3, 1, 2), or build the "
                "layers with data_format='channels_last' (or inside gpunn.layers.use_image_data_format("
                "'channels_last'))")
    return (f"; the input looks channels_first (N, C, H, W) with {seen} channel(s), but this layer reads "
            "channels_last (N, H, W, C): transpose the data with x.transpose(0, 2, 3, 1), or build the layers "
            "with data_format='channels_first'")


class LayoutWarning(UserWarning):
    """An image layer's first input looks like it is in the other layout (see warn_if_transposed)."""


def warn_if_transposed(shape: tuple[int, ...], data_format: str, where: str) -> None:
    """Warn when a layer is built for a per-sample `shape` that fits its layout but reads like a
    square image in the other one: a channels_first layer given (32, 32, 3) would build for 32
    channels of 32 x 3 and train on scrambled pixels without any error."""
    if len(shape) != 3:
        return
    square = shape[0] == shape[1] if data_format == CHANNELS_FIRST else shape[1] == shape[2]
    hint = layout_hint(tuple(shape), data_format)
    if square and hint:
        warnings.warn(f"{where}: building for per-sample shape {tuple(shape)}{hint}", LayoutWarning, stacklevel=4)
