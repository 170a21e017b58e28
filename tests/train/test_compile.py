"""compile() reads what the model outputs from the loss's `from_logits` (Loss.from_logits), never
from the loss's class name: binary_accuracy thresholds logits at 0 and other values at 0.5."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.layers import Dense
from gpunn.losses import MSE, BinaryCrossEntropy, Loss, MulticlassHinge, SoftmaxCrossEntropy

# every label is 1; the outputs straddle both thresholds: 3 of 4 are > 0 (right, read as logits),
# 1 of 4 is > 0.5 (right, read as probabilities)
PRED = np.array([[-1.0], [0.2], [0.4], [0.9]], np.float32)
TRUE = np.ones((4, 1), np.float32)
AS_LOGITS, AS_VALUES = 0.75, 0.25


class ScoreLoss(MSE):
    """A loss on logits whose name lacks "binary"."""
    from_logits = True


class BinaryValueLoss(MSE):
    """A loss on values whose name has "binary" (the old sniffing took it for logits)."""
    from_logits = False


class MyBinaryLoss(Loss):
    """A user's loss that declares nothing: it inherits Loss.from_logits (False)."""

    def forward(self, pred, target):
        return MSE.forward(self, pred, target)


def identity_model() -> Sequential:
    """Dense(1) with weight 1 and bias 0: its output is its input."""
    model = Sequential([Dense(1, kernel_initializer="ones", input_shape=(1,))])
    model.build((1,))
    return model


def compiled_binary_accuracy(loss: Loss):
    model = identity_model()
    model.compile(loss=loss, optimizer="sgd", metrics=["binary_accuracy"])
    (name, fn), = model.metric_fns
    assert name == "binary_accuracy"
    return model, fn


def test_the_base_default_is_values():
    assert Loss.from_logits is False
    assert MyBinaryLoss().from_logits is False


@pytest.mark.parametrize("loss, expected", [
    (ScoreLoss(), AS_LOGITS), (BinaryValueLoss(), AS_VALUES), (MyBinaryLoss(), AS_VALUES),
    (BinaryCrossEntropy(), AS_LOGITS), (BinaryCrossEntropy(from_logits=False), AS_VALUES),
    (MSE(), AS_VALUES), ("binary_crossentropy", AS_LOGITS), ("mse", AS_VALUES),
])
def test_binary_accuracy_follows_the_losss_declaration(loss, expected):
    _, fn = compiled_binary_accuracy(loss)
    assert fn(TRUE, PRED) == expected


@pytest.mark.parametrize("cls, expected", [(ScoreLoss, AS_LOGITS), (BinaryValueLoss, AS_VALUES)])
def test_evaluate_uses_the_declared_threshold(backend, cls, expected):
    model, _ = compiled_binary_accuracy(cls())
    loss, acc = model.evaluate(PRED, TRUE, batch_size=4)
    assert acc == pytest.approx(expected)
    assert loss == pytest.approx(float(((PRED - TRUE) ** 2).mean()), rel=1e-6)


def test_the_declaration_is_read_per_instance():
    """BinaryCrossEntropy(from_logits=False) takes probabilities: threshold 0.5, not 0."""
    _, on_probs = compiled_binary_accuracy(BinaryCrossEntropy(from_logits=False))
    probs = np.array([[0.1], [0.3], [0.6], [0.8]], np.float32)
    assert on_probs(TRUE, probs) == 0.5  # with threshold 0 every probability would count as 1


def test_other_metrics_do_not_depend_on_it():
    for loss in (SoftmaxCrossEntropy(), MulticlassHinge(), MSE()):
        model = identity_model()
        model.compile(loss=loss, optimizer="sgd", metrics=["accuracy", "mse"])
        assert [fn for _, fn in model.metric_fns] == [gpunn.metrics.accuracy, gpunn.metrics.mse]


def test_compile_does_not_inspect_class_names():
    import gpunn.train.model as model_module
    source = Path(model_module.__file__).read_text()
    assert "__name__.lower()" not in source
    assert '"binary" in' not in source


def test_compile_takes_an_optimizer_by_name_instance_or_class():
    model = identity_model()
    model.compile(loss="mse", optimizer="rmsprop")  # a name: Keras's defaults for it
    assert (model.optimizer.lr, model.optimizer.alpha) == (1e-3, 0.9)
    model.compile(loss="mse", optimizer=gpunn.optim.RMSprop)  # a class: its own (PyTorch) defaults
    assert type(model.optimizer) is gpunn.optim.RMSprop and model.optimizer.lr == 0.01
    model.compile(loss="mse", optimizer=gpunn.optim.SGD, lr=0.5)
    assert model.optimizer.lr == 0.5
    unbound = gpunn.optim.Adam(learning_rate=1e-2)
    assert unbound.bound is False
    model.compile(loss="mse", optimizer=unbound)  # bound here, to this model
    assert unbound.bound and model.optimizer is unbound
    model.train_on_batch(PRED, TRUE)
    assert unbound.step_count == 1


@pytest.mark.parametrize("optimizer, err, match", [
    (3, TypeError, "argument 'optimizer' must be a name such as 'adam', a gpunn Optimizer or an Optimizer class"),
    (dict, TypeError, "argument 'optimizer' must be"),
    ("nope", ValueError, "compile: get_optimizer: argument 'name'"),
])
def test_compile_refuses_other_optimizers(optimizer, err, match):
    with pytest.raises(err, match=match):
        identity_model().compile(loss="mse", optimizer=optimizer)
    with pytest.raises(ValueError, match="given with an Optimizer instance"):
        model = identity_model()
        model.compile(loss="mse", optimizer=gpunn.optim.SGD(model), lr=0.1)
