"""Functional models (gpunn.Model over a graph, gpunn/train/functional.py): float64 gradient checks on
DAGs with fan-out, fan-in, shared layers (their per-call state kept apart: dropout masks, conv
columns, batch statistics) and several outputs, on every backend; the BatchNorm+ReLU fusion;
names; bad graphs."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Input, Model
from gpunn.layers import (Add, BatchNorm, Concatenate, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Multiply, ReLU,
                          Subtract, Tanh)
from gpunn.testing import gradcheck


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def dag() -> Model:
    """Two inputs, a layer shared by both, merges, tensors used several times, two outputs."""
    a, b = Input((4,), name="a"), Input((4,), name="b")
    shared = Dense(5, activation="tanh", name="shared")
    ha, hb = shared(a), shared(b)  # one layer, two calls
    s = Add()([ha, hb])  # fan-in
    t = Tanh()(s)
    c = Concatenate()([t, ha, s])  # ha and s are used twice: fan-out
    o1 = Dense(3, name="head")(c)
    o2 = Multiply()([Dense(5)(t), t])
    return Model(inputs=[a, b], outputs=[o1, o2], name="dag")


def test_dag_gradcheck(backend):
    assert gradcheck(dag(), [_x(3, 4), _x(3, 4, seed=1)])


def test_shared_layers_keep_each_calls_state(backend):
    """A Dropout, a Conv2D (its columns) and a BatchNorm (its batch statistics) each called twice
    in one forward, in training mode: every call's backward uses its own forward's state."""
    x = Input((2, 6, 6))
    conv, bn, drop = Conv2D(2, 3, padding=1, activation="tanh"), BatchNorm(), Dropout(0.3)
    h1 = drop(bn(conv(x)))
    h2 = drop(bn(conv(Tanh()(h1))))  # the same three layers again, on another tensor
    y = Dense(2)(Flatten()(Subtract()([h1, h2])))
    model = Model(x, y)
    assert gradcheck(model, _x(4, 2, 6, 6), training=True, seed=3)


def test_shared_gradients_add_up_as_for_two_copies(backend):
    x = Input((3,))
    shared = Dense(3, activation="tanh")
    model = Model(x, shared(shared(x)))
    a, b = Dense(3, activation="tanh"), Dense(3, activation="tanh")
    twin = gpunn.Sequential([a, b])
    xb = _x(5, 3).astype(np.float32)
    twin.forward(xb)
    for copy in (a, b):
        for k, p in shared.params.items():
            copy.params[k].data[...] = p.data
    np.testing.assert_allclose(backend.to_numpy(model.forward(xb)), backend.to_numpy(twin.forward(xb)), rtol=1e-6)
    dy = _x(5, 3, seed=4).astype(np.float32)
    dx = model.backward(dy)
    np.testing.assert_allclose(backend.to_numpy(dx), backend.to_numpy(twin.backward(dy)), rtol=1e-5, atol=1e-6)
    for k, p in shared.params.items():
        np.testing.assert_allclose(backend.to_numpy(p.grad),
                                   backend.to_numpy(a.params[k].grad + b.params[k].grad), rtol=1e-5, atol=1e-6)


def test_batchnorm_relu_is_fused_and_matches_the_unfused_graph(backend):
    x = Input((3, 4, 4))
    bn, relu = BatchNorm(), ReLU()
    y = Flatten()(relu(bn(x)))
    fused = Model(x, y)
    assert [s.layer for s in fused._graph.steps][:1] == [bn] and fused._graph.steps[0].fused.layer is relu
    assert gradcheck(fused, _x(4, 3, 4, 4), training=True)
    # the same graph with BN's output also an output cannot fuse: same numbers
    x2 = Input((3, 4, 4))
    z = bn(x2)
    unfused = Model(x2, [Flatten()(relu(z)), z])
    assert all(s.fused is None for s in unfused._graph.steps)
    xb = _x(4, 3, 4, 4).astype(np.float32)
    np.testing.assert_allclose(backend.to_numpy(fused.forward(xb, training=True)),
                               backend.to_numpy(unfused.forward(xb, training=True)[0]), rtol=1e-6, atol=1e-7)


def test_models_and_sequentials_as_layers(backend):
    inner_in = Input((4,))
    inner = Model(inner_in, Dense(3, activation="tanh")(inner_in), name="inner")
    block = gpunn.Sequential([Dense(4, activation="tanh"), Dense(4)])
    x = Input((4,))
    h = block(x)
    y = Add()([inner(h), inner(Tanh()(h))])  # a model shared, like any layer
    outer = Model(x, y)
    assert gradcheck(outer, _x(3, 4))


def test_an_input_can_be_an_output_and_an_output_listed_twice(backend):
    x = Input((3,))
    h = Dense(3, activation="tanh")(x)
    model = Model(x, [h, x, h])
    assert model.output_names == ["Dense", x.name, "Dense_1"]
    assert gradcheck(model, _x(2, 3))


def test_an_unused_input_gets_a_zero_gradient(backend):
    a, b = Input((3,)), Input((2,))
    model = Model([a, b], Dense(2)(a))
    dx = model.backward(model.forward([_x(2, 3), _x(2, 2)]) * 0 + 1)
    assert backend.to_numpy(dx[1]).tolist() == [[0, 0], [0, 0]]


def test_inputs_by_list_dict_and_single(backend):
    model = dag()
    xa, xb = _x(2, 4).astype(np.float32), _x(2, 4, seed=1).astype(np.float32)
    by_list = model.forward([xa, xb])
    by_dict = model.forward({"b": xb, "a": xa})
    for u, v in zip(by_list, by_dict):
        np.testing.assert_array_equal(backend.to_numpy(u), backend.to_numpy(v))
    x = Input((4,))
    single = Model(x, Dense(2)(x))
    np.testing.assert_array_equal(backend.to_numpy(single.forward([xa])), backend.to_numpy(single.forward(xa)))


def test_bad_forward_inputs():
    model = dag()
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"keys must be the input names \['a', 'b'\]; missing \['b'\], "
                                         r"unknown \['c'\]"):
        model.forward({"a": x, "c": x})
    with pytest.raises(ValueError, match="must hold 2 arrays, one per input"):
        model.forward([x, x, x])
    with pytest.raises(TypeError, match="the model has 2 inputs"):
        model.forward(x)
    with pytest.raises(ValueError, match=r"input 'b' must have shape \(N, 4\), got \(2, 5\)"):
        model.forward([x, np.ones((2, 5), np.float32)])
    with pytest.raises(ValueError, match=r"one batch size, got \[2, 3\]"):
        model.forward([x, np.ones((3, 4), np.float32)])


def test_bad_backward():
    model = dag()
    with pytest.raises(RuntimeError, match="called before forward"):
        model.backward([np.ones((2, 3)), np.ones((2, 5))])
    model.forward([np.ones((2, 4), np.float32)] * 2)
    with pytest.raises(ValueError, match="must be a list of 2 gradients"):
        model.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"for output 1 must have the shape of that output \(2, 5\)"):
        model.backward([np.ones((2, 3)), np.ones((2, 4))])


def test_layer_keys_are_unique_and_get_layer_finds_them():
    x = Input((3,), name="x")
    d1, d2 = Dense(3), Dense(3)
    tanh = Tanh(name="x")  # the name of an input: its key moves aside
    model = Model(x, d2(tanh(d1(x))))
    assert list(model.children) == ["Dense", "x_1", "Dense_1"]
    assert model.get_layer("Dense") is d1 and model.get_layer("Dense_1") is d2 and model.get_layer("x_1") is tanh
    assert model.get_layer(index=-1) is d2 and model.layers == [d1, tanh, d2]
    assert [k for k, _ in model.named_parameters()] == ["Dense.weight", "Dense.bias", "Dense_1.weight", "Dense_1.bias"]
    with pytest.raises(ValueError, match="names 0 layers"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="exactly one of 'name' and 'index'"):
        model.get_layer()
    with pytest.raises(ValueError, match="argument 'index' must be an int in"):
        model.get_layer(index=3)
    with pytest.raises(TypeError, match="argument 'name' must be a str"):
        model.get_layer(3)


def test_summary_shows_calls_and_connections():
    text = dag().summary(print_fn=None)
    assert "a (Input)" in text and "b (Input)" in text
    assert "shared[0][0], shared[1][0]" in text  # Add reads both calls of the shared layer
    assert "(shared)" in text  # its parameters are counted once
    assert "Total params: 103" in text  # 25 + 48 + 30


def test_freeze_by_key_and_to(backend):
    model = dag()
    model.freeze(until="head")
    assert not model.get_layer("shared").trainable and model.get_layer("head").trainable
    model.unfreeze()
    assert model.get_layer("shared").trainable
    model.to("numpy")
    assert all(layer.backend.name == "numpy" for layer in model.layers)
    with pytest.raises(TypeError, match="a graph of layers, not a stack"):
        model.pop()


def test_layers_built_on_another_backend_are_moved_onto_the_model(backend):
    with gpunn.use_backend("numpy"):
        x = Input((3,))
        y = Dense(2)(x)
    model = Model(x, y)
    assert model.backend is backend and model.layers[0].backend is backend
    assert model.forward(np.ones((2, 3), np.float32)).shape == (2, 2)


def test_bad_graphs():
    a, b = Input((3,)), Input((3,))
    h = Dense(2)(Add()([a, b]))
    with pytest.raises(ValueError, match="the graph is disconnected: the outputs depend on"):
        Model(a, h)
    with pytest.raises(ValueError, match="entry 0 is SymbolicTensor.*not a tensor made by gpunn.Input"):
        Model(h, h)
    with pytest.raises(ValueError, match="must be symbolic tensors.*entry 0 is a ndarray"):
        Model(a, np.ones(3))
    with pytest.raises(ValueError, match="lists .* twice"):
        Model([a, a], Dense(2)(a))
    c, d = Input((3,), name="same"), Input((3,), name="same")
    with pytest.raises(ValueError, match="names must be unique"):
        Model([c, d], Add()([c, d]))
    with pytest.raises(ValueError, match="'inputs' must be a tensor or a list"):
        Model({"a": a}, Dense(2)(a))
    with pytest.raises(ValueError, match="must hold at least one tensor"):
        Model([], h)
    with pytest.raises(TypeError, match="give inputs= and outputs="):
        Model()
    with pytest.raises(TypeError, match="got only inputs"):
        Model(inputs=a)


def test_outputs_by_dict_name_them():
    x = Input((3,))
    h = Dense(4)(x)
    model = Model(x, {"first": Dense(2)(h), "second": Dense(1)(h)})
    assert model.output_names == ["first", "second"]
    with pytest.raises(ValueError, match="keys must be non-empty str names"):
        Model(x, {3: h})


def test_a_big_chain_of_calls_runs_without_recursion():
    x = Input((2,))
    h = x
    relu = ReLU()
    for _ in range(3000):  # deeper than Python's recursion limit
        h = relu(h)
    model = Model(x, h)
    y = model.forward(np.ones((1, 2), np.float32))
    assert np.asarray(model.backward(y)).shape == (1, 2)


def test_max_pool_and_conv_graph_on_images(backend):
    img = Input((1, 6, 6), name="img")
    left = MaxPool2D(2)(Conv2D(2, 3, padding=1, activation="relu")(img))
    right = MaxPool2D(2)(Conv2D(2, 1)(img))
    y = Dense(3)(Flatten()(Concatenate(axis=1)([left, right])))
    model = Model(img, y)
    x = np.random.default_rng(0).permutation(2 * 36).reshape(2, 1, 6, 6) / 10.0  # no max-pool ties
    assert gradcheck(model, x)


def test_a_model_with_two_inputs_is_called_like_a_merge(backend):
    a, b = Input((3,)), Input((3,))
    inner = Model([a, b], Dense(2)(Add()([a, b])))
    x, y = Input((3,)), Input((3,))
    outer = Model([x, y], Tanh()(inner([x, Tanh()(y)])))
    assert gradcheck(outer, [_x(2, 3), _x(2, 3, seed=1)])
    two_out = Model(a, [Dense(2)(a), Dense(1)(a)])
    with pytest.raises(TypeError, match="has several outputs"):
        two_out(x)


@pytest.mark.parametrize("name, err", [(3, TypeError), ("", ValueError)])
def test_bad_model_name(name, err):
    x = Input((2,))
    with pytest.raises(err, match="Model: argument 'name' must be a non-empty str"):
        Model(x, Dense(2)(x), name=name)


def test_a_shared_layer_fed_the_same_arrays_again_backpropagates_each_call(backend):
    """Regression: the second step on the very same input arrays. The first step's backward leaves
    the shared layer holding its first call's input; the next first call sets that same object
    again, which rebinds nothing by identity, and its backward used to get the second call's input."""
    from gpunn import Input, Model
    from gpunn.layers import Add, Dense
    from gpunn.optim import SGD
    rng = np.random.default_rng(0)
    left, right = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    target = rng.standard_normal((4, 2)).astype(np.float32)
    l_in, r_in = Input((3,), name="left"), Input((3,), name="right")
    shared = Dense(2, name="shared")
    model = Model(inputs=[l_in, r_in], outputs=Add()([shared(l_in), shared(r_in)]))
    model.compile(loss="mse", optimizer=SGD(lr=0.0))
    for _ in range(2):
        model.train_on_batch([left, right], target)
        w, b = (gpunn.backend.to_host(p.data) for p in model.parameters())
        d = 2 * (left @ w + right @ w + 2 * b - target) / target.size
        np.testing.assert_allclose(gpunn.backend.to_host(model.parameters()[0].grad), left.T @ d + right.T @ d,
                                   rtol=1e-5, atol=1e-6)
