"""Parameter: a trainable array plus its gradient."""
from __future__ import annotations

from typing import Any


class Parameter:
    """Holds `.data` and `.grad` (same shape and dtype), a `.name`, and `.trainable`.

    Layers only read and write weights through these objects, so an optimizer may rebind
    `.data` and `.grad` to views into its flat buffers without the layer noticing.
    """

    __slots__ = ("data", "grad", "name", "trainable")

    def __init__(self, data: Any, name: str = "", trainable: bool = True) -> None:
        self.data = data
        self.grad = data * 0  # same array module, shape and dtype as data
        self.name = name
        self.trainable = bool(trainable)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def dtype(self):
        return self.data.dtype

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={self.shape}, dtype={self.dtype}, trainable={self.trainable})"
