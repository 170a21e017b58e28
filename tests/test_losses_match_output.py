"""match_output: the loss to train with given what the model's output ends in. Every branch: a
logits loss after a softmax (or sigmoid) becomes its probability form with a warning naming
both; Keras's names adapt silently; NLLLoss after a LogSoftmax and logits losses on plain outputs
stay; bad arguments. And the pair with gpunn.layers.output_activation on real models."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.layers import Dense, LogSoftmax, output_activation
from gpunn.losses import (MSE, BinaryCrossEntropy, CategoricalCrossentropy, Huber, Loss, MulticlassHinge, NLLLoss,
                          SoftmaxCrossEntropy, SparseCategoricalCrossentropy, get_loss, match_output)
from gpunn.optim import SGD


def matched_quietly(loss, activation):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        return match_output(loss, activation)


def matched_with_warning(loss, activation, *names):
    with pytest.warns(UserWarning) as record:
        out = match_output(loss, activation)
    assert len(record) == 1, [str(w.message) for w in record]
    message = str(record[0].message)
    for name in names:
        assert name in message, message
    return out


# -- a softmax output ---------------------------------------------------------------------------
@pytest.mark.parametrize("loss, old", [
    (SoftmaxCrossEntropy(label_smoothing=0.1, reduction="sum"), "SoftmaxCrossEntropy"),
    (CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, reduction="sum"),
     "CategoricalCrossentropy(from_logits=True)"),
])
def test_softmax_with_a_categorical_loss_on_logits_becomes_the_probability_form(loss, old):
    out = matched_with_warning(loss, "softmax", "ends in softmax", old, "CategoricalCrossentropy(from_logits=False)")
    assert type(out) is CategoricalCrossentropy and out.from_logits is False
    assert (out.label_smoothing, out.reduction) == (0.1, "sum")  # the same loss, on probabilities
    assert loss.from_logits is True  # the loss given is left as it was


def test_softmax_with_sparse_on_logits_becomes_sparse_on_probabilities():
    loss = SparseCategoricalCrossentropy(from_logits=True, eps=1e-6, reduction="none")
    out = matched_with_warning(loss, "softmax", "SparseCategoricalCrossentropy(from_logits=True)",
                               "SparseCategoricalCrossentropy(from_logits=False)")
    assert type(out) is SparseCategoricalCrossentropy and out.from_logits is False
    assert (out.eps, out.reduction) == (1e-6, "none")


def test_softmax_with_nll_becomes_sparse_on_probabilities():
    out = matched_with_warning(NLLLoss(reduction="sum"), "softmax", "NLLLoss", "log-probabilities")
    assert type(out) is SparseCategoricalCrossentropy and not out.from_logits and out.reduction == "sum"
    with pytest.raises(ValueError, match=r"^match_output: .*NLLLoss with class weights.*end the model in LogSoftmax"):
        match_output(NLLLoss(weight=(1.0, 2.0)), "softmax")


def test_softmax_with_binary_cross_entropy_on_logits_reads_probabilities():
    out = matched_with_warning(BinaryCrossEntropy(eps=1e-6), "softmax", "BinaryCrossEntropy(from_logits=True)",
                               "BinaryCrossEntropy(from_logits=False)")
    assert type(out) is BinaryCrossEntropy and out.from_logits is False and out.eps == 1e-6


@pytest.mark.parametrize("loss", [CategoricalCrossentropy(), SparseCategoricalCrossentropy(),
                                  BinaryCrossEntropy(from_logits=False), MSE(), MulticlassHinge()])
def test_softmax_with_a_loss_on_probabilities_or_values_is_unchanged(loss):
    assert matched_quietly(loss, "softmax") is loss


@pytest.mark.parametrize("name, cls", [("sparse_categorical_crossentropy", SparseCategoricalCrossentropy),
                                       ("categorical_crossentropy", CategoricalCrossentropy)])
def test_keras_names_on_a_softmax_head_are_simply_right(name, cls):
    loss = get_loss(name)
    out = matched_quietly(loss, "softmax")
    assert out is loss and type(out) is cls and out.from_logits is False


# -- a sigmoid output ---------------------------------------------------------------------------
def test_sigmoid_with_binary_cross_entropy_on_logits_becomes_the_probability_form():
    out = matched_with_warning(BinaryCrossEntropy(reduction="sum"), "sigmoid", "ends in sigmoid",
                               "BinaryCrossEntropy(from_logits=True)", "BinaryCrossEntropy(from_logits=False)")
    assert out.from_logits is False and out.reduction == "sum" and out.output_kind == "probabilities"


def test_binary_crossentropy_by_name_adapts_silently():
    loss = get_loss("binary_crossentropy")
    assert loss.from_logits is True  # as before: on a plain output it reads logits
    assert matched_quietly(loss, None) is loss
    assert matched_quietly(loss, "sigmoid").from_logits is False


@pytest.mark.parametrize("loss", [BinaryCrossEntropy(from_logits=False), MSE(), SoftmaxCrossEntropy()])
def test_sigmoid_with_other_losses_is_unchanged(loss):
    assert matched_quietly(loss, "sigmoid") is loss


# -- log-probabilities and plain outputs ----------------------------------------------------------
@pytest.mark.parametrize("loss", [NLLLoss(), SoftmaxCrossEntropy(), SparseCategoricalCrossentropy(from_logits=True)])
def test_log_softmax_with_nll_or_a_logits_loss_is_unchanged(loss):
    """softmax(log_softmax(z)) = softmax(z): a loss on logits is exact on log-probabilities."""
    assert matched_quietly(loss, "log_softmax") is loss


@pytest.mark.parametrize("activation", [None, "log_softmax"])
@pytest.mark.parametrize("name, cls", [("sparse_categorical_crossentropy", SparseCategoricalCrossentropy),
                                       ("categorical_crossentropy", CategoricalCrossentropy)])
def test_keras_names_on_logits_take_the_logits_form_silently(name, cls, activation):
    out = matched_quietly(get_loss(name), activation)
    assert type(out) is cls and out.from_logits is True and out.output_kind == "logits"


@pytest.mark.parametrize("loss", [SoftmaxCrossEntropy(), SparseCategoricalCrossentropy(from_logits=True),
                                  CategoricalCrossentropy(from_logits=True), BinaryCrossEntropy(), NLLLoss(), MSE(),
                                  Huber(), MulticlassHinge()])
def test_a_plain_output_keeps_its_loss(loss):
    assert matched_quietly(loss, None) is loss


@pytest.mark.parametrize("loss", [CategoricalCrossentropy(), SparseCategoricalCrossentropy(),
                                  BinaryCrossEntropy(from_logits=False)])
def test_a_probability_loss_you_built_is_kept_as_declared(loss):
    """Your from_logits=False is taken at its word (a custom layer may output probabilities); on
    logits it refuses the first batch with an error saying what to pass."""
    assert matched_quietly(loss, None) is loss
    with pytest.raises(ValueError, match="pass from_logits=True"):
        loss.forward(np.array([[2.0, -1.0]]), np.array([[1.0, 0.0]]) if isinstance(loss, (
            CategoricalCrossentropy, BinaryCrossEntropy)) else np.array([0]))


def test_a_custom_loss_is_unchanged():
    class Custom(Loss):
        from_logits = True

    loss = Custom()
    for activation in (None, "softmax", "sigmoid", "log_softmax"):
        assert matched_quietly(loss, activation) is loss


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"^match_output: argument 'loss' must be a gpunn Loss, got str"):
        match_output("mse", None)
    with pytest.raises(ValueError, match=r"^match_output: argument 'activation' must be one of \(None, 'softmax', "
                                         r"'sigmoid', 'log_softmax'\), got 'relu'"):
        match_output(MSE(), "relu")


# -- with output_activation, on models ----------------------------------------------------------
def test_a_keras_softmax_head_matched_trains_as_the_logits_head(backend):
    """The issue's case: Dense(10, activation="softmax") with SoftmaxCrossEntropy was a silent
    double softmax. Matched through output_activation it trains exactly as Dense(10) does."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((48, 8)).astype(np.float32)
    y = rng.integers(0, 10, 48)
    runs = []
    for activation in (None, "softmax"):
        gpunn.manual_seed(0)
        model = Sequential([Dense(12, activation="tanh", input_shape=(8,)), Dense(10, activation=activation)])
        act = output_activation(model)
        assert act == activation
        if act is None:
            loss = matched_quietly(SoftmaxCrossEntropy(), act)
        else:
            loss = matched_with_warning(SoftmaxCrossEntropy(), act, "SoftmaxCrossEntropy")
        model.compile(loss=loss, optimizer=SGD(learning_rate=0.3).bind(model))
        model.fit(x, y, epochs=4, batch_size=12, verbose=0, shuffle=False)
        runs.append(np.concatenate([backend.to_numpy(p.data).ravel() for p in model.parameters()]))
    np.testing.assert_allclose(runs[1], runs[0], rtol=0, atol=1e-6)


