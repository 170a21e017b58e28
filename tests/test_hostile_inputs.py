"""Hostile inputs to the public API: each case is an attack that used to be accepted silently or
to fail deep inside with a raw error, and must now get a clear ValueError/TypeError naming the
function, the argument and what was expected (or, for casts, just work)."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.data.loader import DataLoader
from gpunn import Sequential
from gpunn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, LogSoftmax, ReLU, Softmax, Tanh
from gpunn.losses import SoftmaxCrossEntropy
from gpunn.optim import SGD, Adam
from gpunn.parameter import Parameter
from gpunn.testing import gradcheck


def _data(n: int, features: int = 3, seed: int = 0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(dtype), rng.integers(0, 2, size=n)


def _model(*layers, **kwargs) -> Sequential:
    model = Sequential(list(layers), **kwargs)
    model.compile(loss="softmax_cross_entropy", optimizer="adam")
    return model


# -- 1. a declared input_shape is a contract ------------------------------------------------------
def test_declared_input_shape_is_not_overridden_by_the_first_batch(backend):
    model = _model(Flatten(input_shape=(1, 4, 4)), Dense(2))
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"Flatten.forward: argument 'x'.*\(3, 8, 8\).*input_shape=\(1, 4, 4\)"):
        model.fit(x, np.zeros(8, np.int64), verbose=0)
    assert not model.built and model.parameters() == []  # refused before anything was built
    model.fit(x[:, :1, :4, :4].copy(), np.zeros(8, np.int64), verbose=0)  # the declared shape trains
    assert model.input_shape == (1, 4, 4)


def test_declared_input_shape_holds_after_build_for_shape_free_layers(backend):
    # ReLU and Conv2D both accept any H, W once built: only the declaration can refuse (3, 6, 6)
    model = Sequential([ReLU(input_shape=(3, 4, 4)), Conv2D(2, 3)])
    model.forward(np.ones((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"ReLU.forward: .*\(3, 6, 6\).*input_shape=\(3, 4, 4\)"):
        model.forward(np.ones((2, 3, 6, 6), np.float32))


def test_build_refuses_a_shape_other_than_the_declared_one():
    with pytest.raises(ValueError, match=r"Dense.build: argument 'input_shape' \(5,\) differs from the declared "
                                         r"input_shape=\(4,\)"):
        Dense(2, input_shape=(4,)).build((5,))


# -- 2. the model's dtype is float32 unless asked, never the data's --------------------------------
def test_float16_data_trains_a_float32_model(backend):
    x, y = _data(64, dtype=np.float16)
    model = _model(Dense(8, activation="relu"), Dense(2))
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert model.dtype == np.float32
    assert {p.data.dtype for p in model.parameters()} == {np.dtype(np.float32)}
    assert np.isfinite(history.history["loss"]).all()
    assert model.predict(x).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_inputs_are_cast_to_the_layer_dtype(backend, dtype):
    layer = Dense(3, activation="tanh")
    y = layer.forward(np.ones((2, 4), dtype))
    assert y.dtype == np.float32 and layer.params["weight"].data.dtype == np.float32


def test_an_explicit_float64_model_stays_float64(backend):
    x, y = _data(32)  # float32 data into a float64 model: cast up
    model = _model(Dense(4, activation="tanh"), Dense(2), dtype="float64")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert model.dtype == np.float64
    assert {p.data.dtype for p in model.parameters()} == {np.dtype(np.float64)}
    assert model.predict(x).dtype == np.float64  # the activation inherited float64 too


def test_a_dtype_set_before_build_wins(backend):
    # how gpunn.io.checkpoint rebuilds a saved model
    model = Sequential([Dense(2, input_shape=(3,)), BatchNorm()])
    model._dtype = np.dtype(np.float64)
    model.build((3,))
    assert {p.data.dtype for p in model.parameters()} == {np.dtype(np.float64)}
    assert model.layers[1].buffers["running_mean"].dtype == np.float64


def test_gradcheck_still_runs_in_float64(backend):
    layer = Dense(3, activation="tanh")
    assert gradcheck(layer, np.random.default_rng(0).standard_normal((2, 4)))
    assert layer.params["weight"].data.dtype == np.float64


def test_float16_models_are_refused():
    with pytest.raises(ValueError, match=r"Sequential: argument 'dtype' must be float32 or float64, got float16"):
        Sequential([Dense(2)], dtype="float16")
    with pytest.raises(ValueError, match=r"Dense.to_dtype: argument 'dtype' must be float32 or float64"):
        Dense(2).to_dtype(np.float16)
    with pytest.raises(TypeError, match=r"Sequential: argument 'dtype' must be float32 or float64, got 'int32'"):
        Sequential([Dense(2)], dtype="int32")


# -- 3. non-finite x ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_fit_evaluate_predict_reject_non_finite_x(backend, bad):
    x, y = _data(8)
    x[3, 1] = bad
    x = backend.asarray(x)  # an array of the backend under test, not only np.ndarray
    model = _model(Dense(2))
    for call in (lambda: model.fit(x, y, verbose=0), lambda: model.evaluate(x, y), lambda: model.predict(x)):
        with pytest.raises(ValueError, match=r"argument 'x' contains non-finite values"):
            call()
    assert not model.built


# -- 4. targets of softmax cross-entropy ---------------------------------------------------------
@pytest.mark.parametrize("target, match", [
    ([[1.5, -0.5, 0.0], [0.0, 1.0, 0.0]], "negative entries"),
    ([[0.5, 0.5, 0.5], [0.0, 1.0, 0.0]], r"do not sum to 1 .*row 0 sums to 1.5"),
    ([[0.2, 0.2, 0.2], [0.0, 0.0, 0.0]], "do not sum to 1"),
    ([[np.inf, 0.0, 0.0], [0.0, 1.0, 0.0]], "Inf"),
    ([0, 3], r"labels outside \[0, 3\)"),
    ([-1, 0], r"labels outside \[0, 3\)"),
    ([0.0, 1e30], r"labels outside \[0, 3\)"),
    ([0.0, np.inf], "non-integer class labels"),
])
def test_softmax_cross_entropy_checks_its_targets(backend, target, match):
    pred = backend.asarray(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=rf"SoftmaxCrossEntropy.forward: argument 'target' .*{match}"):
        SoftmaxCrossEntropy().forward(pred, np.asarray(target))


def test_softmax_cross_entropy_accepts_proper_soft_targets(backend):
    pred = backend.asarray(np.zeros((2, 3), np.float32))
    soft = np.float32([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]])  # float32 rounding in the row sums is fine
    assert SoftmaxCrossEntropy().forward(pred, soft) == pytest.approx(np.log(3), rel=1e-6)
    assert SoftmaxCrossEntropy().forward(pred, np.int64([[0, 1, 0], [1, 0, 0]])) == pytest.approx(np.log(3))


# -- 5. Softmax's axis ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Softmax, LogSoftmax])
@pytest.mark.parametrize("axis", ["1", 1.0, True, None])
def test_softmax_axis_must_be_an_int(cls, axis):
    with pytest.raises(TypeError, match=rf"{cls.__name__}: argument 'axis' must be an int"):
        cls(axis=axis)


@pytest.mark.parametrize("cls", [Softmax, LogSoftmax])
@pytest.mark.parametrize("axis", [5, 2, -3])
def test_softmax_axis_is_checked_against_the_input(backend, cls, axis):
    with pytest.raises(ValueError, match=rf"{cls.__name__}.forward: argument 'axis'={axis} is out of range for "
                                         r"argument 'x' of shape \(2, 3\)"):
        cls(axis=axis).forward(np.ones((2, 3), np.float32))
    assert cls(axis=-1).forward(np.ones((2, 3), np.float32)).shape == (2, 3)


# -- 6. dy must have the forward output's shape --------------------------------------------------
@pytest.mark.parametrize("make, x_shape, y_shape, bad", [
    (lambda: Dense(3), (4, 2), (4, 3), (4, 5)),
    (lambda: Dense(3), (4, 2), (4, 3), (4, 1)),  # would broadcast silently
    (lambda: Tanh(), (4, 2), (4, 2), (4, 1)),
    (lambda: Flatten(), (2, 2, 3), (2, 6), (2, 5)),
    (lambda: Conv2D(2, 3), (1, 1, 5, 5), (1, 2, 3, 3), (1, 2, 3, 4)),
    (lambda: BatchNorm(), (4, 3), (4, 3), (3, 3)),
    (lambda: Sequential([Dense(4, activation="relu"), Dense(2)]), (3, 5), (3, 2), (3, 4)),
], ids=["dense", "dense-broadcast", "tanh", "flatten", "conv2d", "batchnorm", "sequential"])
def test_backward_checks_dy_shape(backend, make, x_shape, y_shape, bad):
    layer = make()
    assert layer.forward(np.ones(x_shape, np.float32), training=True).shape == y_shape
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf"{name}.backward: argument 'dy' must have the shape of the forward output "
                                         rf"\({', '.join(map(str, y_shape))}\), got \({', '.join(map(str, bad))}\)"):
        layer.backward(backend.asarray(np.ones(bad, np.float32)))
    dx = layer.backward(np.ones(y_shape, np.float64))  # the right shape in another dtype is cast
    assert dx.shape == x_shape and dx.dtype == np.float32


def test_fused_batchnorm_relu_backward_checks_dy(backend):
    model = Sequential([Dense(3), BatchNorm(), ReLU()])
    x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    model.forward(x, training=True)  # builds; built layers fuse from the next forward on
    model.forward(x, training=True)
    assert model._absorbed == {2}  # BatchNorm ran the ReLU too
    with pytest.raises(ValueError, match=r"Sequential.backward: argument 'dy' .*\(4, 3\), got \(4, 2\)"):
        model.backward(np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm.backward: argument 'dy' .*\(4, 3\), got \(4, 1\)"):
        model.layers[1].backward(np.ones((4, 1), np.float32))


# -- 7. big-endian arrays ----------------------------------------------------------------------
BIG = np.dtype(">f4")


def test_dropout_takes_a_big_endian_input(backend):
    x = np.ones((200, 10), BIG)
    y = backend.to_numpy(Dropout(0.5).forward(x, training=True))
    assert y.dtype == np.float32 and y.dtype.isnative
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.3 < (y == 0).mean() < 0.7


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_optimizer_step_and_state_with_big_endian_arrays(backend, cls):
    def run(dtype):
        p = Parameter(np.arange(1, 5, dtype=dtype).reshape(2, 2), name="w")
        p.grad = np.full((2, 2), 0.5, dtype)
        opt = cls([p], lr=0.1)
        opt.step()
        state = opt.state_dict()
        state["state"] = {k: v.astype(dtype) for k, v in state["state"].items()}
        opt.load_state_dict(state)
        opt.step()
        return p, opt

    p_big, opt_big = run(BIG)
    p_ref, _ = run(np.float32)
    assert p_big.data.dtype == np.float32 and p_big.data.dtype.isnative
    assert opt_big.flat_data.dtype.isnative
    np.testing.assert_array_equal(backend.to_numpy(p_big.data), backend.to_numpy(p_ref.data))


def test_big_endian_weights_data_and_targets(backend):
    model = _model(Dense(2, input_shape=(3,)))
    model.build((3,))
    state = {k: v.astype(BIG) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    assert all(p.data.dtype.isnative for p in model.parameters())
    np.testing.assert_array_equal(model.state_dict()["0.weight"], state["0.weight"])
    x, y = _data(16)
    history = model.fit(x.astype(BIG), y.astype(">i8"), epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    loader = DataLoader(x.astype(BIG), y.astype(">i8"), batch_size=4, prefetch=0)
    xb, yb = next(iter(loader))
    assert xb.dtype.isnative and yb.dtype.isnative


# -- 8. one-shot iterators ---------------------------------------------------------------------
def _batches(n: int = 3):
    x, y = _data(4)
    return ((x, y) for _ in range(n))


def test_fit_refuses_a_generator_for_several_epochs_before_training():
    model = _model(Dense(2))
    with pytest.raises(ValueError, match=r"fit: argument 'x' is a one-shot iterator \(generator\), exhausted after "
                                         r"one pass, but the fit needs 3 passes.*DataLoader"):
        model.fit(_batches(), epochs=3, verbose=0)
    assert not model.built  # no epoch of work lost
    with pytest.raises(ValueError, match=r"argument 'validation_data' is a one-shot iterator"):
        model.fit([(_data(4)[0], _data(4)[1])], epochs=2, validation_data=_batches(), verbose=0)
    model.fit(_batches(), epochs=1, verbose=0)  # one pass is fine
    model.fit(_batches(), epochs=3, initial_epoch=2, verbose=0)


def test_fit_says_an_exhausted_iterator_is_exhausted():
    model = _model(Dense(2))
    gen = _batches()
    list(gen)
    with pytest.raises(ValueError, match=r"fit: the training data yielded no batches in epoch 1; it is a one-shot "
                                         r"iterator \(generator\)"):
        model.fit(gen, epochs=1, verbose=0)


def test_fit_says_a_reiterable_that_does_not_restart_is_exhausted():
    class SameIterator:
        def __init__(self):
            self.it = _batches()

        def __iter__(self):
            return self.it  # every "pass" continues the same generator

    with pytest.raises(ValueError, match=r"yielded no batches in epoch 2; its __iter__ returned an exhausted"):
        _model(Dense(2)).fit(SameIterator(), epochs=2, verbose=0)


# -- 9. BatchNorm and a last batch of one sample --------------------------------------------------
def test_fit_refuses_a_last_batch_of_one_sample_for_batchnorm_up_front():
    x, y = _data(9)
    model = _model(Dense(4), BatchNorm(), Dense(2))
    with pytest.raises(ValueError, match=r"fit: the last batch of every epoch would hold 1 sample \(9 samples, "
                                         r"batch_size=4\).*BatchNorm 'BatchNorm'.*e\.g\. 3.*drop_last=True"):
        model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert model.optimizer.step_count == 0  # nothing trained, nothing lost
    with pytest.raises(ValueError, match=r"every batch would hold 1 sample"):
        model.fit(x, y, batch_size=1, verbose=0)
    with pytest.raises(ValueError, match=r"\(9 samples, batch_size=2\)"):
        model.fit(DataLoader(x, y, batch_size=2, prefetch=0), verbose=0)
    model.fit(DataLoader(x, y, batch_size=2, drop_last=True, prefetch=0), verbose=0)
    model.fit(x, y, batch_size=3, verbose=0)
    model.freeze(2)  # a frozen BatchNorm uses its running statistics: one sample is fine
    model.fit(x, y, batch_size=4, verbose=0)


def test_one_sample_batches_are_fine_when_batchnorm_sees_several_values_per_channel():
    x = np.random.default_rng(0).standard_normal((5, 1, 4, 4)).astype(np.float32)
    model = _model(Conv2D(2, 3), BatchNorm(), Flatten(), Dense(2))
    model.fit(x, np.zeros(5, np.int64), batch_size=2, verbose=0)  # the last (1, 2, 2, 2) batch has 4 values


def test_a_one_sample_batch_from_an_iterable_says_how_to_avoid_it():
    x, y = _data(5)
    model = _model(Dense(4), BatchNorm(), Dense(2))
    with pytest.raises(ValueError, match=r"more than one value per channel.*drop_last=True.*n % batch_size != 1"):
        model.fit([(x[:4], y[:4]), (x[4:], y[4:])], verbose=0)
