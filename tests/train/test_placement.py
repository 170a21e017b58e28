"""Placement has an owner: a model (and every layer and optimizer) runs on the backend it was built
on or moved to with to(), wherever it is called from - a bare forward()/backward()/step() too.

On this machine numpy and emulated both hold NumPy arrays, so which backend ran is observed, not
inferred from array types: the registry's backend instances get counting wrappers around their
real ops (the op still runs; the wrapper only counts), and `.backend.name` is checked.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.backend import to_host
from gpunn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from gpunn.losses import MSE, SoftmaxCrossEntropy
from gpunn.optim import Adam
from gpunn.regularizers import L2
from gpunn.train.ensemble import Ensemble

#: the ops a conv -> batchnorm -> max-pool -> dense model calls on any backend
LAYER_OPS = ("conv2d_forward", "conv2d_backward", "batchnorm_forward_train", "batchnorm_backward",
             "maxpool2d_forward", "maxpool2d_backward", "matmul", "adam_step_device")
#: the emulated backend's CUDA-kernel ops the same model reaches
KERNEL_OPS = ("conv2d_forward", "conv2d_backward", "batchnorm_forward_train", "batchnorm_backward",
              "maxpool2d_forward", "maxpool2d_backward", "adam_step_device")


@pytest.fixture
def numpy_be():
    with gpunn.use_backend("numpy") as be:
        return be


def count_ops(monkeypatch: pytest.MonkeyPatch, backend, names=LAYER_OPS) -> collections.Counter:
    """Count calls to `backend`'s ops `names` (the real op still runs); undone after the test."""
    calls: collections.Counter = collections.Counter()
    for name in names:
        real = getattr(backend, name)

        def counting(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setitem(vars(backend), name, counting)  # an instance attribute, deleted on undo
    return calls


def conv_model() -> Sequential:
    # no conv bias before the BatchNorm (as in a ResNet): its gradient is ~0, and Adam would turn
    # the two backends' rounding of that 0 into different steps
    return Sequential([Conv2D(2, 3, padding=1, use_bias=False, input_shape=(1, 6, 6)), BatchNorm(), MaxPool2D(2),
                       Flatten(), Dense(3)])


def data(n: int = 4):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 1, 6, 6)).astype(np.float32), np.arange(n) % 3


def backends_of(model) -> set[str]:
    out = set()
    stack = [model]
    while stack:
        layer = stack.pop()
        out.add(layer.backend.name)
        stack.extend(layer.children.values())
    return out


# -- to(): a bare forward/backward/step runs on the new backend ------------------------------------
def test_bare_forward_backward_after_to_runs_on_the_new_backend_and_back(monkeypatch, emulated, numpy_be):
    x, _ = data()
    model = conv_model()
    assert model.backend is numpy_be  # built under the tests' default use_backend("numpy")
    model.forward(x, training=True)
    emu_calls, np_calls = count_ops(monkeypatch, emulated, KERNEL_OPS), count_ops(monkeypatch, numpy_be)

    assert model.to("emulated") is model
    assert backends_of(model) == {"emulated"}
    out = model.forward(x, training=True)  # bare: no use_backend block anywhere
    model.backward(np.ones_like(to_host(out)))
    assert all(emu_calls[op] >= 1 for op in KERNEL_OPS if op != "adam_step_device"), emu_calls
    assert sum(np_calls.values()) == 0, np_calls

    emu_calls.clear()
    model.to("numpy")
    assert backends_of(model) == {"numpy"}
    out = model.forward(x, training=True)
    model.backward(np.ones_like(out))
    assert all(np_calls[op] >= 1 for op in LAYER_OPS if op != "adam_step_device"), np_calls
    assert sum(emu_calls.values()) == 0, emu_calls


