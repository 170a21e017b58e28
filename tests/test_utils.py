"""gpunn.utils.to_categorical, as Keras's: shapes, num_classes, dtype, label forms, bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn.utils import to_categorical


def test_labels_become_one_hot_rows():
    out = to_categorical([0, 2, 1, 2])
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32)[[0, 2, 1, 2]])


def test_num_classes_and_dtype():
    out = to_categorical(np.array([1, 0]), num_classes=4, dtype="int64")
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[0, 1, 0, 0], [1, 0, 0, 0]])
    assert to_categorical([1], 2, dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("y, shape", [(np.array([[1], [0], [2]]), (3, 3)),      # (N, 1) counts as (N,)
                                      (np.array([[0, 1], [2, 1]]), (2, 2, 3)),  # any shape gets a class axis
                                      (np.array(2), (3,)),                      # a single label
                                      (np.array([0.0, 2.0, 1.0]), (3, 3))])     # floats holding integers
def test_shapes_follow_keras(y, shape):
    out = to_categorical(y, num_classes=3)
    assert out.shape == shape
    np.testing.assert_array_equal(out.argmax(axis=-1), np.asarray(y).reshape(shape[:-1]))
    assert out.sum() == np.asarray(y).size


def test_it_feeds_the_categorical_loss():
    y = np.array([0, 2, 1])
    probs = np.full((3, 3), 1 / 3)
    loss = gpunn.losses.CategoricalCrossentropy()
    assert loss.forward(probs, to_categorical(y)) == pytest.approx(np.log(3), rel=1e-6)
    assert gpunn.utils.to_categorical is to_categorical  # exported from the root


@pytest.mark.parametrize("args, kwargs, err, words", [
    (([0, 3],), {"num_classes": 3}, ValueError, r"^to_categorical: argument 'y' has labels outside \[0, 3\): max 3"),
    (([0, -1],), {}, ValueError, r"argument 'y' holds negative class labels \(min -1\)"),
    (([0.5, 1.0],), {}, ValueError, "argument 'y' holds non-integer class labels"),
    (([0, np.nan],), {}, ValueError, "non-integer class labels"),
    ((["a", "b"],), {}, TypeError, "argument 'y' must hold integer class labels, got dtype <U1"),
    (("abc",), {}, TypeError, "argument 'y' must be an array of integer class labels, got str"),
    ((None,), {}, TypeError, "argument 'y' must be an array"),
    (([0, 1],), {"num_classes": 0}, ValueError, "argument 'num_classes' must be a positive int"),
    (([0, 1],), {"num_classes": 2.0}, ValueError, "argument 'num_classes' must be a positive int"),
    (([],), {}, ValueError, "argument 'num_classes' is required when 'y' holds no labels"),
    (([0, 1],), {"dtype": "no_such_type"}, TypeError, "argument 'dtype' must be a NumPy dtype"),
    (([0, 1],), {"dtype": "U3"}, TypeError, "argument 'dtype' must be a numeric dtype"),
])
def test_bad_inputs(args, kwargs, err, words):
    with pytest.raises(err, match=words):
        to_categorical(*args, **kwargs)


def test_no_labels_with_num_classes():
    assert to_categorical(np.zeros(0, np.int64), num_classes=3).shape == (0, 3)


def test_to_categorical_takes_a_tensor():
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(to_categorical(torch.tensor([0, 2])), [[1, 0, 0], [0, 0, 1]])
