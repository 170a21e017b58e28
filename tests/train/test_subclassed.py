"""Subclassed models (gpunn/train/subclassed.py): layers tracked as attributes in assignment order,
call() with Python control flow run on a tape, float64 gradient checks with fan-out, fan-in, a
layer called twice and several outputs on every backend; what cannot be taped raises."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn.layers import Add, BatchNorm, Concatenate, Dense, Dropout, ReLU, Tanh
from gpunn.testing import gradcheck


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


class Branchy(gpunn.Model):
    """An `if` on the data, a loop, a layer called twice, a merge, a layer made in call()."""

    def __init__(self, hidden: int = 6) -> None:
        super().__init__()
        self.hidden = hidden
        self.inp = Dense(hidden, activation="tanh")
        self.block = Dense(hidden, activation="tanh")
        self.head = Dense(2)

    def call(self, x, training=False):
        h = self.inp(x)
        if x.shape[0] > 2:  # ordinary Python control flow
            h = Add()([h, self.block(h)])  # fan-out of h, fan-in at the Add
        for _ in range(2):
            h = self.block(h)  # the same layer called again
        return self.head(h)


def test_layers_are_tracked_in_assignment_order():
    net = Branchy()
    assert list(net.children) == ["inp", "block", "head"]
    assert net.layers == [net.inp, net.block, net.head]
    assert net.is_subclassed and not net.built and net.output_names is None


@pytest.mark.parametrize("n", [2, 4])  # the `if` takes either branch
def test_branchy_gradcheck(backend, n):
    assert gradcheck(Branchy(), _x(n, 3))


def test_only_the_layers_called_take_part():
    net = Branchy()
    x = np.ones((2, 3), np.float32)  # the branch without the Add
    y = net.forward(x)
    assert [c.layer for c in net._run.calls] == [net.inp, net.block, net.block, net.head]
    net.zero_grad()
    net.backward(y)
    assert all(np.abs(p.grad).sum() > 0 for p in net.parameters())


class TwoHeads(gpunn.Model):
    def __init__(self):
        super().__init__()
        self.trunk = Dense(5, activation="tanh")
        self.drop = Dropout(0.3)
        self.norm = BatchNorm()
        self.a = Dense(3)
        self.b = Dense(1, activation="sigmoid")

    def call(self, x, training=False):
        h = self.norm(self.drop(self.trunk(x)))  # training flows from the model's mode
        h2 = self.drop(Tanh()(h))  # the same Dropout again: a second mask
        return [self.a(Concatenate()([h, h2])), self.b(h2)]


def test_several_outputs_and_training_mode_gradcheck(backend):
    assert gradcheck(TwoHeads(), _x(6, 4), training=True, seed=5)


class TwoInputs(gpunn.Model):
    def __init__(self):
        super().__init__()
        self.shared = Dense(3, activation="tanh")

    def call(self, x, training=False):
        return Add()([self.shared(x["left"]), self.shared(x["right"])])


def test_dict_inputs_and_their_gradients(backend):
    net = TwoInputs()
    xs = {"left": _x(2, 3).astype(np.float32), "right": _x(2, 3, seed=1).astype(np.float32)}
    y = net.forward(xs)
    dx = net.backward(y * 0 + 1)
    assert set(dx) == {"left", "right"} and dx["left"].shape == (2, 3)
    assert net.input_names == ["left", "right"]


def test_model_input_as_output_and_unused_inputs(backend):
    class Passthrough(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.d = Dense(2)

        def call(self, x, training=False):
            return [self.d(x[0]), x[0]]

    net = Passthrough()
    assert gradcheck(net, [_x(2, 3), _x(2, 2)])  # input 1 feeds nothing: a zero gradient


def test_reassigning_and_deleting_attributes():
    net = Branchy()
    new_head = Dense(3)
    net.head = new_head
    assert list(net.children) == ["inp", "block", "head"] and net.children["head"] is new_head
    net.alias = net.inp  # an alias is not a second child
    assert list(net.children) == ["inp", "block", "head"]
    net.head = None
    assert "head" not in net.children
    net.blocks = [Dense(2), ReLU()]
    assert list(net.children)[-2:] == ["blocks.0", "blocks.1"]
    del net.blocks
    assert "blocks.0" not in net.children


def test_layers_before_init_are_refused():
    class Early(gpunn.Model):
        def __init__(self):
            self.d = Dense(2)
            super().__init__()

        def call(self, x, training=False):
            return self.d(x)

    with pytest.raises(RuntimeError, match=r"layer attribute 'd' assigned before Model.__init__ ran"):
        Early()


def test_array_arithmetic_is_not_taped():
    class Arith(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.d = Dense(2)

        def call(self, x, training=False):
            h = self.d(x)
            return self.d(h + h)

    with pytest.raises(TypeError, match=r"Arith.call: layer 'Dense' got an input.*not taped.*gpunn.layers.Add"):
        Arith().forward(np.ones((2, 2), np.float32))

    class ArithOut(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.d = Dense(2)

        def call(self, x, training=False):
            return self.d(x) * 2

    with pytest.raises(TypeError, match="its output .* is neither an input nor the output of a layer"):
        ArithOut().forward(np.ones((2, 2), np.float32))


def test_a_layer_made_in_call_with_parameters_warns():
    class Stray(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.d = Dense(2)

        def call(self, x, training=False):
            return Dense(2)(self.d(x))

    net = Stray()
    with pytest.warns(UserWarning, match="have parameters but are not attributes of the model"):
        net.forward(np.ones((2, 2), np.float32))


def test_call_without_training_argument():
    class Plain(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.d = Dense(2)
            self.drop = Dropout(0.5)

        def call(self, x):
            return self.drop(self.d(x))

    net = Plain()
    y = net.forward(np.ones((500, 2), np.float32), training=True)  # the tape still knows the mode
    assert (np.asarray(y) == 0).any()


def test_model_needs_call_or_a_graph():
    with pytest.raises(TypeError, match="subclass Model and define call"):
        gpunn.Model()

    class Both(gpunn.Model):
        def __init__(self):
            x = gpunn.Input((2,))
            super().__init__(inputs=x, outputs=Dense(2)(x))

        def call(self, x, training=False):
            return x

    with pytest.raises(TypeError, match=r"defines call\(\) and was also given inputs/outputs"):
        Both()


def test_build_summary_and_nesting(backend):
    net = Branchy()
    net.build((3,))
    assert net.built and net.input_shape == (3,) and net.output_shape == (2,)
    assert "inp (Dense)" in net.summary(print_fn=None)
    x = gpunn.Input((3,))
    outer = gpunn.Model(x, Dense(1)(net(x)))  # a subclassed model as a layer of a graph
    assert gradcheck(outer, _x(3, 3))

    class Outer(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.inner = Branchy()
            self.out = Dense(1)

        def call(self, x, training=False):
            return self.out(self.inner(x))  # a subclassed model inside another: its own tape

    assert gradcheck(Outer(), _x(4, 3))


def test_summary_of_an_unbuilt_subclass_and_build_with_several_inputs():
    with pytest.raises(RuntimeError, match="summary: the model is not built"):
        Branchy().summary(print_fn=None)

    class Pair(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.d = Dense(2)

        def call(self, x, training=False):
            return Add()([self.d(x[0]), self.d(x[1])])

    net = Pair()
    net.build(((3,), (3,)))
    assert net.input_shape == ((3,), (3,)) and net.output_shape == (2,) and net.d.built
