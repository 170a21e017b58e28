"""check_xy (gpunn/train/model.py) on several inputs and outputs: lists and dicts of arrays, each
checked and named in errors, one sample count for all; a one-input model keeps its old forms."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Input, Model
from gpunn.layers import Add, Dense
from gpunn.train.model import check_xy


def two_in_two_out() -> Model:
    a, b = Input((3,), name="a"), Input((3,), name="b")
    s = Add()([a, b])
    return Model([a, b], [Dense(2, name="p")(s), Dense(1, name="q")(s)])


X = np.ones((4, 3), np.float32)


def test_lists_and_dicts_are_checked_leaf_by_leaf():
    model = two_in_two_out()
    x, y = check_xy([X, X], {"p": np.zeros(4), "q": np.zeros((4, 1))}, "fit", model=model)
    assert isinstance(x, list) and len(x) == 2 and set(y) == {"p", "q"}
    x, _ = check_xy({"a": X, "b": X.astype(">f4")}, None, "predict", need_y=False, model=model)
    assert x["b"].dtype.byteorder in "=<"  # swapped to native order once


def test_errors_name_the_leaf():
    model = two_in_two_out()
    with pytest.raises(TypeError, match=r"argument 'x\[1\]' must be a floating-point array"):
        check_xy([X, X.astype(np.int32)], None, "fit", need_y=False, model=model)
    with pytest.raises(ValueError, match=r"argument 'x\['b'\]' contains non-finite values"):
        check_xy({"a": X, "b": X * np.inf}, None, "fit", need_y=False, model=model)
    with pytest.raises(ValueError, match=r"arguments 'x\[0\]' and 'x\[1\]' must have the same number of samples"):
        check_xy([X, X[:2]], None, "fit", need_y=False, model=model)
    with pytest.raises(ValueError, match=r"arguments 'x\[0\]' and 'y\['q'\]' must have the same number of samples, "
                                         "got 4 and 3"):
        check_xy([X, X], {"p": np.zeros(4), "q": np.zeros(3)}, "fit", model=model)
    with pytest.raises(TypeError, match="is a dict whose keys must be names"):
        check_xy({1: X}, None, "fit", need_y=False, model=model)


def test_one_input_models_keep_their_forms():
    seq = gpunn.Sequential([Dense(2, input_shape=(3,))])
    x, _ = check_xy([X], None, "fit", need_y=False, model=seq)  # [x] for one input
    assert x is not None and x.shape == (4, 3)
    rows = [np.ones(3, np.float32), np.zeros(3, np.float32)]  # a list of samples is stacked, as ever
    x, _ = check_xy(rows, None, "fit", need_y=False, model=seq)
    assert x.shape == (2, 3)
    x, y = check_xy([[0.5, 1.0, 2.0]], [1], "fit", model=seq)
    assert x.shape == (1, 3) and y.shape == (1,)


def test_without_a_model_a_list_of_arrays_is_several():
    x, _ = check_xy([X, X], None, "fit", need_y=False)
    assert isinstance(x, list)
