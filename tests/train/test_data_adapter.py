"""gpunn/train/data_adapter.py: what fit / evaluate / predict accept, as batches - array slicing
over structures, class weights, the split, every kind of batch source, steps as one stream, and
the errors for malformed sources and batches."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from gpunn.data import DataLoader
from gpunn.train import data_adapter as D


def _arrays(n=10):
    x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    return x, np.arange(n)


class Batches:
    """A Keras-style Sequence: __len__ and __getitem__, with epoch hooks that count their calls."""

    def __init__(self, n_batches=4, size=3, weights=False):
        self.n_batches, self.size, self.weights = n_batches, size, weights
        self.begun = self.ended = 0

    def __len__(self):
        return self.n_batches

    def __getitem__(self, i):
        if not 0 <= i < self.n_batches:
            raise IndexError(i)
        y = np.arange(i * self.size, (i + 1) * self.size)
        x = y[:, None].astype(np.float32)
        return (x, y, np.full(self.size, 0.5)) if self.weights else (x, y)

    def on_epoch_begin(self):
        self.begun += 1

    def on_epoch_end(self):
        self.ended += 1


def _labels(data, epoch):
    return [int(b[1][0]) for b in data.epoch(epoch)]


# -- structures and arrays ------------------------------------------------------------------------
def test_take_slices_every_leaf_in_its_structure():
    a, b = np.arange(6), np.arange(6) * 10
    assert D.take({"a": a, "b": b}, slice(1, 3))["b"].tolist() == [10, 20]
    out = D.take([a, b], np.array([5, 0]))
    assert isinstance(out, list) and out[1].tolist() == [50, 0]
    assert isinstance(D.take((a, b), slice(0, 1)), tuple)
    assert D.take(None, slice(0, 1)) is None
    assert D.leaves({"a": a, "b": b})[1] is b and D.leaves(None) == [] and D.num_samples([a, b]) == 6


def test_array_data_covers_every_sample_in_a_seeded_order():
    x, y = _arrays(10)
    data = D.ArrayData(x, y, None, batch_size=4, shuffle=True, seed=5)
    assert data.steps == 3 and data.num_samples == 10
    epoch0 = [yb.tolist() for _, yb, _ in data.epoch(0)]
    assert [len(b) for b in epoch0] == [4, 4, 2] and sorted(sum(epoch0, [])) == list(range(10))
    assert [yb.tolist() for _, yb, _ in data.epoch(0)] == epoch0  # a function of (seed, epoch) only
    assert [yb.tolist() for _, yb, _ in data.epoch(1)] != epoch0
    assert sum(epoch0, []) == D.epoch_order(5, 10, 0).tolist()
    for xb, yb, swb in data.epoch(2):
        np.testing.assert_array_equal(xb[:, 0], yb)  # x and y stay paired
        assert swb is None


def test_array_data_steps_cap_the_batches():
    x, y = _arrays(10)
    data = D.ArrayData(x, y, np.ones(10), batch_size=3, steps=2)
    assert data.steps == 2 and data.num_samples == 6
    assert [b[1].tolist() for b in data.epoch(0)] == [[0, 1, 2], [3, 4, 5]]
    assert D.ArrayData(x, y, None, batch_size=3, steps=99).steps == 4  # at most the data's batches


def test_array_data_slices_structures_and_weights_together():
    x, y = _arrays(5)
    data = D.ArrayData({"a": x, "b": x * 2}, [y, y + 100], np.arange(5) / 10, batch_size=2)
    xb, yb, swb = next(iter(data.epoch(0)))
    assert set(xb) == {"a", "b"} and xb["b"][1, 0] == 2.0
    assert yb[1].tolist() == [100, 101] and swb.tolist() == [0.0, 0.1]


def test_split_arrays_holds_out_the_last_samples():
    x, y = _arrays(10)
    (tx, ty, tw), (vx, vy, vw) = D.split_arrays([x, x], y, np.arange(10.0), 0.3, "fit")
    assert ty.tolist() == list(range(7)) and vy.tolist() == [7, 8, 9]
    assert tw.tolist() == list(range(7)) and vw.tolist() == [7.0, 8.0, 9.0] and vx[1].shape == (3, 3)
    (_, _, tw), (_, _, vw) = D.split_arrays(x, y, None, 0.3, "fit")
    assert tw is None and vw is None
    with pytest.raises(ValueError, match=r"fit: argument 'validation_split'=0.05 leaves 0 of 10 samples"):
        D.split_arrays(x, y, None, 0.05, "fit")


# -- class weights --------------------------------------------------------------------------------
def test_class_weights_from_labels_one_hot_and_binary_targets():
    weights = {0: 1.0, 1: 3.0}
    assert D.class_weights_for(np.array([1, 0, 1]), weights, "fit").tolist() == [3.0, 1.0, 3.0]
    assert D.class_weights_for(np.array([[1], [0]]), weights, "fit").tolist() == [3.0, 1.0]
    assert D.class_weights_for(np.eye(3)[[2, 1]], weights, "fit").tolist() == [1.0, 3.0]  # class 2 unnamed: 1
    assert D.class_weights_for(np.array([0.0, 1.0, 0.9]), weights, "fit").tolist() == [1.0, 3.0, 3.0]  # rounded
    assert D.class_weights_for([np.array([1, 0])], weights, "fit").tolist() == [3.0, 1.0]  # one output as a list
    with pytest.raises(ValueError, match=r"fit: argument 'class_weight' needs a model with one output, got targets "
                                         r"for 2"):
        D.class_weights_for([np.array([1]), np.array([0])], weights, "fit")
    with pytest.raises(ValueError, match=r"needs class labels >= 0, got -1"):
        D.class_weights_for(np.array([0, -1]), weights, "fit")
    with pytest.raises(ValueError, match=r"needs integer labels \(N,\) or one-hot rows \(N, classes\), got targets "
                                         r"of shape \(2, 2, 2\)"):
        D.class_weights_for(np.zeros((2, 2, 2)), weights, "fit")
    with pytest.raises(TypeError, match=r"needs integer class labels, got 'y' of dtype <U1"):
        D.class_weights_for(np.array(["a"]), weights, "fit")
    with pytest.raises(ValueError, match=r"needs finite class labels"):
        D.class_weights_for(np.array([0.0, np.nan]), weights, "fit")


def test_array_weights():
    x, y = _arrays(4)
    assert D.array_weights(None, None, x, y, "fit") is None
    assert D.array_weights([1, 2, 3, 4], None, x, y, "fit").tolist() == [1.0, 2.0, 3.0, 4.0]
    assert D.array_weights(None, {3: 0.5}, x, y, "fit").tolist() == [1.0, 1.0, 1.0, 0.5]
    with pytest.raises(ValueError, match=r"fit: give 'sample_weight' or 'class_weight', not both"):
        D.array_weights(np.ones(4), {0: 1.0}, x, y, "fit")
    with pytest.raises(ValueError, match=r"fit: argument 'sample_weight' must have shape \(4,\)"):
        D.array_weights(np.ones(5), None, x, y, "fit")
    with pytest.raises(ValueError, match=r"argument 'class_weight' needs targets 'y'"):
        D.array_weights(None, {0: 1.0}, x, None, "fit")


# -- which inputs are batch sources ---------------------------------------------------------------
def test_is_batch_source():
    x, y = _arrays(4)

    class Framelike:  # anything with a shape is data (a pandas DataFrame), refused later or not
        shape = (4, 3)

        def __iter__(self):
            return iter([])

    for data in (x, [x, x], (x, y), {"a": x}, [[0.1, 0.2]], Framelike(), "abc", None):
        assert not D.is_batch_source(data), type(data)
    for source in ([(x, y)], [(x, y, np.ones(4))], [({"a": x}, y)], DataLoader(x, y), Batches(),
                   (b for b in [(x, y)]), lambda: iter([(x, y)])):
        assert D.is_batch_source(source), type(source)
    assert D.is_sequence(Batches()) and not D.is_sequence([(x, y)]) and not D.is_sequence(x)


# -- batch sources --------------------------------------------------------------------------------
def test_a_reiterable_is_one_pass_per_epoch():
    x, y = _arrays(6)
    batches = [(x[:3], y[:3]), (x[3:], y[3:])]
    data = D.BatchData(batches, "training data", "fit")
    assert data.steps == 2 and data.kind == "re-iterable"
    assert _labels(data, 0) == [0, 3] and _labels(data, 1) == [0, 3]


def test_a_sequence_is_indexed_shuffled_per_epoch_and_told_of_epochs():
    seq = Batches(n_batches=5)
    data = D.BatchData(seq, "training data", "fit", shuffle=True, seed=2)
    assert data.kind == "sequence" and data.steps == 5
    first = _labels(data, 0)
    data.end_epoch()
    assert sorted(first) == [0, 3, 6, 9, 12] and first != [0, 3, 6, 9, 12]
    assert _labels(data, 0) == first  # the batch order is a function of (seed, epoch)
    assert seq.begun == 2 and seq.ended == 1
    assert _labels(D.BatchData(seq, "data", "evaluate"), 0) == [0, 3, 6, 9, 12]  # in order without shuffle


def test_a_function_is_called_once_per_pass():
    x, y = _arrays(4)
    calls = []

    def fresh():
        calls.append(1)
        return iter([(x[:2], y[:2]), (x[2:], y[2:])])

    data = D.BatchData(fresh, "training data", "fit")
    assert data.kind == "function" and data.steps is None
    assert _labels(data, 0) == [0, 2] and _labels(data, 1) == [0, 2] and len(calls) == 2
    with pytest.raises(TypeError, match=r"fit: the training data is a function, which must return an iterator or an "
                                        r"iterable of batches, but it returned int"):
        list(D.BatchData(lambda: 3, "training data", "fit").epoch(0))


def test_steps_make_one_stream_across_epochs_and_restart_passes():
    loader = DataLoader(*_arrays(9), batch_size=3, prefetch=0)  # 3 batches a pass
    data = D.BatchData(loader, "training data", "fit", steps=2)
    assert data.steps == 2 and data.num_samples is None
    assert _labels(data, 0) == [0, 3] and _labels(data, 1) == [6, 0] and _labels(data, 2) == [3, 6]
    data.close()


def test_steps_over_an_infinite_generator_continue_it():
    def forever():
        i = 0
        while True:
            yield np.full((2, 1), i, np.float32), np.array([i, i])
            i += 1

    data = D.BatchData(forever(), "training data", "fit", steps=3)
    assert _labels(data, 0) == [0, 1, 2] and data.has_more() and _labels(data, 1) == [3, 4, 5]


def test_steps_over_a_finite_generator_run_out():
    x, y = _arrays(5)
    data = D.BatchData(((x[i:i + 1], y[i:i + 1]) for i in range(5)), "training data", "fit", steps=2)
    assert _labels(data, 0) == [0, 1] and not data.ran_out
    assert data.has_more() and _labels(data, 1) == [2, 3]
    assert data.has_more() and _labels(data, 2) == [4] and data.ran_out
    assert not data.has_more()


def test_an_empty_pass_in_a_stream_is_an_error():
    class Dry:
        def __init__(self):
            self.passes = 0

        def __iter__(self):
            self.passes += 1
            return iter([(np.zeros((1, 1), np.float32), np.zeros(1))] if self.passes == 1 else [])

    data = D.BatchData(Dry(), "training data", "fit", steps=2)
    with pytest.raises(ValueError, match=r"fit: the training data yielded no batches in epoch 1; its __iter__ "
                                         r"returned an exhausted iterator"):
        list(data.epoch(0))


def test_replay_epochs_sets_a_loaders_epoch():
    loader = DataLoader(*_arrays(6), batch_size=2, shuffle=True, seed=0, prefetch=0)
    train = D.BatchData(loader, "training data", "fit", replay_epochs=True)
    first = _labels(train, 3)
    assert _labels(train, 3) == first  # epoch 3 replayed
    assert first == [int(idx[0]) for idx in loader.batch_indices(3)]
    assert loader.epoch == 4


def test_predict_takes_x_alone_or_the_first_entry():
    x, y = _arrays(4)
    data = D.BatchData([(x, y), (x,), x], "data", "predict", need_y=False)
    assert all(xb is x and yb is None and swb is None for xb, yb, swb in data.epoch(0))


def test_close_stops_a_pass_the_stream_left_open():
    loader = DataLoader(*_arrays(12), batch_size=2, prefetch=2)
    data = D.BatchData(loader, "training data", "fit", steps=2)
    list(data.epoch(0))
    assert any(t.name == "gpunn-DataLoader-prefetch" for t in threading.enumerate())
    data.close()
    assert not any(t.name == "gpunn-DataLoader-prefetch" and t.is_alive() for t in threading.enumerate())


# -- malformed batches ----------------------------------------------------------------------------
def test_malformed_batches_are_named():
    x, y = _arrays(4)
    cases = [
        ([(x, y), x], r"fit: batch 2 of the training data must be \(x, y\) or \(x, y, sample_weight\), got ndarray"),
        ([(x, y, y, y)], r"batch 1 of the training data must be .* got a tuple of 4"),
        ([(x, y[:3])], r"batch 1 of the training data holds arrays of different lengths \(x: 4, y: 3\); every array "
                       r"of a batch needs one entry per sample on axis 0"),
        ([({"a": x, "b": x[:2]}, y)], r"different lengths \(x: 2, x: 4, y: 4\)"),
        ([(x, y, np.ones((4, 1)))], r"batch 1 of the training data has a sample_weight of shape \(4, 1\); expected one "
                                    r"weight per sample"),
        ([(x, y, np.ones(3))], r"different lengths \(sample_weight: 3, x: 4, y: 4\)"),
    ]
    for source, match in cases:
        data = D.BatchData(source, "training data", "fit")
        with pytest.raises(ValueError, match=match):
            list(data.epoch(0))


def test_class_weight_per_batch_and_not_with_batch_weights():
    x, y = _arrays(4)
    data = D.BatchData([(x, y % 2)], "training data", "fit", class_weight={1: 2.0})
    (_, _, swb), = list(data.epoch(0))
    assert swb.tolist() == [1.0, 2.0, 1.0, 2.0]
    data = D.BatchData([(x, y, np.ones(4))], "training data", "fit", class_weight={1: 2.0})
    with pytest.raises(ValueError, match=r"fit: argument 'class_weight' cannot be combined with sample weights, but "
                                         r"batch 1 of the training data is \(x, y, sample_weight\)"):
        list(data.epoch(0))


def test_error_messages_for_sources():
    gen = (b for b in [])
    err = D.one_shot_error(gen, "x", "fit", 3, "steps_per_epoch")
    assert "one-shot iterator (generator)" in str(err) and "give steps_per_epoch" in str(err)
    assert "the function returned an exhausted iterator" in str(D.no_batches_error(lambda: 0, "data", "fit", 1, True))
    assert str(D.no_batches_error([1], "data", "evaluate")) == "evaluate: the data yielded no batches"
