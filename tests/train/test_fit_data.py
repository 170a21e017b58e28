"""fit and evaluate's data features end to end (gpunn/train/model.py's loops over
gpunn/train/data_adapter.py): sample_weight and class_weight, validation triples and splits,
(x, y, sample_weight) batches, steps_per_epoch, Sequences and functions re-iterated per epoch,
one-shot iterators spread over epochs, several inputs, and the errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.callbacks import Callback
from gpunn.data import DataLoader
from gpunn.layers import BatchNorm, Dense
from gpunn.train.data_adapter import DataRanOutWarning


def blobs(n=48, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = (np.where(y[:, None] == 1, 1.0, -1.0) + rng.normal(size=(n, 4))).astype(np.float32)
    return x, y


def model(seed=0, optimizer="sgd", **kwargs):
    gpunn.manual_seed(seed)
    m = Sequential([Dense(8, activation="tanh", input_shape=(4,)), Dense(2)])
    m.build((4,))  # the weights drawn now, from this seed
    m.compile(loss="softmax_cross_entropy", optimizer=optimizer, metrics=["accuracy"], lr=0.1, **kwargs)
    return m


def same_weights(a, b, rtol=1e-5):
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        np.testing.assert_allclose(sa[k], sb[k], rtol=rtol, atol=1e-6, err_msg=k)


class Steps(Callback):
    """Counts the batches of each epoch and records fit's params."""

    def __init__(self):
        super().__init__()
        self.per_epoch, self.sizes = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.per_epoch.append(0)

    def on_train_batch_end(self, step, logs=None):
        self.per_epoch[-1] += 1
        self.sizes.append(logs["size"])


class Batches:
    """A Keras-style Sequence of (x, y) or (x, y, sample_weight) batches."""

    def __init__(self, x, y, size, weights=None):
        self.x, self.y, self.size, self.weights = x, y, size, weights
        self.ended = 0

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        sl = slice(i * self.size, (i + 1) * self.size)
        return (self.x[sl], self.y[sl]) if self.weights is None else (self.x[sl], self.y[sl], self.weights[sl])

    def on_epoch_end(self):
        self.ended += 1


