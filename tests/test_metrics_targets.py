"""mse and mae take targets of shape (N,) for an output of shape (N, 1), as Keras does; other
mismatches stay errors."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.metrics import get_metric, mae, mse

PRED = np.array([[1.0], [2.0], [4.0]])
TARGET = np.array([1.5, 2.0, 3.0])


@pytest.mark.parametrize("fn, expected", [(mse, (0.25 + 0 + 1) / 3), (mae, (0.5 + 0 + 1) / 3)])
def test_flat_targets_for_a_column_output(fn, expected):
    assert fn(TARGET, PRED) == pytest.approx(expected, rel=1e-15)
    assert fn(TARGET, PRED) == fn(TARGET[:, None], PRED)
    assert get_metric(fn.__name__)[1](TARGET, PRED) == fn(TARGET, PRED)


@pytest.mark.parametrize("fn", [mse, mae])
@pytest.mark.parametrize("true, pred", [(np.zeros(3), np.zeros((3, 2))), (np.zeros((3, 1)), np.zeros(3)),
                                        (np.zeros(2), np.zeros((3, 1)))])
def test_other_mismatches_stay_errors(fn, true, pred):
    with pytest.raises(ValueError, match=rf"^{fn.__name__}: argument 'y_true' must have the shape of y_pred"):
        fn(true, pred)
