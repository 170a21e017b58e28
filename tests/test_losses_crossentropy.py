"""CategoricalCrossentropy and SparseCategoricalCrossentropy (Keras's names and defaults): values
against NumPy in both forms, float64 gradchecks, Keras's clip, the softmax head that trains
exactly as a logits head, label smoothing, the names, configs, bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.io.config import object_from_config, object_to_config
from gpunn.layers import Dense, Softmax
from gpunn.losses import CategoricalCrossentropy, SoftmaxCrossEntropy, SparseCategoricalCrossentropy, get_loss
from gpunn.optim import SGD
from gpunn.testing import gradcheck_loss

RNG = np.random.default_rng(0)
LOGITS = RNG.standard_normal((5, 4))
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
LABELS = np.array([0, 3, 1, 1, 2])
ONE_HOT = np.eye(4)[LABELS]
SOFT = ONE_HOT * 0.7 + 0.3 / 4


def test_keras_defaults_and_declarations():
    for cls in (CategoricalCrossentropy, SparseCategoricalCrossentropy):
        loss = cls()
        assert loss.from_logits is False and loss.output_kind == "probabilities"  # Keras: probabilities
        assert loss.eps == 1e-7 and loss.reduction == "mean"
        on_logits = cls(from_logits=True)
        assert on_logits.from_logits is True and on_logits.output_kind == "logits"
        assert cls.from_logits is False  # the instance's argument does not change the class


@pytest.mark.parametrize("target", [ONE_HOT, SOFT, LABELS], ids=["one_hot", "soft", "labels"])
def test_categorical_on_probabilities_is_minus_q_log_p(backend, target):
    q = target if target.ndim == 2 else np.eye(4)[target]
    loss = CategoricalCrossentropy()
    assert loss.forward(PROBS, target) == pytest.approx(-(q * np.log(PROBS)).sum(axis=1).mean(), rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(loss.backward()), -q / PROBS / 5, rtol=1e-12)


@pytest.mark.parametrize("target", [ONE_HOT, SOFT, LABELS], ids=["one_hot", "soft", "labels"])
def test_categorical_on_logits_is_softmax_cross_entropy(backend, target):
    ours, ref = CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), SoftmaxCrossEntropy(0.1)
    assert ours.forward(LOGITS, target) == ref.forward(LOGITS, target)
    np.testing.assert_array_equal(backend.to_numpy(ours.backward()), backend.to_numpy(ref.backward()))


def test_sparse_on_probabilities_is_minus_log_p_of_the_label(backend):
    loss = SparseCategoricalCrossentropy()
    picked = PROBS[np.arange(5), LABELS]
    assert loss.forward(PROBS, LABELS) == pytest.approx(-np.log(picked).mean(), rel=1e-12)
    expected = np.zeros((5, 4))
    expected[np.arange(5), LABELS] = -1 / picked / 5
    np.testing.assert_allclose(backend.to_numpy(loss.backward()), expected, rtol=1e-12)
    # labels of shape (N, 1), and float labels holding integers, as Keras takes them
    assert loss.forward(PROBS, LABELS[:, None].astype(np.float32)) == pytest.approx(-np.log(picked).mean(),
                                                                                     rel=1e-12)


def test_sparse_on_logits_is_softmax_cross_entropy(backend):
    ours, ref = SparseCategoricalCrossentropy(from_logits=True), SoftmaxCrossEntropy()
    assert ours.forward(LOGITS, LABELS) == pytest.approx(ref.forward(LOGITS, LABELS), rel=1e-14)
    np.testing.assert_allclose(backend.to_numpy(ours.backward()), backend.to_numpy(ref.backward()), rtol=1e-14)


@pytest.mark.parametrize("make, target", [
    (lambda: CategoricalCrossentropy(), ONE_HOT), (lambda: CategoricalCrossentropy(), SOFT),
    (lambda: CategoricalCrossentropy(label_smoothing=0.2), LABELS),
    (lambda: CategoricalCrossentropy(from_logits=True), SOFT),
    (lambda: SparseCategoricalCrossentropy(), LABELS),
    (lambda: SparseCategoricalCrossentropy(from_logits=True), LABELS),
    (lambda: CategoricalCrossentropy(reduction="sum"), ONE_HOT),
], ids=["cat_onehot", "cat_soft", "cat_smooth", "cat_logits", "sparse", "sparse_logits", "cat_sum"])
def test_gradcheck(backend, make, target):
    loss = make()
    pred = LOGITS if loss.from_logits else PROBS  # probabilities stay well inside (eps, 1 - eps)
    assert gradcheck_loss(loss, pred, target)


@pytest.mark.parametrize("loss", [CategoricalCrossentropy(reduction="none"),
                                  SparseCategoricalCrossentropy(reduction="none")])
def test_reduction_none(backend, loss):
    per = backend.to_numpy(loss.forward(PROBS, LABELS))
    np.testing.assert_allclose(per, -np.log(PROBS[np.arange(5), LABELS]), rtol=1e-12)
    dloss = np.arange(1.0, 6.0)
    expected = np.zeros((5, 4))
    expected[np.arange(5), LABELS] = -dloss / PROBS[np.arange(5), LABELS]
    np.testing.assert_allclose(backend.to_numpy(loss.backward(backend.asarray(dloss))), expected, rtol=1e-12)


def test_keras_clip_bounds_the_loss_and_stops_the_gradient(backend):
    """Probabilities are clipped to [eps, 1 - eps] as Keras does: a zero probability on the label
    gives -log(eps), not inf, and no gradient where the clip is active."""
    probs = np.array([[0.0, 1.0], [0.5, 0.5]])
    for loss in (CategoricalCrossentropy(), SparseCategoricalCrossentropy()):
        value = loss.forward(probs, np.array([0, 1]))
        assert value == pytest.approx((-np.log(1e-7) - np.log(0.5)) / 2, rel=1e-12)
        grad = backend.to_numpy(loss.backward())
        np.testing.assert_array_equal(grad[0], [0.0, 0.0])
        np.testing.assert_allclose(grad[1], [0.0, -1 / 0.5 / 2], rtol=1e-12)


@pytest.mark.parametrize("loss", [CategoricalCrossentropy(), SparseCategoricalCrossentropy()])
def test_through_a_softmax_layer_the_gradient_is_p_minus_q(backend, loss):
    """What makes a softmax head train as a logits head: Softmax.backward(-q/p) = p - q, to float32
    rounding (a layer computes in float32 by default)."""
    softmax = Softmax()
    x = backend.asarray(LOGITS.astype(np.float32))
    loss.forward(softmax.forward(x), LABELS)
    dx = backend.to_numpy(softmax.backward(loss.backward()))
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, (PROBS - ONE_HOT) / 5, rtol=1e-5, atol=1e-7)


def test_a_softmax_head_trains_as_the_logits_head(backend):
    """Keras's MNIST example, Dense(10, activation="softmax") with its sparse cross-entropy, against
    gpunn.s Dense(10) with SoftmaxCrossEntropy: the same weights after 20 SGD steps, to float32 rounding."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 12)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    runs = []
    for activation, loss in ((None, SoftmaxCrossEntropy()), ("softmax", SparseCategoricalCrossentropy())):
        gpunn.manual_seed(0)
        model = Sequential([Dense(16, activation="relu", input_shape=(12,)), Dense(10, activation=activation)])
        model.compile(loss=loss, optimizer=SGD(learning_rate=0.5).bind(model))
        model.fit(x, y, epochs=5, batch_size=16, verbose=0, shuffle=False)
        runs.append(np.concatenate([backend.to_numpy(p.data).ravel() for p in model.parameters()]))
    np.testing.assert_allclose(runs[1], runs[0], rtol=0, atol=1e-6)  # a few float32 ulps apart


