"""Residual connections (He et al. 2016): y = block(x) + shortcut(x), backward sums both paths."""
from __future__ import annotations

from typing import Any

from gpunn._checks import pair, positive_int
from gpunn.layers.activations import ReLU
from gpunn.layers.base import Layer
from gpunn.layers.container import Chain
from gpunn.layers.conv import Conv2D
from gpunn.layers.normalization import BatchNorm


class Residual(Layer):
    """y = block(x) + shortcut(x). The shortcut defaults to the identity; pass a layer (for instance
    a 1x1 Conv2D with strides, see `projection_shortcut`) when the block changes the shape.

    Block and shortcut run on the Residual's backend (current at its construction): one built on
    another backend is moved onto it, as Chain.add does."""

    def __init__(self, block: Layer, shortcut: Layer | None = None, name: str | None = None) -> None:
        super().__init__(name=name)
        if not isinstance(block, Layer):
            raise TypeError(f"Residual: argument 'block' must be a gpunn Layer, got {type(block).__name__}")
        if shortcut is not None and not isinstance(shortcut, Layer):
            raise TypeError(f"Residual: argument 'shortcut' must be None (identity) or a gpunn Layer, "
                            f"got {type(shortcut).__name__}")
        self.children["block"] = self._adopt(block)
        if shortcut is not None:
            self.children["shortcut"] = self._adopt(shortcut)
        self.input_shape = block.input_shape
        self._dtype = block._dtype  # the block's dtype, if it has one (None: the default)

    @property
    def block(self) -> Layer:
        return self.children["block"]

    @property
    def shortcut(self) -> Layer | None:
        return self.children.get("shortcut")

    def build(self, input_shape: tuple[int, ...]) -> None:
        shape = tuple(input_shape)
        for layer in self.children.values():
            if layer._dtype is None:
                layer._dtype = self._dtype
            if not layer.built:
                layer.build(shape)
        block_out = self.block.output_shape
        short_out = self.shortcut.output_shape if self.shortcut is not None else shape
        if block_out != short_out:
            what = "the shortcut's" if self.shortcut is not None else "the input (identity shortcut)"
            raise ValueError(f"{self.name}.build: the block's output shape {block_out} differs from {what} shape "
                             f"{short_out}; pass a projection shortcut (e.g. a 1x1 Conv2D with strides)")
        super().build(shape)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.block.output_shape

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        self.block.check_built_shape(shape, where)
        if self.shortcut is None and shape != self.input_shape:
            raise ValueError(f"{where}: argument 'x' must have per-sample shape {self.input_shape} as built, "
                             f"got {shape}")

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        y = self.block.forward(x, training=training)
        s = self.shortcut.forward(x, training=training) if self.shortcut is not None else x
        if y.shape != s.shape:
            raise ValueError(f"{self.name}.forward: block output {tuple(y.shape)} and shortcut output "
                             f"{tuple(s.shape)} differ")
        return y + s

    def backward(self, dy: Any) -> Any:
        dx = self.block.backward(dy)
        return dx + (self.shortcut.backward(dy) if self.shortcut is not None else dy)


def projection_shortcut(filters: int, strides: int | tuple[int, int] = 1) -> Chain:
    """The ResNet option-B shortcut: a 1x1 Conv2D with strides (no bias), then BatchNorm."""
    return Chain([Conv2D(filters, 1, strides=strides, use_bias=False), BatchNorm()], name="shortcut")


class _BasicShortcut(Layer):
    """Identity when the input already has `filters` channels and strides are 1, else a projection.

    Decided at build time, because the input's channel count is only known then."""

    def __init__(self, filters: int, strides: tuple[int, int]) -> None:
        super().__init__(name="shortcut")
        self.filters, self.strides = filters, strides
        self._identity = True

    def build(self, input_shape: tuple[int, ...]) -> None:
        self._identity = input_shape[0] == self.filters and self.strides == (1, 1)
        if not self._identity:
            proj = projection_shortcut(self.filters, self.strides)
            proj._dtype = self._dtype
            proj.build(tuple(input_shape))
            self.children["projection"] = proj
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape) if self._identity else self.children["projection"].output_shape

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        if shape != self.input_shape:
            raise ValueError(f"{where}: argument 'x' must have per-sample shape {self.input_shape} as built, "
                             f"got {shape}")

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        return x if self._identity else self.children["projection"].forward(x, training=training)

    def backward(self, dy: Any) -> Any:
        return dy if self._identity else self.children["projection"].backward(dy)


def basic_block(filters: int, strides: int | tuple[int, int] = 1, name: str | None = None) -> Chain:
    """A ResNet basic block: conv3x3(strides)-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU.

    The shortcut is the identity when the shape is kept, else a 1x1 conv with strides plus BN
    (option B of the paper). Convolutions have no bias: the BN after each makes it redundant."""
    filters = positive_int(filters, "filters", "basic_block")
    strides = pair(strides, "strides", "basic_block", minimum=1)
    body = Chain([
        Conv2D(filters, 3, strides=strides, padding=1, use_bias=False), BatchNorm(), ReLU(),
        Conv2D(filters, 3, strides=1, padding=1, use_bias=False), BatchNorm(),
    ], name="body")
    return Chain([Residual(body, _BasicShortcut(filters, strides)), ReLU()], name=name or "basic_block")
