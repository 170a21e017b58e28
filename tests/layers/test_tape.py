"""The tape of layer calls: per-call state snapshots (a layer called twice keeps both calls'
backward state), backward in reverse with fan-out sums, recording through Layer.__call__ and
its refusals."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.layers import Add, Conv2D, Dense, Dropout, Tanh
from gpunn.layers.tape import (Call, Tape, active_tape, backpropagate, recording, restore_state, state_after,
                               state_before)


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_state_after_is_what_the_forward_rebound_and_restore_puts_it_back():
    dense = Dense(3, activation="tanh")
    before = state_before([dense])
    dense.forward(_x(2, 4))
    first = state_after(before)
    changed = {id(layer): set(attrs) for layer, attrs in first}
    assert {"_x", "_output_seen"} <= changed[id(dense)]
    assert "_saved" in changed[id(dense.children["activation"])]  # sublayers too
    kept_x = dense._x
    dense.forward(_x(2, 4, seed=1))
    assert dense._x is not kept_x
    restore_state(first)
    assert dense._x is kept_x


def _chain_calls(layers, x):
    """Run layers in order, recording Calls keyed 0 (input), 1, 2, ..."""
    calls = []
    for i, layer in enumerate(layers):
        before = state_before([layer])
        x = layer.forward(x)
        calls.append(Call(layer, [i], False, i + 1, state_after(before)))
    return x, calls


def test_backpropagate_a_layer_called_twice_matches_two_copies():
    """dense(dense(x)) through one layer equals the same through two copies of it."""
    shared = Dense(4, activation="tanh").to_dtype("float64")
    x = _x(3, 4)
    y, calls = _chain_calls([shared, shared], x)
    dy = _x(3, 4, seed=2)
    grads = backpropagate(calls, {2: dy})
    a, b = Dense(4, activation="tanh").to_dtype("float64"), Dense(4, activation="tanh").to_dtype("float64")
    for copy in (a, b):
        copy.forward(x[:1])
        copy.params["weight"].data[...] = shared.params["weight"].data
        copy.params["bias"].data[...] = shared.params["bias"].data
    np.testing.assert_allclose(b.forward(a.forward(x)), y)
    dx = a.backward(b.backward(dy))
    np.testing.assert_allclose(grads[0], dx)
    np.testing.assert_allclose(shared.params["weight"].grad, a.params["weight"].grad + b.params["weight"].grad)


def test_fan_out_gradients_add_up_and_unreached_calls_are_skipped():
    t1, t2 = Tanh(), Tanh()
    x = _x(2, 3)
    calls = []
    for layer, key in ((t1, 1), (t2, 2)):  # both read key 0: fan-out
        before = state_before([layer])
        layer.forward(x)
        calls.append(Call(layer, [0], False, key, state_after(before)))
    g1, g2 = np.ones((2, 3)), 2 * np.ones((2, 3))
    out = backpropagate(calls, {1: g1, 2: g2})
    np.testing.assert_allclose(out[0], t1._backward(g1, t1._saved) + t2._backward(g2, t2._saved))
    only = backpropagate(calls, {1: g1})  # t2's output reaches no loss: its backward does not run
    np.testing.assert_allclose(only[0], t1._backward(g1, t1._saved))


def test_leaf_gradients_can_be_skipped_where_the_layer_can():
    conv = Conv2D(2, 3)
    x = _x(1, 1, 5, 5).astype(np.float32)
    before = state_before([conv])
    y = conv.forward(x)
    calls = [Call(conv, [0], False, 1, state_after(before))]
    out = backpropagate(calls, {1: np.ones(y.shape, np.float32)}, need_leaf_grads=False)
    assert out == {} and conv.needs_input_grad is True  # skipped, and the setting restored
    assert np.abs(conv.params["weight"].grad).sum() > 0


def test_a_list_call_must_return_a_list():
    bad = Tanh()
    before = state_before([bad])
    bad.forward(_x(2, 3))
    with pytest.raises(RuntimeError, match="must return a list of 2 gradients"):
        backpropagate([Call(bad, [0, 1], True, 2, state_after(before))], {2: np.ones((2, 3))})


def test_layer_calls_record_onto_the_active_tape_in_its_mode():
    tape = Tape(training=True, owner="net")
    x = np.ones((200, 10), np.float32)
    tape.watch(x)
    drop, dense = Dropout(0.5), Dense(3)
    with recording(tape):
        assert active_tape() is tape
        y = drop(x)  # training=None: the tape's mode
        z = dense(y, training=False)
        with recording(None):
            assert active_tape() is None
            dense(x)  # not recorded
    assert active_tape() is None
    assert [c.layer for c in tape.calls] == [drop, dense]
    assert (np.asarray(y) == 0).any()  # dropout ran in training mode
    assert tape.key_of(z) == tape.calls[1].output and tape.calls[1].inputs == [tape.calls[0].output]


def test_a_layer_fed_an_untaped_array_is_refused():
    tape = Tape(training=False, owner="net")
    x = np.ones((2, 3), np.float32)
    tape.watch(x)
    dense = Dense(3)
    with recording(tape):
        h = dense(x)
        with pytest.raises(TypeError, match=r"net.call: layer 'Dense' got an input \(ndarray\) that is neither an "
                                             r"input of the model nor the output of a layer.*a \+ b"):
            dense(h * 2)
        with pytest.raises(TypeError, match="must be a list of arrays for a merge layer"):
            Add()(h)
        with pytest.raises(TypeError, match="must be one array, got a list"):
            dense([h, h])