# -- sample_weight and class_weight ---------------------------------------------------------------
def test_sample_weight_zero_is_training_without_those_samples(backend):
    """Full-batch SGD on the weighted mean: weights 0 drop samples, a common scale changes nothing."""
    x, y = blobs()
    keep = np.arange(len(x)) % 3 != 0
    a, b, c = model(), model(), model()
    a.fit(x, y, sample_weight=keep.astype(float) * 2.5, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
    b.fit(x[keep], y[keep], batch_size=int(keep.sum()), epochs=3, shuffle=False, verbose=0)
    same_weights(a, b)
    c.fit(x, y, sample_weight=np.full(len(x), 7.0), batch_size=len(x), epochs=3, shuffle=False, verbose=0)
    d = model()
    d.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
    same_weights(c, d)


def test_class_weight_matches_its_sample_weights(backend):
    x, y = blobs()
    a, b = model(), model()
    a.fit(x, y, class_weight={0: 0.25, 1: 2.0}, batch_size=16, epochs=2, verbose=0)
    b.fit(x, y, sample_weight=np.where(y == 1, 2.0, 0.25), batch_size=16, epochs=2, verbose=0)
    same_weights(a, b)
    one_hot = np.eye(2, dtype=np.float32)[y]
    c, d = model(), model()
    for m in (c, d):
        m.compile(loss=gpunn.losses.CategoricalCrossentropy(from_logits=True), optimizer="sgd", lr=0.1)
    c.fit(x, one_hot, class_weight={1: 2.0}, batch_size=16, epochs=2, verbose=0)  # class 0 unnamed: weight 1
    d.fit(x, one_hot, sample_weight=np.where(y == 1, 2.0, 1.0), batch_size=16, epochs=2, verbose=0)
    same_weights(c, d)


def test_class_weight_applies_to_training_not_to_validation():
    x, y = blobs(40)
    m = model()
    h = m.fit(x, y, class_weight={0: 0.0, 1: 1.0}, validation_split=0.25, epochs=1, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(m.evaluate(x[30:], y[30:])[0], rel=1e-5)


def test_evaluate_with_sample_weight_is_the_weighted_mean(backend):
    x, y = blobs()
    m = model()
    keep = np.arange(len(x)) % 4 == 0
    full = m.evaluate(x, y, sample_weight=keep.astype(float), batch_size=len(x))
    assert full[0] == pytest.approx(m.evaluate(x[keep], y[keep], batch_size=len(x))[0], rel=1e-5)
    assert full[1] == pytest.approx(m.evaluate(x, y)[1])  # metrics are not weighted, as in Keras
    uniform = m.evaluate(x, y, sample_weight=np.full(len(x), 3.0), return_dict=True)
    assert uniform["loss"] == pytest.approx(m.evaluate(x, y, return_dict=True)["loss"], rel=1e-5)


def test_validation_split_splits_the_sample_weights():
    x, y = blobs(40)
    w = np.linspace(0.1, 2.0, 40)
    m = model()
    h = m.fit(x, y, sample_weight=w, validation_split=0.25, epochs=1, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(m.evaluate(x[30:], y[30:], sample_weight=w[30:])[0], rel=1e-5)


def test_validation_data_may_carry_sample_weights():
    x, y = blobs(40)
    xv, yv = blobs(20, seed=1)
    wv = np.arange(20) % 2 * 1.0
    m = model()
    h = m.fit(x, y, validation_data=(xv, yv, wv), epochs=1, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(m.evaluate(xv[1::2], yv[1::2])[0], rel=1e-5)
    h = m.fit(x, y, validation_data=[(xv, yv, wv)], epochs=1, verbose=0)  # a list of batches
    assert h.history["val_loss"][0] == pytest.approx(m.evaluate(xv[1::2], yv[1::2])[0], rel=1e-5)


def test_weighted_batches_from_every_source_train_as_weighted_arrays(backend):
    x, y = blobs(24)
    w = np.linspace(0.0, 1.0, 24)
    ref = model()
    ref.fit(x, y, sample_weight=w, batch_size=8, epochs=2, shuffle=False, verbose=0)
    batches = [(x[i:i + 8], y[i:i + 8], w[i:i + 8]) for i in range(0, 24, 8)]
    sources = {
        "list": batches,
        "loader": DataLoader(x, y, batch_size=8, sample_weight=w, prefetch=0),
        "sequence": Batches(x, y, 8, weights=w),
        "function": lambda: iter(batches),
    }
    for name, source in sources.items():
        m = model()
        m.fit(source, epochs=2, shuffle=False, verbose=0)
        same_weights(m, ref)
        assert m.evaluate(source)[0] == pytest.approx(ref.evaluate(x, y, sample_weight=w, batch_size=8)[0],
                                                      rel=1e-5), name


# -- steps_per_epoch ------------------------------------------------------------------------------
def test_steps_per_epoch_caps_array_epochs():
    x, y = blobs(40)
    spy = Steps()
    m = model()
    m.fit(x, y, batch_size=8, steps_per_epoch=3, epochs=2, callbacks=[spy], verbose=0)
    assert spy.per_epoch == [3, 3] and spy.params["steps"] == 3 and spy.params["samples"] == 24
    spy = Steps()
    m.fit(x, y, batch_size=8, steps_per_epoch=50, epochs=1, callbacks=[spy], verbose=0)
    assert spy.per_epoch == [5]  # no more than the data has


def test_steps_per_epoch_spreads_an_infinite_generator_over_epochs():
    x, y = blobs(8)
    drawn = []

    def forever():
        while True:
            drawn.append(1)
            yield x, y

    spy = Steps()
    h = model().fit(forever(), steps_per_epoch=3, epochs=4, callbacks=[spy], verbose=0)
    assert spy.per_epoch == [3, 3, 3, 3] and len(drawn) == 12 and len(h.history["loss"]) == 4
    assert spy.params["steps"] == 3


def test_a_generator_that_runs_out_stops_the_fit_with_a_warning():
    x, y = blobs(8)
    m = model()
    with pytest.warns(DataRanOutWarning, match=r"fit: the training data ran out in epoch 3 of 5; training stopped "
                                               r"there. A one-shot iterator must yield steps_per_epoch=2 batches for "
                                               r"every epoch"):
        h = m.fit(((x, y) for _ in range(5)), steps_per_epoch=2, epochs=5, verbose=0)
    assert len(h.history["loss"]) == 3 and m.epoch == 3  # the third epoch had one batch
    with pytest.warns(DataRanOutWarning, match=r"ran out in epoch 3 of 4"):
        h = model().fit(((x, y) for _ in range(4)), steps_per_epoch=2, epochs=4, verbose=0)
    assert len(h.history["loss"]) == 2  # exhausted exactly at an epoch's end: no empty epoch runs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = model().fit(((x, y) for _ in range(4)), steps_per_epoch=2, epochs=2, verbose=0)  # exactly enough
    assert len(h.history["loss"]) == 2


def test_steps_per_epoch_continues_a_loader_across_epochs():
    x, y = blobs(30)
    loader = DataLoader(x, y, batch_size=10, prefetch=2)  # 3 batches a pass
    spy = Steps()
    model().fit(loader, steps_per_epoch=2, epochs=3, callbacks=[spy], verbose=0)
    assert spy.per_epoch == [2, 2, 2] and spy.sizes == [10] * 6 and loader.epoch == 2  # two passes


def test_validation_steps():
    x, y = blobs(30)

    def forever():
        while True:
            yield x[:5], y[:5]

    m = model()
    h = m.fit(x, y, validation_data=forever(), validation_steps=2, epochs=2, verbose=0)
    assert len(h.history["val_loss"]) == 2
    assert h.history["val_loss"][-1] == pytest.approx(m.evaluate(x[:5], y[:5])[0], rel=1e-5)
    with pytest.raises(ValueError, match=r"argument 'validation_data' is a one-shot iterator .* or give "
                                         r"validation_steps"):
        model().fit(x, y, validation_data=forever(), epochs=2, verbose=0)


def test_evaluate_steps_and_sources():
    x, y = blobs(30)
    m = model()
    assert m.evaluate(x, y, batch_size=10, steps=1)[0] == pytest.approx(m.evaluate(x[:10], y[:10])[0], rel=1e-5)

    def forever():
        while True:
            yield x[:10], y[:10]

    assert m.evaluate(forever(), steps=3)[0] == pytest.approx(m.evaluate(x[:10], y[:10])[0], rel=1e-5)
    assert m.evaluate(Batches(x, y, 7))[0] == pytest.approx(m.evaluate(x, y)[0], rel=1e-5)
    assert m.evaluate(lambda: iter([(x, y)]))[0] == pytest.approx(m.evaluate(x, y)[0], rel=1e-5)


def test_predict_takes_sequences_and_functions():
    x, y = blobs(30)
    m = model()
    want = m.predict(x)
    np.testing.assert_allclose(m.predict(Batches(x, y, 7)), want, rtol=1e-6)
    np.testing.assert_allclose(m.predict(lambda: iter([(x[:10],), (x[10:],)])), want, rtol=1e-6)


# -- sources re-iterated per epoch ----------------------------------------------------------------
def test_a_sequence_is_reiterated_and_told_of_each_epoch():
    x, y = blobs(30)
    seq = Batches(x, y, 10)
    spy = Steps()
    m = model()
    h = m.fit(seq, epochs=3, validation_data=Batches(x, y, 15), callbacks=[spy], verbose=0)
    assert spy.per_epoch == [3, 3, 3] and spy.params["steps"] == 3 and seq.ended == 3
    assert len(h.history["val_loss"]) == 3
    a, b = model(), model()
    a.fit(Batches(x, y, 10), epochs=2, shuffle=False, verbose=0)
    b.fit(x, y, batch_size=10, epochs=2, shuffle=False, verbose=0)
    same_weights(a, b)


def test_a_sequence_is_shuffled_by_batch_reproducibly():
    x, y = blobs(40)
    order = []

    class Spy(Batches):
        def __getitem__(self, i):
            order.append(i)
            return super().__getitem__(i)

    model().fit(Spy(x, y, 5), epochs=2, shuffle=True, verbose=0)
    first = list(order)
    order.clear()
    model().fit(Spy(x, y, 5), epochs=2, shuffle=True, verbose=0)
    assert order == first and sorted(first[:8]) == list(range(8)) and first[:8] != list(range(8))


def test_a_function_gives_a_fresh_iterator_each_epoch():
    x, y = blobs(20)
    calls = []

    def batches():
        calls.append(1)
        return ((x[i:i + 5], y[i:i + 5]) for i in range(0, 20, 5))

    h = model().fit(batches, epochs=3, validation_data=batches, verbose=0)
    assert len(calls) == 6 and len(h.history["val_loss"]) == 3


def test_one_shot_iterators_keep_their_error_unless_steps_make_them_usable():
    x, y = blobs(8)
    with pytest.raises(ValueError, match=r"fit: argument 'x' is a one-shot iterator \(generator\), exhausted after "
                                         r"one pass, but the fit needs 2 passes over it;.*or give steps_per_epoch"):
        model().fit(((x, y) for _ in range(4)), epochs=2, verbose=0)


# -- several inputs -------------------------------------------------------------------------------
def test_dict_inputs_are_batched_leaf_by_leaf_with_weights():
    a_in, b_in = gpunn.Input(shape=(4,), name="a"), gpunn.Input(shape=(4,), name="b")
    out = Dense(2)(gpunn.layers.Add()([Dense(4)(a_in), Dense(4)(b_in)]))
    gpunn.manual_seed(0)
    m = gpunn.Model(inputs=[a_in, b_in], outputs=out)
    m.compile(loss="softmax_cross_entropy", optimizer="sgd", lr=0.1)
    x, y = blobs(24)
    spy = Steps()
    m.fit({"a": x, "b": -x}, y, sample_weight=np.ones(24), batch_size=10, epochs=1, callbacks=[spy], verbose=0)
    assert spy.sizes == [10, 10, 4]
    loss = m.evaluate({"a": x, "b": -x}, y, batch_size=7)
    assert loss == pytest.approx(m.evaluate([x, -x], y), rel=1e-5)
    batches = [({"a": x[i:i + 8], "b": -x[i:i + 8]}, y[i:i + 8]) for i in range(0, 24, 8)]
    assert m.evaluate(batches) == pytest.approx(loss, rel=1e-5)
    with pytest.raises(ValueError, match=r"same number of samples"):
        m.fit({"a": x, "b": -x[:20]}, y, verbose=0)


# -- BatchNorm and the last batch -----------------------------------------------------------------
def test_steps_per_epoch_that_skips_a_one_sample_last_batch_is_fine():
    x, y = blobs(9)
    gpunn.manual_seed(0)
    m = Sequential([Dense(4, input_shape=(4,)), BatchNorm(), Dense(2)])
    m.compile(loss="softmax_cross_entropy", optimizer="sgd")
    with pytest.raises(ValueError, match=r"the last batch of every epoch would hold 1 sample"):
        m.fit(x, y, batch_size=4, verbose=0)
    m.fit(x, y, batch_size=4, steps_per_epoch=2, verbose=0)  # batches of 4 and 4


# -- bad arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, exc, match", [
    ({"steps_per_epoch": 0}, ValueError, r"fit: argument 'steps_per_epoch' must be a positive int, got 0"),
    ({"steps_per_epoch": 2.0}, ValueError, r"argument 'steps_per_epoch' must be a positive int, got 2.0"),
    ({"validation_steps": -1}, ValueError, r"fit: argument 'validation_steps' must be a positive int"),
    ({"class_weight": [1.0, 2.0]}, TypeError, r"fit: argument 'class_weight' must be a non-empty dict"),
    ({"class_weight": {0: -1.0}}, ValueError, r"fit: argument 'class_weight\[0\]' must be a finite weight >= 0"),
    ({"class_weight": {0: 1.0}, "sample_weight": np.ones(10)}, ValueError,
     r"fit: give 'sample_weight' or 'class_weight', not both"),
    ({"sample_weight": np.ones(9)}, ValueError, r"fit: argument 'sample_weight' must have shape \(10,\)"),
    ({"sample_weight": np.zeros(10)}, ValueError, r"fit: argument 'sample_weight' is all zeros"),
    ({"validation_data": (np.zeros((3, 4), np.float32),) * 4}, ValueError,
     r"fit: argument 'validation_data' must be a pair \(x_val, y_val\), a triple \(x_val, y_val, sample_weight_val\) "
     r"or a batch source such as a DataLoader, got a tuple of 4"),
    ({"validation_data": (np.zeros((3, 4), np.float32), np.zeros(3), np.ones(2))}, ValueError,
     r"fit \(validation_data\): argument 'sample_weight' must have shape \(3,\)"),
])
def test_fit_bad_data_arguments(kwargs, exc, match):
    x, y = blobs(10)
    m = model()
    with pytest.raises(exc, match=match):
        m.fit(x, y, verbose=0, **kwargs)
    assert m.optimizer.step_count == 0  # refused before any training


def test_fit_refuses_sample_weight_and_class_weight_misuse_with_batch_sources():
    x, y = blobs(10)
    with pytest.raises(ValueError, match=r"fit: argument 'sample_weight' needs array data; a batch source gives its "
                                         r"weights in \(x, y, sample_weight\) batches"):
        model().fit([(x, y)], sample_weight=np.ones(10), verbose=0)
    with pytest.raises(ValueError, match=r"fit: argument 'class_weight' cannot be combined with sample weights"):
        model().fit([(x, y, np.ones(10))], class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match=r"evaluate: argument 'sample_weight' needs array data"):
        model().evaluate([(x, y)], sample_weight=np.ones(10))
    with pytest.raises(ValueError, match=r"evaluate: argument 'steps' must be a positive int"):
        model().evaluate(x, y, steps=0)
    with pytest.raises(ValueError, match=r"fit: batch 1 of the training data must be \(x, y\) or \(x, y, "
                                         r"sample_weight\), got a tuple of 1"):
        model().fit(lambda: iter([(x,)]), verbose=0)


def test_class_weight_needs_one_output():
    a_in = gpunn.Input(shape=(4,), name="a")
    h = Dense(4)(a_in)
    m = gpunn.Model(inputs=a_in, outputs=[Dense(2, name="p")(h), Dense(2, name="q")(h)])
    m.compile(loss="softmax_cross_entropy", optimizer="sgd")
    x, y = blobs(10)
    with pytest.raises(ValueError, match=r"fit: argument 'class_weight' needs a model with one output, got targets "
                                         r"for 2"):
        m.fit(x, [y, y], class_weight={0: 2.0}, verbose=0)


def test_the_one_sample_check_reads_a_channels_last_batchnorm_axis():
    y = np.zeros(9, np.int64)
    gpunn.manual_seed(0)
    one_value = Sequential([BatchNorm(data_format="channels_last", input_shape=(1, 4)), gpunn.layers.Flatten(),
                            Dense(2)])  # (N, L=1, C=4): one value per channel in a one-sample batch
    one_value.compile(loss="softmax_cross_entropy", optimizer="sgd")
    with pytest.raises(ValueError, match=r"the last batch of every epoch would hold 1 sample"):
        one_value.fit(np.ones((9, 1, 4), np.float32), y, batch_size=4, verbose=0)
    several = Sequential([BatchNorm(data_format="channels_last", input_shape=(4, 1)), gpunn.layers.Flatten(),
                          Dense(2)])  # (N, L=4, C=1): four values per channel
    several.compile(loss="softmax_cross_entropy", optimizer="sgd")
    several.fit(np.random.default_rng(0).normal(size=(9, 4, 1)).astype(np.float32), y, batch_size=4, verbose=0)
