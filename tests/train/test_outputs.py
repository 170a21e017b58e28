"""compile's per-output settings (gpunn/train/outputs.py) and the per-batch step: one loss, a list
or a dict with loss_weights, metrics per output, Keras 2 log names, sample-weighted losses, and
the errors for settings that do not fit the outputs."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Input, Model
from gpunn.layers import Dense
from gpunn.losses import MSE, SoftmaxCrossEntropy, SumSquaredError
from gpunn.train import outputs


def two_heads() -> Model:
    x = Input((4,), name="x")
    h = Dense(6, activation="tanh", name="trunk")(x)
    return Model(x, [Dense(3, name="cls")(h), Dense(1, name="reg")(h)], name="heads")


def data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, rng.integers(0, 3, n), rng.standard_normal((n, 1)).astype(np.float32)


def test_one_loss_is_copied_to_every_output():
    model = two_heads()
    loss = MSE()
    model.compile(loss=loss, optimizer="sgd")
    assert isinstance(model.loss, list) and len(model.loss) == 2
    assert model.loss[0] is loss and model.loss[1] is not loss and isinstance(model.loss[1], MSE)


def test_logs_total_and_per_output_and_metric_names():
    model = two_heads()
    model.compile(loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"}, optimizer="sgd",
                  metrics={"cls": "accuracy", "reg": ["mae"]}, loss_weights={"reg": 0.5})
    x, yc, yr = data()
    logs = model.test_on_batch(x, [yc, yr], return_dict=True)
    assert list(logs) == ["loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"]
    assert logs["loss"] == pytest.approx(logs["cls_loss"] + 0.5 * logs["reg_loss"], rel=1e-6)
    cls, reg = model.predict(x)
    assert logs["reg_loss"] == pytest.approx(float(((reg - yr) ** 2).mean()), rel=1e-5)
    assert logs["cls_accuracy"] == pytest.approx(float((cls.argmax(1) == yc).mean()))
    # Keras's order without return_dict: the total, each output's loss, then the metrics
    assert model.test_on_batch(x, {"reg": yr, "cls": yc}) == pytest.approx(list(logs.values()), rel=1e-6)
    assert [n for n, _ in model.metric_fns] == ["cls_accuracy", "reg_mae"]


def test_a_metric_list_applies_to_every_output():
    model = two_heads()
    model.compile(loss="mse", optimizer="sgd", metrics=["mae"])
    assert [n for n, _ in model.metric_fns] == ["cls_mae", "reg_mae"]


def test_an_output_without_a_loss_is_not_trained():
    model = two_heads()
    model.compile(loss={"reg": "mse"}, optimizer="sgd", lr=0.1)
    x, _, yr = data()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    logs = model.train_on_batch(x, {"reg": yr}, return_dict=True)
    assert set(logs) == {"loss", "reg_loss"}
    after = model.state_dict()
    assert np.array_equal(before["cls.weight"], after["cls.weight"])  # no gradient reached it
    assert not np.array_equal(before["reg.weight"], after["reg.weight"])
    assert not np.array_equal(before["trunk.weight"], after["trunk.weight"])


def test_loss_weights_scale_the_gradients():
    x, yc, yr = data()
    grads = {}
    for w in (1.0, 3.0):
        gpunn.manual_seed(0)
        model = two_heads()
        model.compile(loss=[None, "mse"], optimizer="sgd", loss_weights=[1.0, w])
        model.train_on_batch(x, [yc, yr])
        grads[w] = model.get_layer("reg").params["weight"].grad.copy()
    np.testing.assert_allclose(grads[3.0], 3 * grads[1.0], rtol=1e-5)


def test_softmax_heads_get_the_loss_on_probabilities():
    x = Input((4,))
    h = Dense(3, activation="softmax", name="probs")(x)
    model = Model(x, [h, Dense(3, name="logits")(x)])
    model.compile(loss="categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    assert model.loss[0].from_logits is False and model.loss[1].from_logits is True


def test_one_output_keeps_todays_names():
    x = Input((4,))
    model = Model(x, Dense(3, name="head")(x))
    model.compile(loss={"head": "sparse_categorical_crossentropy"}, optimizer="sgd", metrics={"head": "accuracy"})
    xb, yc, _ = data()
    assert list(model.test_on_batch(xb, yc, return_dict=True)) == ["loss", "accuracy"]
    assert isinstance(model.loss, SoftmaxCrossEntropy) or model.loss.from_logits


def test_sample_weights_give_the_weighted_mean():
    x, yc, yr = data()
    model = two_heads()
    model.compile(loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"}, optimizer="sgd")
    full = model.test_on_batch(x, [yc, yr], return_dict=True)
    ones = model.test_on_batch(x, [yc, yr], sample_weight=np.full(12, 2.0), return_dict=True)
    assert ones == pytest.approx(full, rel=1e-6)  # equal weights: the unweighted mean
    w = np.r_[np.ones(5), np.zeros(7)]
    part = model.test_on_batch(x, [yc, yr], sample_weight=w, return_dict=True)
    first = model.test_on_batch(x[:5], [yc[:5], yr[:5]], return_dict=True)
    assert part == pytest.approx(first, rel=1e-5)  # weight 0 drops a sample from the loss ...
    assert part["cls_loss"] != pytest.approx(full["cls_loss"], rel=1e-3)


def test_sample_weighted_gradient_matches_the_subset(backend):
    x, yc, yr = data()
    w = np.r_[np.ones(5), np.zeros(7)]
    grads = []
    for xs, ys, sw in ((x, [yc, yr], w), (x[:5], [yc[:5], yr[:5]], None)):
        gpunn.manual_seed(0)
        model = two_heads()
        model.compile(loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"}, optimizer="sgd", lr=0.0)
        model.train_on_batch(xs, ys, sample_weight=sw)
        grads.append({k: backend.to_numpy(p.grad).copy() for k, p in model.named_parameters()})
    for k in grads[0]:
        np.testing.assert_allclose(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_sample_weights_on_a_sum_loss_weight_each_term():
    spec = outputs.OutputSpec("out", SumSquaredError(), 1.0, [], [])
    pred = np.array([[1.0], [2.0], [3.0]], np.float32)
    target = np.zeros((3, 1), np.float32)
    value, grad = outputs.batch_loss(spec, pred, target, np.array([1.0, 0.0, 2.0]), True, "t")
    assert value == pytest.approx(0.5 * 1 + 2 * 0.5 * 9)
    np.testing.assert_allclose(grad, [[1.0], [0.0], [6.0]])


def test_all_zero_weights_contribute_nothing():
    spec = outputs.OutputSpec("out", MSE(), 1.0, [], [])
    value, grad = outputs.batch_loss(spec, np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32),
                                     np.zeros(2), True, "t")
    assert value == 0.0 and not np.asarray(grad).any()


def test_subclassed_outputs_are_resolved_at_the_first_batch():
    class Net(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = Dense(3), Dense(1)

        def call(self, x, training=False):
            return [self.a(x), self.b(x)]

    net = Net()
    net.compile(loss=["categorical_crossentropy", "mse"], optimizer="sgd", metrics=["mse"])
    assert net.metric_fns == ()
    x, yc, yr = data()
    logs = net.train_on_batch(x, [np.eye(3, dtype=np.float32)[yc], yr], return_dict=True)
    assert list(logs) == ["loss", "output_1_loss", "output_2_loss", "output_1_mse", "output_2_mse"]
    assert net.output_names == ["output_1", "output_2"]


@pytest.mark.parametrize("kwargs, err, match", [
    ({"loss": None}, ValueError, "argument 'loss' is required"),
    ({"loss": "nope"}, ValueError, "compile: argument 'loss'"),
    ({"loss": ["mse"]}, ValueError, r"argument 'loss' must have one entry per output \(2"),
    ({"loss": {"other": "mse"}}, ValueError, r"keys \['other'\] that are not output names"),
    ({"loss": [None, None]}, ValueError, "gives no output a loss"),
    ({"loss": MSE(reduction="none")}, ValueError, "reduction='none'"),
    ({"loss": "mse", "loss_weights": [1.0, -1.0]}, ValueError, r"argument 'loss_weights\['reg'\]' must be"),
    ({"loss": "mse", "loss_weights": {"x": 1.0}}, ValueError, "keys \\['x'\\] that are not output names"),
    ({"loss": "mse", "loss_weights": 2.0}, TypeError, "'loss_weights' must be a list or a dict"),
    ({"loss": "mse", "loss_weights": [1.0, "a"]}, TypeError, "loss_weights"),
    ({"loss": "mse", "metrics": {"x": "mae"}}, ValueError, "argument 'metrics' has keys"),
    ({"loss": "mse", "metrics": ["nope"]}, ValueError, "compile:"),
    ({"loss": "mse", "metrics": ["mae", "mae"]}, ValueError, "duplicate names"),
])
def test_bad_compile_settings(kwargs, err, match):
    with pytest.raises(err, match=match):
        two_heads().compile(optimizer="sgd", **kwargs)


def test_bad_targets():
    model = two_heads()
    model.compile(loss="mse", optimizer="sgd")
    x, yc, yr = data()
    with pytest.raises(ValueError, match=r"argument 'y' must hold one array per output \(2"):
        model.train_on_batch(x, yr)
    with pytest.raises(ValueError, match=r"keys \['nope'\] that are not output names"):
        model.train_on_batch(x, {"nope": yr, "reg": yr})
    with pytest.raises(ValueError, match="output 'cls' has a loss but no target was given"):
        model.train_on_batch(x, {"reg": yr})
    with pytest.raises(ValueError, match=r"arguments 'x' and 'y\[1\]' must have the same number of samples"):
        model.train_on_batch(x, [yr, yr[:3]])
    with pytest.raises(ValueError, match=r"argument 'sample_weight' must have shape \(12,\)"):
        model.train_on_batch(x, [yr, yr], sample_weight=np.ones(3))
