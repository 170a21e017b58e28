"""gpunn.Input and symbolic tensors: shape inference through layer calls (which build the layers),
merge calls, shared layers on other shapes, and the errors for what a symbolic tensor cannot do."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn.layers import Add, Chain, Concatenate, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from gpunn.layers.symbolic import Node, SymbolicTensor


def test_input_and_layer_calls_infer_shapes_and_build():
    x = gpunn.Input(shape=(1, 8, 8), name="image")
    assert isinstance(x, SymbolicTensor) and x.is_input and x.shape == (1, 8, 8) and x.name == "image"
    conv = Conv2D(4, 3, padding=1)
    h = conv(x)
    assert conv.built and h.shape == (4, 8, 8)
    assert isinstance(h.node, Node) and h.node.layer is conv and h.node.inputs == [x] and not h.node.as_list
    h = Flatten()(MaxPool2D(2)(h))
    assert h.shape == (64,)
    dense = Dense(10)
    assert dense(h).shape == (10,) and dense.params["weight"].shape == (64, 10)


def test_a_chain_is_called_like_a_layer():
    chain = Chain([Dense(5), ReLU(), Dense(2)])
    assert chain(gpunn.Input(3)).shape == (2,)


def test_merge_call_takes_a_list():
    a, b = gpunn.Input((3,)), gpunn.Input((5,))
    c = Concatenate()([a, b])
    assert c.shape == (8,) and c.node.as_list and c.node.inputs == [a, b]


def test_shared_shape_free_layer_on_another_shape():
    relu = ReLU()
    assert relu(gpunn.Input((3,))).shape == (3,)
    assert relu(gpunn.Input((2, 4))).shape == (2, 4)  # built for (3,): inferred by an inference pass
    assert relu._saved is None  # that pass keeps nothing behind
    pool = MaxPool2D(2)
    pool(gpunn.Input((1, 8, 8)))
    assert pool(gpunn.Input((1, 6, 4))).shape == (1, 3, 2)


def test_a_built_layer_refuses_an_input_it_does_not_fit():
    dense = Dense(2)
    dense(gpunn.Input((3,)))
    with pytest.raises(ValueError, match="3 features on its last axis"):
        dense(gpunn.Input((4,)))


def test_declared_input_shape_is_checked():
    with pytest.raises(ValueError, match=r"Dense.__call__: its input has per-sample shape \(4,\), but "
                                         r"input_shape=\(3,\)"):
        Dense(2, input_shape=(3,))(gpunn.Input((4,)))


def test_default_names_count_up():
    a, b = gpunn.Input(2), gpunn.Input(2)
    assert a.name.startswith("input_") and b.name.startswith("input_") and a.name != b.name


@pytest.mark.parametrize("shape, err", [((), ValueError), ((3, 0), ValueError), ((2.0,), TypeError), ("3", TypeError),
                                        (None, TypeError), ((-1,), ValueError)])
def test_input_bad_shape(shape, err):
    with pytest.raises(err, match="Input: argument 'shape'"):
        gpunn.Input(shape)


@pytest.mark.parametrize("name, err", [("", ValueError), (3, TypeError), ("x" * 201, ValueError)])
def test_input_bad_name(name, err):
    with pytest.raises(err, match="Input: argument 'name'"):
        gpunn.Input((2,), name=name)


@pytest.mark.parametrize("op", [lambda a, b: a + b, lambda a, b: a * 2, lambda a, b: 1 - a, lambda a, b: a[0],
                                lambda a, b: -a, lambda a, b: bool(a), lambda a, b: np.asarray(a),
                                lambda a, b: a @ b, lambda a, b: a / b])
def test_symbolic_tensors_have_no_value(op):
    a, b = gpunn.Input((3,)), gpunn.Input((3,))
    with pytest.raises(TypeError, match="is symbolic and has no value.*gpunn.layers.Add"):
        op(a, b)


def test_mixing_arrays_and_tensors_is_refused():
    with pytest.raises(TypeError, match="mixes symbolic tensors and arrays"):
        Add()([gpunn.Input((3,)), np.ones((2, 3))])


def test_a_merge_needs_a_list_and_a_layer_one_tensor():
    a = gpunn.Input((3,))
    with pytest.raises(TypeError, match="must be a list of tensors for a merge layer"):
        Add()(a)
    with pytest.raises(TypeError, match="must be one tensor, got a list of 2"):
        Dense(2)([a, a])


def test_merge_shape_errors_surface_at_the_call():
    with pytest.raises(ValueError, match=r"input 0 has \(3,\) and input 1 has \(4,\)"):
        Add()([gpunn.Input((3,)), gpunn.Input((4,))])
