"""A layer holds the backend it was built on: its forward, backward and build run there (and what
they build lazily is built there), wherever they are called from; to() moves it; containers move
children from another backend onto theirs. Observed through counting wrappers around the
registry's backend ops (the real op still runs) and `.backend`."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import gpunn
from gpunn.layers import (BatchNorm, Chain, Conv2D, Dense, Layer, MaxPool2D, ReLU, Residual, WeightNorm,
                          basic_block)


def count_ops(monkeypatch, backend, names) -> collections.Counter:
    calls: collections.Counter = collections.Counter()
    for name in names:
        real = getattr(backend, name)

        def counting(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setitem(vars(backend), name, counting)
    return calls


def owners(layer: Layer) -> set[str]:
    out, stack = set(), [layer]
    while stack:
        node = stack.pop()
        out.add(node.backend.name)
        stack.extend(node.children.values())
    return out


IMAGE = (2, 3, 6, 6)
#: (factory, input shape, an emulated op its forward reaches)
LAYERS = {
    "dense": (lambda: Dense(4), (2, 5), "matmul"),
    "conv": (lambda: Conv2D(2, 3, padding=1), IMAGE, "conv2d_forward"),
    "batchnorm": (lambda: BatchNorm(), IMAGE, "batchnorm_forward_train"),
    "maxpool": (lambda: MaxPool2D(2), IMAGE, "maxpool2d_forward"),
    "chain": (lambda: Chain([Conv2D(2, 3, padding=1), ReLU(), MaxPool2D(2)]), IMAGE, "maxpool2d_forward"),
    "residual": (lambda: Residual(Chain([Conv2D(3, 3, padding=1), BatchNorm()])), IMAGE, "batchnorm_forward_train"),
    "basic_block": (lambda: basic_block(4, strides=2), IMAGE, "conv2d_forward"),
    "weight_norm": (lambda: WeightNorm(Dense(4)), (2, 5), "matmul"),
}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_a_layer_built_under_use_backend_runs_there_when_called_outside(monkeypatch, emulated, kind):
    factory, shape, op = LAYERS[kind]
    with gpunn.use_backend("emulated"):
        layer = factory()
    assert layer.backend is emulated and gpunn.get_backend().name == "numpy"
    calls = count_ops(monkeypatch, emulated, [op])
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    y = layer.forward(x, training=True)  # first call: builds, lazily, outside the block
    assert owners(layer) == {"emulated"}, kind  # sublayers made at build time (basic_block's projection) too
    assert calls[op] >= 1
    layer.backward(np.ones_like(y))
    assert all(emulated.is_native(p.data) for p in layer.parameters())


def test_a_sublayer_made_at_build_time_uses_the_owner_not_the_current_backend(emulated):
    with gpunn.use_backend("emulated"):
        block = basic_block(4, strides=2)
    x = np.zeros(IMAGE, np.float32)
    with gpunn.use_backend("numpy"):  # the block builds inside another block: still its own backend
        block.forward(x)
    projection = block.layers[0].shortcut.children["projection"]
    assert owners(projection) == {"emulated"}


def test_build_called_directly_builds_on_the_owner(emulated):
    with gpunn.use_backend("emulated"):
        block = basic_block(4, strides=2)
    block.build(IMAGE[1:])
    assert owners(block) == {"emulated"}


def test_layer_to_moves_arrays_and_owner_and_refuses_bad_names(monkeypatch, emulated):
    layer = Chain([Conv2D(2, 3, padding=1), BatchNorm()])
    x = np.random.default_rng(1).normal(size=IMAGE).astype(np.float32)
    before = layer.forward(x)
    state = layer.state_dict()
    assert layer.to("emulated") is layer and owners(layer) == {"emulated"}
    calls = count_ops(monkeypatch, emulated, ["conv2d_forward", "batchnorm_forward_infer"])
    np.testing.assert_allclose(layer.forward(x), before, rtol=1e-5, atol=1e-5)
    assert calls["conv2d_forward"] == 1 and calls["batchnorm_forward_infer"] == 1
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    for bad, error in ((1, TypeError), ("gpu", ValueError)):
        with pytest.raises(error, match=r"Chain\.to: argument 'backend_name'"):
            layer.to(bad)
    assert owners(layer) == {"emulated"}


def test_state_dict_is_host_copies_and_load_state_dict_takes_them_on_any_backend(emulated):
    src = Dense(3)
    src.build((4,))
    with gpunn.use_backend("emulated"):
        dst = Dense(3)
        dst.build((4,))
    state = src.state_dict()
    assert all(isinstance(v, np.ndarray) and v.base is None for v in state.values())
    dst.load_state_dict(state)  # into dst's backend, loaded from outside its block
    assert dst.backend is emulated
    for k, v in dst.state_dict().items():
        np.testing.assert_array_equal(v, state[k])


@pytest.mark.parametrize("wrap", [
    lambda child: Chain([child]),
    lambda child: Residual(child),
    lambda child: Residual(Chain([]), shortcut=child),
    lambda child: WeightNorm(child),
], ids=["chain", "residual-block", "residual-shortcut", "weight_norm"])
def test_containers_adopt_a_child_built_on_another_backend(emulated, wrap):
    with gpunn.use_backend("emulated"):
        child = Dense(4)
        child.build((4,))
    parent = wrap(child)
    assert parent.backend.name == "numpy"
    assert owners(parent) == {"numpy"}
    assert all(parent.backend.is_native(p.data) for p in child.parameters())


def test_a_subclass_that_skips_layer_init_pins_the_backend_on_first_use(emulated):
    class Bare(Layer):
        def __init__(self):  # no super().__init__(): class defaults apply
            self.params, self.buffers, self.children = {}, {}, {}
            self.name, self.built = "Bare", True

        def forward(self, x, training=False):
            return x

    with gpunn.use_backend("emulated"):
        layer = Bare()
        assert layer.backend is emulated
    assert layer.backend is emulated  # pinned: it does not follow the current backend afterwards


def test_a_layer_runs_with_its_backend_current(emulated):
    seen = []

    class Probe(Layer):
        def forward(self, x, training=False):
            seen.append(gpunn.get_backend().name)
            return x

        def backward(self, dy):
            seen.append(gpunn.get_backend().name)
            return dy

    with gpunn.use_backend("emulated"):
        probe = Probe()
    probe.forward(np.zeros((1, 2), np.float32))
    probe.backward(np.zeros((1, 2), np.float32))
    assert seen == ["emulated", "emulated"]
