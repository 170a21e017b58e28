"""Merge layers, as Keras's: combine several tensors of a functional graph (or of a subclassed
model's call) into one. Each takes a list of inputs, `forward([a, b, ...])`, and its backward
returns one gradient per input, in order.

- Add, Subtract (exactly two: a - b), Multiply, Average, Maximum: elementwise over inputs of one
  shape (no broadcasting: a shape mismatch is an error naming both shapes). Maximum sends the
  gradient to the first input holding the maximum where several tie (as tf.maximum applied in turn).
- Concatenate(axis=1): along `axis`, counted with the batch axis as in Keras (axis=1 is the first
  axis of a sample: the channels of an (N, C, H, W) image, the features of an (N, F) vector;
  negative counts from the end; the batch axis 0 cannot be concatenated). The other axes must match.

`input_shape` of a built merge layer is the tuple of its inputs' per-sample shapes.
"""
from __future__ import annotations

from typing import Any

from gpunn._checks import axis_arg
from gpunn.layers.base import Layer


class _Merge(Layer):
    """The shared part: a list of at least two inputs of one batch size, validated and cast to the
    layer's dtype, the shapes checked at build and at every call."""

    multi_input = True
    #: how many inputs the layer takes: at least `min_inputs`, at most `max_inputs` (None: any)
    min_inputs = 2
    max_inputs: int | None = None

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self._saved: Any = None

    def _shapes(self, input_shape: Any, where: str) -> list[tuple[int, ...]]:
        if not isinstance(input_shape, (list, tuple)) or not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise TypeError(f"{where}: argument 'input_shape' must be a list of per-sample shapes, one per input, "
                            f"got {input_shape!r}")
        shapes = [tuple(int(d) for d in s) for s in input_shape]
        n = len(shapes)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            want = f"exactly {self.min_inputs}" if self.max_inputs == self.min_inputs else \
                f"at least {self.min_inputs}"
            raise ValueError(f"{where}: {type(self).__name__} takes {want} inputs, got {n}")
        self._check_shapes(shapes, where)
        return shapes

    def _check_shapes(self, shapes: list[tuple[int, ...]], where: str) -> None:
        """Elementwise merges: one shape for all."""
        for i, s in enumerate(shapes[1:], 1):
            if s != shapes[0]:
                raise ValueError(f"{where}: {type(self).__name__} needs inputs of one per-sample shape, but input 0 "
                                 f"has {shapes[0]} and input {i} has {s}; reshape or project one of them first")

    def build(self, input_shape: Any) -> None:
        shapes = self._shapes(input_shape, f"{self.name}.build")
        self._inherit_dtype(self._dtype)
        self.input_shape = tuple(shapes)  # type: ignore[assignment] - one per input
        self.output_shape = self.compute_output_shape(shapes)
        self.built = True

    def check_built_shape(self, shape: Any, where: str) -> None:
        self._shapes(shape, where)  # no parameters: any shapes that merge

    def compute_output_shape(self, input_shape: Any) -> tuple[int, ...]:
        return tuple(input_shape[0])

    def _prepare_all(self, xs: Any) -> list[Any]:
        where = f"{self.name}.forward"
        if not isinstance(xs, (list, tuple)):
            raise TypeError(f"{where}: argument 'xs' must be a list of arrays, one per input, got "
                            f"{type(xs).__name__}")
        arrays = [self._as_input(x, f"{where} (input {i})") for i, x in enumerate(xs)]
        sizes = [int(a.shape[0]) for a in arrays]
        if len(set(sizes)) > 1:
            raise ValueError(f"{where}: its inputs must have one batch size, got {sizes}")
        shapes = [tuple(a.shape[1:]) for a in arrays]
        if not self.built:
            self.build(shapes)
        else:
            self.check_built_shape(shapes, where)
        return arrays

    def forward(self, xs: Any, training: bool = False) -> Any:
        xs = self._prepare_all(xs)
        y, self._saved = self._merge(xs)
        return y

    def backward(self, dy: Any) -> list[Any]:
        return self._split(dy, self._need_cache("_saved"))

    def _merge(self, xs: list[Any]) -> tuple[Any, Any]:
        raise NotImplementedError

    def _split(self, dy: Any, saved: Any) -> list[Any]:
        raise NotImplementedError


