"""Merge layers: values, float64 gradient checks over several inputs on every backend, and bad
inputs (one input, shape mismatches, wrong axes, a non-list)."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn.layers import Add, Average, Concatenate, Maximum, Multiply, Subtract
from gpunn.testing import gradcheck


def _xs(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


ELEMENTWISE = [Add, Multiply, Average, Maximum]


@pytest.mark.parametrize("cls", ELEMENTWISE, ids=lambda c: c.__name__)
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 4)])
def test_elementwise_gradcheck(backend, cls, n, shape):
    assert gradcheck(cls(), _xs(*[shape] * n, seed=n))


def test_subtract_gradcheck(backend):
    assert gradcheck(Subtract(), _xs((3, 4), (3, 4)))


@pytest.mark.parametrize("axis, shapes", [
    (1, [(2, 3), (2, 5)]), (-1, [(2, 3), (2, 1), (2, 2)]), (1, [(2, 2, 3, 3), (2, 4, 3, 3)]),
    (3, [(2, 2, 3, 1), (2, 2, 3, 2)]), (-2, [(2, 2, 1, 3), (2, 2, 4, 3)]),
])
def test_concatenate_gradcheck(backend, axis, shapes):
    layer = Concatenate(axis=axis)
    assert gradcheck(layer, _xs(*shapes))
    want = list(shapes[0])
    want[axis] = sum(s[axis] for s in shapes)
    assert layer.output_shape == tuple(want[1:])


def test_values(backend):
    a, b, c = (x.astype(np.float32) for x in _xs((3, 4), (3, 4), (3, 4)))  # float32 in, float32 math
    to = backend.to_numpy
    np.testing.assert_allclose(to(Add()([a, b, c])), a + b + c, rtol=1e-6)
    np.testing.assert_allclose(to(Subtract()([a, b])), a - b, rtol=1e-6)
    np.testing.assert_allclose(to(Multiply()([a, b, c])), a * b * c, rtol=1e-5)
    np.testing.assert_allclose(to(Average()([a, b, c])), (a + b + c) / 3, rtol=1e-5)
    np.testing.assert_allclose(to(Maximum()([a, b, c])), np.maximum(np.maximum(a, b), c), rtol=1e-6)
    np.testing.assert_allclose(to(Concatenate()([a, b])), np.concatenate([a, b], axis=1), rtol=1e-6)


def test_maximum_sends_a_tie_to_the_first_input():
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[1.0, 5.0, 0.0]])
    layer = Maximum()
    layer.forward([a, b])
    da, db = layer.backward(np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(da, [[1, 0, 1]])
    np.testing.assert_array_equal(db, [[0, 1, 0]])


def test_multiply_gradient_is_right_at_zero():
    a = np.array([[0.0, 2.0]])
    b = np.array([[3.0, 0.0]])
    layer = Multiply()
    layer.forward([a, b])
    da, db = layer.backward(np.ones((1, 2), np.float32))
    np.testing.assert_array_equal(da, [[3, 0]])
    np.testing.assert_array_equal(db, [[0, 2]])


def test_inputs_are_cast_to_the_layers_dtype():
    y = Add()([np.ones((2, 3)), np.ones((2, 3), np.float32)])  # float64 data, float32 layer
    assert y.dtype == np.float32


@pytest.mark.parametrize("cls", [*ELEMENTWISE, Subtract, Concatenate], ids=lambda c: c.__name__)
def test_one_input_is_refused(cls):
    with pytest.raises(ValueError, match=r"takes (at least|exactly) 2 inputs, got 1"):
        cls()([np.ones((2, 3))])


def test_subtract_takes_exactly_two():
    with pytest.raises(ValueError, match="Subtract takes exactly 2 inputs, got 3"):
        Subtract()(_xs((2, 3), (2, 3), (2, 3)))


@pytest.mark.parametrize("cls", ELEMENTWISE + [Subtract], ids=lambda c: c.__name__)
def test_shape_mismatch_names_both_shapes(cls):
    with pytest.raises(ValueError, match=r"input 0 has \(3,\) and input 1 has \(4,\)"):
        cls()(_xs((2, 3), (2, 4)))


def test_batch_size_mismatch():
    with pytest.raises(ValueError, match=r"one batch size, got \[2, 3\]"):
        Add()(_xs((2, 3), (3, 3)))


def test_a_built_merge_refuses_inputs_that_no_longer_merge():
    layer = Add()
    layer(_xs((2, 3), (2, 3)))
    layer(_xs((2, 5), (2, 5)))  # no parameters: any shapes that merge
    with pytest.raises(ValueError, match="one per-sample shape"):
        layer(_xs((2, 5), (2, 3)))


def test_not_a_list():
    with pytest.raises(TypeError, match="Add.forward: argument 'xs' must be a list of arrays"):
        Add().forward(np.ones((2, 3)))


def test_integer_input_is_refused():
    with pytest.raises(TypeError, match=r"Add.forward \(input 1\): argument 'x' must be a floating-point array"):
        Add()([np.ones((2, 3)), np.ones((2, 3), np.int64)])


def test_concatenate_bad_axis():
    with pytest.raises(ValueError, match="must not be 0, the batch axis"):
        Concatenate(axis=0)
    with pytest.raises(TypeError, match="Concatenate: argument 'axis' must be an int"):
        Concatenate(axis=1.0)
    with pytest.raises(ValueError, match=r"argument 'axis'=3 is out of range for inputs of 2 dimensions"):
        Concatenate(axis=3)(_xs((2, 3), (2, 3)))
    with pytest.raises(ValueError, match=r"argument 'axis'=-2 is the batch axis"):
        Concatenate(axis=-2)(_xs((2, 3), (2, 3)))


def test_concatenate_other_axes_must_match():
    with pytest.raises(ValueError, match=r"match on every other axis, but input 0 has per-sample shape \(2, 3\) and "
                                         r"input 1 has \(4, 3\)"):
        Concatenate(axis=-1)(_xs((2, 2, 3), (2, 4, 3)))
    with pytest.raises(ValueError, match="one rank"):
        Concatenate()(_xs((2, 2, 3), (2, 3)))


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="called before forward"):
        Add().backward(np.ones((2, 3)))


def test_merge_layers_are_exported_and_registered():
    from gpunn.io import registry
    for cls in (Add, Subtract, Multiply, Average, Maximum, Concatenate):
        assert getattr(gpunn.layers, cls.__name__) is cls
        assert registry.registered_name(cls) == cls.__name__