@pytest.mark.parametrize("target", ["emulated", "numpy"])
def test_optimizer_state_moves_and_steps_on_the_new_backend(monkeypatch, emulated, numpy_be, target):
    backend = {"emulated": emulated, "numpy": numpy_be}[target]
    other = numpy_be if backend is emulated else emulated
    x, y = data()
    with gpunn.use_backend(other.name):
        model = conv_model()
        model.compile(loss="softmax_cross_entropy", optimizer="adam", lr=0.01)
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    opt = model.optimizer
    assert opt.backend is other
    before = opt.state_dict()
    weights = model.state_dict()

    model.to(target)
    assert model.optimizer is opt and opt.backend is backend  # the same optimizer, re-placed
    after = opt.state_dict()
    assert after["step"] == before["step"] == 2
    for k, v in before["state"].items():
        np.testing.assert_array_equal(after["state"][k], v, err_msg=k)
    assert all(backend.is_native(v) for v in opt._state.values())
    assert all(p.data.base is opt.flat_data for p in opt.params)  # the parameters are views again
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, weights[k], err_msg=k)

    calls, other_calls = count_ops(monkeypatch, backend), count_ops(monkeypatch, other)
    out = model.forward(x, training=True)  # a bare step, outside fit
    model.backward(np.ones_like(to_host(out)))
    opt.step()
    assert calls["adam_step_device"] == 1 and sum(other_calls.values()) == 0, (calls, other_calls)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert calls["adam_step_device"] == 2 and sum(other_calls.values()) == 0, (calls, other_calls)
    assert opt.step_count == 4


def test_moved_training_matches_training_in_place(emulated):
    """Resuming on another backend after to() continues exactly (moments, step count, weights)."""
    x, y = data(8)
    runs = []
    for move in (False, True):
        gpunn.manual_seed(0)
        model = conv_model()
        model.compile(loss="softmax_cross_entropy", optimizer="adam", lr=0.01)
        model.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
        if move:
            model.to("emulated")
        model.fit(x, y, epochs=2, initial_epoch=1, batch_size=4, verbose=0, shuffle=False)
        runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_allclose(runs[1][k], runs[0][k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_an_optimizer_over_a_model_follows_it(monkeypatch, emulated):
    """An Optimizer(model) that is not the compiled one moves with the model at its next use."""
    x, _ = data()
    model = conv_model()
    opt = Adam(model, lr=0.01)
    model.forward(x, training=True)
    model.backward(np.ones((4, 3), np.float32))
    opt.step()
    moments = {k: v.copy() for k, v in opt.state_dict()["state"].items()}
    model.to("emulated")
    calls = count_ops(monkeypatch, emulated, ("adam_step_device",))
    model.zero_grad()
    out = model.forward(x, training=True)
    model.backward(np.ones_like(out))
    assert opt.backend.name == "numpy"  # not yet used since the move
    np.testing.assert_array_equal(opt.state_dict()["state"]["exp_avg"], moments["exp_avg"])
    assert opt.backend is emulated
    opt.step()
    assert calls["adam_step_device"] == 1 and opt.step_count == 2


# -- use_backend chooses where new objects are built -----------------------------------------------
def test_objects_built_under_use_backend_keep_it_outside_the_block(monkeypatch, emulated):
    x, y = data()
    with gpunn.use_backend("emulated"):
        model = conv_model()
        model.compile(loss="softmax_cross_entropy", optimizer="adam")
    assert gpunn.get_backend().name == "numpy"
    assert model.backend is emulated and model.optimizer.backend is emulated
    calls = count_ops(monkeypatch, emulated, KERNEL_OPS)
    model.train_on_batch(x, y)  # outside the block: still emulated, lazily built sublayers included
    assert backends_of(model) == {"emulated"}
    assert all(calls[op] >= 1 for op in KERNEL_OPS), calls
    with gpunn.use_backend("numpy"):  # another block current at call time does not move it either
        model.forward(x)
    assert calls["conv2d_forward"] >= 2


def test_compile_outside_the_block_builds_the_optimizer_on_the_models_backend(emulated):
    with gpunn.use_backend("emulated"):
        model = conv_model()
    model.compile(loss="mse", optimizer="sgd")  # compile under numpy
    assert model.optimizer.backend is emulated


def test_an_optimizer_over_parameters_holds_the_backend_it_was_built_on(monkeypatch, emulated):
    layer = Dense(2, input_shape=(3,))
    layer.build((3,))
    with gpunn.use_backend("emulated"):
        opt = Adam(layer.parameters(), lr=0.1)
    assert opt.backend is emulated
    calls = count_ops(monkeypatch, emulated, ("adam_step_device",))
    opt.step()
    assert calls["adam_step_device"] == 1


def test_an_optimizer_compiled_from_another_backend_is_moved_to_the_models(monkeypatch, emulated):
    x, y = data()
    model = conv_model()
    model.build((1, 6, 6))
    with gpunn.use_backend("emulated"):
        opt = Adam(model.parameters(), lr=0.01)
    model.compile(loss="softmax_cross_entropy", optimizer=opt)
    model.train_on_batch(x, y)
    assert opt.backend is model.backend and opt.backend.name == "numpy"


# -- bad input to to() -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad, error", [
    (3, TypeError), (None, TypeError), (b"numpy", TypeError), (gpunn.use_backend, TypeError),
    ("tpu", ValueError), ("nump", ValueError), ("", ValueError),
])
def test_to_with_a_bad_name_raises_naming_the_argument_and_changes_nothing(bad, error):
    x, y = data()
    model = conv_model()
    model.compile(loss="softmax_cross_entropy", optimizer="adam")
    model.train_on_batch(x, y)
    opt, backend = model.optimizer, model.backend
    arrays = [(p, p.data, p.grad) for p in model.parameters()]
    state = model.state_dict()
    with pytest.raises(error, match="to: argument 'backend_name'"):
        model.to(bad)
    assert model.backend is backend and model.optimizer is opt and opt.backend is backend
    assert all(p.data is d and p.grad is g for p, d, g in arrays)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])