class Add(_Merge):
    """a + b + ...; every input gets dy."""

    def _merge(self, xs):
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x  # y is this call's own array
        return y, len(xs)

    def _split(self, dy, n):
        return [dy] * n  # shared, never written in place: backpropagate sums into new arrays


class Subtract(_Merge):
    """a - b, exactly two inputs."""

    max_inputs = 2

    def _merge(self, xs):
        return xs[0] - xs[1], True

    def _split(self, dy, saved):
        return [dy, -dy]


class Multiply(_Merge):
    """a * b * ...; input i gets dy times the product of the others (no division, so zeros are fine)."""

    def _merge(self, xs):
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y = y * x
        return y, xs

    def _split(self, dy, xs):
        out = []
        for i in range(len(xs)):
            g = dy
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            out.append(g)
        return out


class Average(_Merge):
    """(a + b + ...) / n; every input gets dy / n."""

    def _merge(self, xs):
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x
        n = len(xs)
        return y * y.dtype.type(1.0 / n), n

    def _split(self, dy, n):
        g = dy * dy.dtype.type(1.0 / n)
        return [g] * n


class Maximum(_Merge):
    """The elementwise maximum; the gradient goes to the input that holds it (the first one on a tie)."""

    def _merge(self, xs):
        xp = self.backend.xp
        y = xs[0]
        winner = xp.zeros(y.shape, dtype=xp.int32)
        for i, x in enumerate(xs[1:], 1):
            greater = x > y
            y = xp.where(greater, x, y)
            winner = xp.where(greater, xp.int32(i), winner)
        return y.astype(xs[0].dtype, copy=False), (winner, len(xs))

    def _split(self, dy, saved):
        winner, n = saved
        return [dy * (winner == i) for i in range(n)]


class Concatenate(_Merge):
    """Inputs joined along `axis` (counted with the batch axis, as Keras: 1 is a sample's first
    axis, -1 its last); the other axes must match. dy is split back into each input's part."""

    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        super().__init__(name=name)
        self.axis = axis_arg(axis, "axis", "Concatenate")
        if self.axis == 0:
            raise ValueError("Concatenate: argument 'axis' must not be 0, the batch axis; axis counts the batch "
                             "axis as Keras does (1 is the first axis of a sample, -1 the last)")

    def _sample_axis(self, rank: int, where: str) -> int:
        """`axis` as an axis of a sample (0-based, without the batch axis) of `rank` dimensions."""
        full = rank + 1  # with the batch axis
        if not -full <= self.axis < full:
            raise ValueError(f"{where}: argument 'axis'={self.axis} is out of range for inputs of {full} dimensions "
                             f"(with the batch axis); expected an axis in [{-full}, {full - 1}]")
        axis = self.axis % full
        if axis == 0:
            raise ValueError(f"{where}: argument 'axis'={self.axis} is the batch axis for inputs of {full} "
                             "dimensions; concatenate along a sample axis")
        return axis - 1

    def _check_shapes(self, shapes, where):
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise ValueError(f"{where}: Concatenate needs inputs of one rank, got per-sample shapes {shapes}")
        axis = self._sample_axis(len(shapes[0]), where)
        rest = [s[:axis] + s[axis + 1:] for s in shapes]
        for i, r in enumerate(rest[1:], 1):
            if r != rest[0]:
                raise ValueError(f"{where}: Concatenate(axis={self.axis}) needs inputs that match on every other axis, "
                                 f"but input 0 has per-sample shape {shapes[0]} and input {i} has {shapes[i]}")

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        axis = self._sample_axis(len(shapes[0]), f"{self.name}.compute_output_shape")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return tuple(out)

    def _merge(self, xs):
        xp = self.backend.xp
        axis = self._sample_axis(xs[0].ndim - 1, f"{self.name}.forward") + 1
        sizes = [int(x.shape[axis]) for x in xs]
        return xp.concatenate(xs, axis=axis), (axis, sizes)

    def _split(self, dy, saved):
        xp = self.backend.xp
        axis, sizes = saved
        out, start = [], 0
        index = [slice(None)] * dy.ndim
        for size in sizes:
            index[axis] = slice(start, start + size)
            out.append(xp.ascontiguousarray(dy[tuple(index)]))  # a part of its own, not a strided view
            start += size
        return out
