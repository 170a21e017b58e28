"""Chain: a plain container of layers; forward in order, backward in reverse. No tape.

Residual branches and blocks such as basic_block are Chains. gpunn.Sequential (gpunn/train/
sequential.py) is a Chain that is also a Keras-style model, with compile / fit / save.

Placement: a Chain runs on its own backend (the one current when it was built, or given to
to()), and so do its layers: a layer built on another backend is moved onto the Chain's when it
is added (Layer._adopt), so a model never holds layers of two backends."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gpunn.layers.base import Layer
from gpunn.layers.symbolic import SymbolicTensor
from gpunn.regularizers import regularization_loss


class Chain(Layer):
    """Layers run one after another: the output of each is the input of the next."""

    def __init__(self, layers: Iterable[Layer] | None = None, name: str | None = None, dtype: Any = None) -> None:
        """`dtype`: what every layer computes and keeps its parameters in, float32 (the backend's
        default) unless given; inputs of another float dtype are cast to it."""
        super().__init__(name=name, dtype=dtype)
        self.layers: list[Layer] = []
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer | SymbolicTensor) -> Chain:
        """Append `layer`; one built on another backend is moved onto this Chain's (see the module docstring).

        A gpunn.Input given first (Keras's `Sequential([Input(shape=...), ...])`) declares the
        per-sample input shape: the first layer takes it as its input_shape, a contract."""
        where = f"{type(self).__name__}.add"
        if isinstance(layer, SymbolicTensor):
            if not layer.is_input:
                raise TypeError(f"{where}: argument 'layer' is {layer!r}, a layer's output; a chain takes layers (and "
                                "a gpunn.Input first): build graphs with gpunn.Model(inputs=..., outputs=...)")
            if self.layers or getattr(self, "_input_tensor", None) is not None:
                raise ValueError(f"{where}: a gpunn.Input must come first and once, before any layer")
            self._input_tensor = layer
            self.input_shape = tuple(layer.shape)
            return self
        if not isinstance(layer, Layer):
            raise TypeError(f"{where}: argument 'layer' must be a gpunn Layer, got {type(layer).__name__}")
        declared = getattr(self, "_input_tensor", None)
        if declared is not None and not self.layers:
            if layer._declared_shape is None:
                layer.input_shape = layer._declared_shape = tuple(declared.shape)
            elif tuple(layer._declared_shape) != tuple(declared.shape):
                raise ValueError(f"{where}: the first layer {layer.name!r} declares input_shape="
                                 f"{layer._declared_shape}, but the gpunn.Input before it has shape {declared.shape}")
        self._adopt(layer)
        self.children[str(len(self.layers))] = layer
        self.layers.append(layer)
        if self.input_shape is None and len(self.layers) == 1 and layer.input_shape is not None:
            self.input_shape = layer.input_shape
        return self

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def build(self, input_shape: tuple[int, ...]) -> None:
        shape = tuple(input_shape)
        self.input_shape = shape
        self._inherit_dtype(self._dtype)
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
            shape = layer.output_shape
        self.output_shape = shape
        self.built = True

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        if self.layers:
            self.layers[0].check_built_shape(shape, where)

    def forward(self, x: Any, training: bool = False) -> Any:
        """Each layer in order. A pair that a layer can run as one (its fuses_with; today a
        BatchNorm then a ReLU) goes through its forward_fused: the same result with fewer passes
        over memory; backward() then skips the absorbed layer, whose backward the first includes."""
        if not self.layers:
            raise RuntimeError(f"{self.name}.forward: the model has no layers; add some with add()")
        # the model's dtype, not the data's, from the first layer on (see Layer._as_input)
        x = self._as_input(x, f"{self.name}.forward")
        if not self.built:
            self._inherit_dtype(self._dtype)
        self._absorbed: set[int] = set()
        layers, i = self.layers, 0
        while i < len(layers):
            layer = layers[i]
            if i + 1 < len(layers) and layer.built and layer.fuses_with(layers[i + 1]):
                x = layer.forward_fused(x, layers[i + 1], training=training)
                self._absorbed.add(i + 1)
                i += 2
                continue
            x = layer.forward(x, training=training)
            i += 1
        if not self.built:
            self.built = True
            self.input_shape = self.layers[0].input_shape
            self.output_shape = self.layers[-1].output_shape
        return x

    def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
        """Backpropagate dy through every layer; returns the gradient of the input.

        need_input_grad=False (the training loop: nothing upstream of the model wants it) lets a
        first layer that supports it (Conv2D's needs_input_grad) skip its input gradient; the
        result may then be None. The layer's own setting is restored afterwards."""
        first = self.layers[0] if self.layers else None
        skip = not need_input_grad and getattr(first, "needs_input_grad", None) is True
        if skip:
            first.needs_input_grad = False
        try:
            absorbed = getattr(self, "_absorbed", set())
            for i in range(len(self.layers) - 1, -1, -1):
                if i not in absorbed:
                    dy = self.layers[i].backward(dy)
        finally:
            if skip:
                first.needs_input_grad = True
        return dy

    def regularization_loss(self) -> float:
        """The summed weight penalties (kernel_regularizer) of every layer: add it to the data loss."""
        return regularization_loss(self)