def test_names_take_keras_defaults():
    for name, cls in (("categorical_crossentropy", CategoricalCrossentropy),
                      ("sparse_categorical_crossentropy", SparseCategoricalCrossentropy)):
        loss = get_loss(name)
        assert type(loss) is cls and loss.from_logits is False
    assert type(get_loss("softmax_cross_entropy")) is SoftmaxCrossEntropy  # the existing names keep working
    assert type(get_loss("cross_entropy")) is SoftmaxCrossEntropy


@pytest.mark.parametrize("loss", [CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, eps=1e-6,
                                                          reduction="sum"),
                                  SparseCategoricalCrossentropy(from_logits=True, eps=1e-5)])
def test_config_round_trip(loss):
    again = object_from_config(object_to_config(loss))
    assert type(again) is type(loss) and vars(again).keys() == vars(loss).keys()
    for key in ("from_logits", "output_kind", "eps", "reduction"):
        assert getattr(again, key) == getattr(loss, key)


@pytest.mark.parametrize("make, words", [
    (lambda: CategoricalCrossentropy(label_smoothing=1.5), r"^CategoricalCrossentropy: argument 'label_smoothing' "
                                                           r"must be in \[0, 1\]"),
    (lambda: CategoricalCrossentropy(eps=0.0), r"^CategoricalCrossentropy: argument 'eps' must be in \(0, 0.5\)"),
    (lambda: SparseCategoricalCrossentropy(eps=0.5), r"^SparseCategoricalCrossentropy: argument 'eps'"),
    (lambda: SparseCategoricalCrossentropy(reduction="avg"), "argument 'reduction' must be one of"),
])
def test_bad_constructor_arguments(make, words):
    with pytest.raises(ValueError, match=words):
        make()


@pytest.mark.parametrize("loss, pred, target, words", [
    (CategoricalCrossentropy(), LOGITS, LABELS,
     r"^CategoricalCrossentropy.forward: argument 'pred' must hold probabilities in \[0, 1\] with "
     r"from_logits=False, got min .*; an output without a softmax or sigmoid is logits: pass from_logits=True"),
    (SparseCategoricalCrossentropy(), PROBS * np.nan, LABELS, "must hold probabilities in .*got no finite value"),
    (SparseCategoricalCrossentropy(), PROBS, ONE_HOT,
     r"argument 'target' must be 5 integer class labels, shape \(5,\) or \(5, 1\).*one-hot rows go to "
     r"CategoricalCrossentropy"),
    (SparseCategoricalCrossentropy(), PROBS, LABELS[:3], "must be 5 integer class labels"),
    (SparseCategoricalCrossentropy(), PROBS, LABELS + 4, r"labels outside \[0, 4\)"),
    (SparseCategoricalCrossentropy(), PROBS, LABELS + 0.5, "non-integer class labels"),
    (CategoricalCrossentropy(), PROBS, ONE_HOT * 2, "do not sum to 1"),
    (CategoricalCrossentropy(), PROBS, np.ones((5, 3)) / 3, "must be labels of shape"),
    (CategoricalCrossentropy(), PROBS[0], LABELS, r"argument 'pred' must have 2 dimensions \(N, classes\)"),
])
def test_bad_forward_inputs(loss, pred, target, words):
    with pytest.raises(ValueError, match=words):
        loss.forward(pred, target)
