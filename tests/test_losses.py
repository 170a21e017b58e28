"""SoftmaxCrossEntropy and MSE: values, gradients in float64, target forms, bad inputs; what every
loss declares it takes (from_logits) and its argument checks."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn.losses as losses_module
from gpunn.losses import MSE, BinaryCrossEntropy, Loss, SoftmaxCrossEntropy, get_loss
from gpunn.testing import gradcheck_loss


def test_softmax_cross_entropy_value_and_target_forms(backend):
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]])
    labels = np.array([0, 1])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = -np.log(p[[0, 1], labels]).mean()
    loss = SoftmaxCrossEntropy()
    assert loss.forward(logits, labels) == pytest.approx(expected, rel=1e-12)
    assert loss.forward(logits, labels.astype(np.float32)) == pytest.approx(expected, rel=1e-12)
    assert loss.forward(logits, np.eye(3)[labels]) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(loss.backward()), (p - np.eye(3)[labels]) / 2, rtol=1e-12)


def test_softmax_cross_entropy_is_stable_for_huge_logits(backend):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], np.float32)
    loss = SoftmaxCrossEntropy()
    value = loss.forward(logits, np.array([0, 2]))
    assert np.isfinite(value) and value == pytest.approx(np.log(2) / 2, rel=1e-5)
    assert np.isfinite(backend.to_numpy(loss.backward())).all()


@pytest.mark.parametrize("target", [np.array([2, 0, 1, 1]), np.eye(3)[[2, 0, 1, 1]] * 0.9 + 0.1 / 3])
def test_softmax_cross_entropy_gradcheck(backend, target):
    assert gradcheck_loss(SoftmaxCrossEntropy(), np.random.default_rng(0).standard_normal((4, 3)), target)


def test_mse_matches_pytorch_mean_and_gradcheck(backend):
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    assert MSE().forward(pred, target) == pytest.approx(((pred - target) ** 2).mean(), rel=1e-12)
    assert gradcheck_loss(MSE(), pred, target)


@pytest.mark.parametrize("target, words", [
    (np.array([0, 3]), r"labels outside \[0, 3\)"),
    (np.array([0, -1]), r"labels outside \[0, 3\)"),
    (np.array([0.5, 1.0]), "non-integer class labels"),
    (np.array([0, np.nan]), "argument 'target' contains NaN"),
    (np.array([0, 1, 2]), "must have 2 labels"),
    (np.zeros((2, 4)), "must be labels of shape"),
    (np.array(["a", "b"]), "argument 'target' must be numeric"),
])
def test_softmax_cross_entropy_bad_targets(target, words):
    with pytest.raises((ValueError, TypeError), match=words):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3), np.float32), target)


@pytest.mark.parametrize("pred, words", [
    (np.zeros((2, 3), np.int32), "argument 'pred' must be a floating-point array"),
    (np.zeros((0, 3), np.float32), "argument 'pred' has an empty batch"),
    (np.zeros(3, np.float32), r"argument 'pred' must have 2 dimensions \(N, classes\)"),
])
def test_softmax_cross_entropy_bad_pred(pred, words):
    with pytest.raises((ValueError, TypeError), match=words):
        SoftmaxCrossEntropy().forward(pred, np.zeros(len(pred), np.int64))


def test_mse_bad_inputs():
    with pytest.raises(ValueError, match="must have the shape of pred"):
        MSE().forward(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="contains NaN"):
        MSE().forward(np.zeros((2, 1), np.float32), np.array([[0.0], [np.nan]]))
    with pytest.raises(RuntimeError, match="called before forward"):
        MSE().backward()


def test_get_loss_by_name():
    assert isinstance(get_loss("softmax_cross_entropy"), SoftmaxCrossEntropy)
    assert isinstance(get_loss("mse"), MSE)
    with pytest.raises(ValueError, match="argument 'loss' must be a Loss or one of"):
        get_loss("nope")


# -- what each loss takes as pred: Loss.from_logits ------------------------------------------------
FROM_LOGITS = {"SoftmaxCrossEntropy": True, "BinaryCrossEntropy": True, "MSE": False, "MAE": False,
               "Huber": False, "SumSquaredError": False, "MulticlassHinge": False, "CategoricalCrossentropy": False,
               "SparseCategoricalCrossentropy": False, "NLLLoss": True}


def gpunn_losses() -> list[type]:
    return [c for c in vars(losses_module).values()
            if isinstance(c, type) and issubclass(c, Loss) and c is not Loss and c.__module__ == losses_module.__name__]


def test_every_loss_declares_from_logits():
    found = {c.__name__ for c in gpunn_losses()}
    assert found == set(FROM_LOGITS), "a new loss: declare its from_logits and add it to FROM_LOGITS"
    for cls in gpunn_losses():
        assert "from_logits" in vars(cls), f"{cls.__name__} does not declare from_logits itself"
        assert vars(cls)["from_logits"] is FROM_LOGITS[cls.__name__], cls.__name__
        assert cls().from_logits is FROM_LOGITS[cls.__name__], cls.__name__


def test_from_logits_default_and_the_binary_cross_entropy_argument():
    assert Loss.from_logits is False  # what a user's subclass inherits: values, not logits

    class Custom(Loss):
        pass

    assert Custom().from_logits is False
    assert BinaryCrossEntropy().from_logits is True
    assert BinaryCrossEntropy(from_logits=False).from_logits is False
    assert BinaryCrossEntropy.from_logits is True  # the instance's argument does not change the class


def test_loss_argument_checks():
    with pytest.raises(ValueError, match=r"^SoftmaxCrossEntropy: argument 'label_smoothing' must be in \[0, 1\]"):
        SoftmaxCrossEntropy(label_smoothing=-0.1)
    with pytest.raises(ValueError, match=r"argument 'label_smoothing' must be a float in \[0, 1\], got True"):
        SoftmaxCrossEntropy(label_smoothing=True)
    with pytest.raises(ValueError, match=r"^BinaryCrossEntropy: argument 'eps' must be in \(0, 0.5\), got 0.5"):
        BinaryCrossEntropy(eps=0.5)
    with pytest.raises(ValueError, match="argument 'eps' must be in"):
        BinaryCrossEntropy(eps=0)
    assert BinaryCrossEntropy(eps=np.float64(1e-6)).eps == 1e-6
    with pytest.raises(ValueError, match="argument 'eps'"):
        BinaryCrossEntropy(eps=np.float32(1e-6))  # Python numbers only, as ever


OUTPUT_KINDS = {"SoftmaxCrossEntropy": "logits", "BinaryCrossEntropy": "binary_logits", "NLLLoss": "logits",
                "CategoricalCrossentropy": "probabilities", "SparseCategoricalCrossentropy": "probabilities"}


def test_every_loss_says_how_its_pred_becomes_what_it_compares():
    """output_kind, what gpunn.Ensemble reads instead of guessing from the class name."""
    for cls in gpunn_losses():
        assert cls().output_kind == OUTPUT_KINDS.get(cls.__name__, "values"), cls.__name__
    assert BinaryCrossEntropy(from_logits=False).output_kind == "probabilities"
    assert Loss.output_kind == "values"


def test_register_loss_checks_its_arguments():
    with pytest.raises(TypeError, match=r"^register_loss: argument 'cls' must be a Loss subclass, got <class 'dict'>"):
        losses_module.register_loss("mine", dict)
    with pytest.raises(TypeError, match=r"^register_loss: argument 'name' must be a non-empty str, got ''"):
        losses_module.register_loss("", MSE)

    class Mine(MSE):
        pass

    losses_module.register_loss(" Mine_Test ", Mine)
    try:
        assert type(get_loss("mine_test")) is Mine
    finally:
        losses_module._BY_NAME.pop("mine_test")