def test_to_a_backend_that_cannot_run_here_raises_and_changes_nothing():
    from gpunn.backend import cuda_status
    if cuda_status().usable:
        pytest.skip("CuPy runs here")
    model = conv_model()
    with pytest.raises(gpunn.BackendUnavailableError, match="argument 'backend_name'='cupy'"):
        model.to("cupy")
    assert backends_of(model) == {"numpy"}


# -- losses, regularizers and constraints run where the model does ---------------------------------
class RecordingMSE(MSE):
    """MSE that records which backend is current when it runs."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def forward(self, pred, target):
        self.seen.append(gpunn.get_backend().name)
        return super().forward(pred, target)


class RecordingL2(L2):
    def __init__(self):
        super().__init__(0.01)
        self.seen: list[str] = []

    def penalty(self, w):
        self.seen.append(gpunn.get_backend().name)
        return super().penalty(w)

    def gradient(self, w):
        self.seen.append(gpunn.get_backend().name)
        return super().gradient(w)


def test_loss_regularizer_and_constraint_run_on_the_models_backend(emulated):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32)
    reg, seen_constraint = RecordingL2(), []

    def constraint(w):
        seen_constraint.append(gpunn.get_backend().name)
        return w
    with gpunn.use_backend("emulated"):
        model = Sequential([Dense(2, input_shape=(4,), kernel_regularizer=reg, kernel_constraint=constraint)])
    loss = RecordingMSE()
    model.compile(loss=loss, optimizer="sgd")
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.evaluate(x, y)
    assert set(loss.seen) == set(reg.seen) == set(seen_constraint) == {"emulated"}
    reg.seen.clear()
    model.regularization_loss()  # called by hand, under numpy
    model.forward(x)
    model.backward(np.ones((8, 2), np.float32))
    assert set(reg.seen) == {"emulated"}


def test_a_loss_called_by_hand_takes_any_backends_arrays():
    pred, target = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    assert SoftmaxCrossEntropy()(pred, np.array([0, 1])) > 0
    assert MSE()(pred.tolist(), target) == pytest.approx(1.0)


# -- checkpoints, state dicts, ensembles -----------------------------------------------------------
def test_state_dict_and_checkpoints_cross_backends(tmp_path, emulated):
    x, y = data()
    model = conv_model()
    model.compile(loss="softmax_cross_entropy", optimizer="adam")
    model.train_on_batch(x, y)
    model.to("emulated")
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = gpunn.io.load_model(path)  # built where use_backend says: numpy here
    assert backends_of(loaded) == {"numpy"} and loaded.optimizer.backend.name == "numpy"
    for k, v in model.state_dict().items():
        assert isinstance(v, np.ndarray)
        np.testing.assert_array_equal(loaded.state_dict()[k], v)
    with gpunn.use_backend("emulated"):
        again = gpunn.io.load_model(path)
    assert backends_of(again) == {"emulated"} and again.optimizer.backend is emulated

    target = conv_model().to("emulated")
    target.load_weights(path)  # into the model's backend, whatever is current
    assert backends_of(target) == {"emulated"}
    np.testing.assert_array_equal(target.predict(x), model.predict(x))


def test_ensemble_members_predict_on_their_own_backends(monkeypatch, emulated, numpy_be):
    x, y = data(6)
    members = []
    for name in ("numpy", "emulated"):
        with gpunn.use_backend(name):
            gpunn.manual_seed(0)
            m = conv_model()
            m.compile(loss="softmax_cross_entropy", optimizer="adam")
        members.append(m)
    np_calls, emu_calls = count_ops(monkeypatch, numpy_be), count_ops(monkeypatch, emulated, KERNEL_OPS)
    out = Ensemble(members).evaluate(x, y)
    assert 0.0 <= out["accuracy"] <= 1.0
    assert np_calls["conv2d_forward"] >= 1 and emu_calls["conv2d_forward"] >= 1


# -- to_host ---------------------------------------------------------------------------------------
class FakeDeviceArray:
    """Stands in for a CuPy array: np.asarray refuses it, .get() copies it to the host."""
    __cuda_array_interface__ = {"shape": (2,), "typestr": "<f4", "data": (0, False), "version": 3}

    def __init__(self, host):
        self.host = host
        self.shape = host.shape

    def get(self):
        return self.host.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError("implicit conversion to a NumPy array is not allowed")


def test_to_host_takes_any_backends_array(numpy_be):
    a = np.arange(3.0)
    assert to_host(a) is a
    np.testing.assert_array_equal(to_host([1, 2]), [1, 2])
    dev = FakeDeviceArray(np.array([1.0, 2.0], np.float32))
    np.testing.assert_array_equal(to_host(dev), [1.0, 2.0])
    np.testing.assert_array_equal(numpy_be.to_numpy(dev), [1.0, 2.0])
    assert to_host(np.float32(2.0)).shape == ()
    assert gpunn.backend.to_host is to_host


# -- mixed placements -----------------------------------------------------------------------------
def test_to_fixes_a_model_whose_children_were_built_on_different_backends(monkeypatch, emulated):
    x, _ = data()
    model = conv_model()
    model.forward(x)
    model.layers[0].to("emulated")  # a sublayer moved on its own: the model is mixed
    assert backends_of(model) == {"numpy", "emulated"}
    model.to("emulated")
    assert backends_of(model) == {"emulated"}
    calls = count_ops(monkeypatch, emulated, KERNEL_OPS)
    model.forward(x, training=True)
    assert calls["conv2d_forward"] == calls["maxpool2d_forward"] == calls["batchnorm_forward_train"] == 1


def test_a_layer_from_another_backend_is_adopted_by_the_model(emulated):
    with gpunn.use_backend("emulated"):
        head = Dense(3)
        head.build((18,))
        act = ReLU()
    model = Sequential([Conv2D(2, 3, padding=1, input_shape=(1, 6, 6)), MaxPool2D(2), Flatten()])
    model.add(head)
    model.add(act)
    assert backends_of(model) == {"numpy"} and head.backend.name == "numpy"
    assert all(model.backend.is_native(p.data) for p in head.parameters())
    x, _ = data()
    assert model.predict(x).shape == (4, 3)