def test_a_log_softmax_head_with_nll(backend):
    model = Sequential([Dense(3, input_shape=(4,)), LogSoftmax()])
    assert output_activation(model) == "log_softmax"
    loss = matched_quietly(NLLLoss(), output_activation(model))
    model.compile(loss=loss, optimizer=SGD(learning_rate=0.5).bind(model))
    x = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=20, batch_size=10, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.7 * first


# -- through compile and fit ----------------------------------------------------------------------
def softmax_head(activation="softmax"):
    gpunn.manual_seed(0)
    return Sequential([Dense(12, activation="tanh", input_shape=(8,)), Dense(10, activation=activation)])


def test_compile_matches_the_loss_and_warns_at_the_users_line():
    model = softmax_head()
    with pytest.warns(UserWarning, match="ends in softmax and the loss is SoftmaxCrossEntropy") as record:
        model.compile(loss=SoftmaxCrossEntropy(), optimizer="sgd")
    assert record[0].filename == __file__  # the warning points here, at compile(...), not inside gpunn
    assert type(model.loss) is CategoricalCrossentropy and model.loss.from_logits is False


@pytest.mark.parametrize("activation, from_logits", [("softmax", False), (None, True)])
def test_compile_with_a_keras_name_is_right_for_either_head(activation, from_logits):
    model = softmax_head(activation)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    assert type(model.loss) is SparseCategoricalCrossentropy and model.loss.from_logits is from_logits


def test_compile_and_fit_a_softmax_head_as_its_logits_twin(backend):
    """Keras's habit (softmax head, loss by name) and PyTorch's (logits head, SoftmaxCrossEntropy)
    train the same network to the same weights."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((48, 8)).astype(np.float32)
    y = rng.integers(0, 10, 48)
    runs = []
    for activation, loss in (("softmax", "sparse_categorical_crossentropy"), (None, SoftmaxCrossEntropy())):
        model = softmax_head(activation)
        model.compile(loss=loss, optimizer="sgd", lr=0.3, metrics=["accuracy"])
        history = model.fit(x, y, epochs=4, batch_size=12, verbose=0, shuffle=False)
        runs.append((np.concatenate([backend.to_numpy(p.data).ravel() for p in model.parameters()]),
                     history.history["loss"]))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-6)
