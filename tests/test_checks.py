"""gpunn/_checks.py, function by function in its order: what each validator accepts, what it
refuses, with which exception and which words ("{where}: argument '{name}' must be ..., got ...")."""
from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest

from gpunn import _checks as C

NAN, INF = float("nan"), float("inf")


def refused(exc: type[Exception], text: str):
    """pytest.raises for an exact message start."""
    return pytest.raises(exc, match="^" + re.escape(text))


def test_checks_imports_nothing_from_gpunn():
    tree = ast.parse(Path(C.__file__).read_text())
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in modules if m == "gpunn" or m.startswith("gpunn.")]
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]


# -- is_int, is_real --------------------------------------------------------------------------------
@pytest.mark.parametrize("value, numpy_ok, python_ok", [
    (0, True, True), (-3, True, True), (10**30, True, True), (np.int64(2), True, False), (np.uint8(2), True, False),
    (True, False, False), (np.bool_(True), False, False), (2.0, False, False), (np.float64(2), False, False),
    ("2", False, False), (None, False, False), (np.array(2), False, False),
])
def test_is_int(value, numpy_ok, python_ok):
    assert C.is_int(value) is numpy_ok
    assert C.is_int(value, numpy=False) is python_ok


@pytest.mark.parametrize("value, numpy_ok, python_ok", [
    (0, True, True), (1.5, True, True), (NAN, True, True), (INF, True, True), (np.float64(1), True, True),
    (np.float32(1), True, False), (np.int32(1), True, False), (True, False, False), (np.bool_(False), False, False),
    ("1", False, False), (None, False, False), (1j, False, False), (np.array(1.0), False, False),
])
def test_is_real(value, numpy_ok, python_ok):
    assert C.is_real(value) is numpy_ok
    assert C.is_real(value, numpy=False) is python_ok


# -- int_arg, positive_int --------------------------------------------------------------------------
def test_int_arg_accepts_and_returns_python_ints():
    assert C.int_arg(0, "n", "f", 0) == 0
    assert C.int_arg(-5, "n", "f") == -5  # no minimum: any int
    out = C.int_arg(np.int64(7), "n", "f", 1)
    assert out == 7 and type(out) is int


@pytest.mark.parametrize("value", [-1, True, False, 2.0, 1.5, "3", None, NAN, INF, np.bool_(True)])
def test_int_arg_refuses_with_value_error(value):
    with refused(ValueError, f"f: argument 'n' must be an int >= 0, got {value!r}"):
        C.int_arg(value, "n", "f", 0)


def test_int_arg_minimum_is_inclusive_and_wording():
    assert C.int_arg(2, "n", "f", 2) == 2
    with refused(ValueError, "f: argument 'n' must be an int >= 2, got 1"):
        C.int_arg(1, "n", "f", 2)
    with refused(ValueError, "f: argument 'n' must be an int, got 1.0"):
        C.int_arg(1.0, "n", "f")
    with refused(ValueError, "f: argument 'seed' must be a non-negative int or None, got -1"):
        C.int_arg(-1, "seed", "f", 0, want="a non-negative int or None")


def test_int_arg_numpy_false_refuses_numpy_integers():
    assert C.int_arg(3, "n", "f", 0, numpy=False) == 3
    with refused(ValueError, "f: argument 'n' must be an int >= 0, got "):
        C.int_arg(np.int64(3), "n", "f", 0, numpy=False)


@pytest.mark.parametrize("value", [0, -1, True, 1.0, 2.5, "1", None])
def test_positive_int_refuses(value):
    with refused(ValueError, f"Dense: argument 'units' must be a positive int, got {value!r}"):
        C.positive_int(value, "units", "Dense")


def test_positive_int_boundary_and_numpy():
    assert C.positive_int(1, "units", "Dense") == 1
    assert C.positive_int(np.int32(4), "units", "Dense") == 4
    with refused(ValueError, "Dense: argument 'units' must be a positive int"):
        C.positive_int(np.int32(4), "units", "Dense", numpy=False)


# -- real_arg ---------------------------------------------------------------------------------------
def test_real_arg_returns_python_floats():
    out = C.real_arg(np.float32(0.5), "x", "f", 0, 1)
    assert out == 0.5 and type(out) is float
    assert type(C.real_arg(3, "x", "f")) is float


@pytest.mark.parametrize("lo, hi, lo_open, hi_open, want", [
    (None, None, False, False, "a finite float"),
    (0, None, False, False, ">= 0"), (0, None, True, False, "> 0"), (1.0, None, False, False, ">= 1.0"),
    (None, 1, False, False, "<= 1"), (None, 1, False, True, "< 1"),
    (0.0, 1.0, False, True, "in [0.0, 1.0)"), (0, 1, True, True, "in (0, 1)"), (0, 1, False, False, "in [0, 1]"),
])
def test_real_arg_words_its_bounds(lo, hi, lo_open, hi_open, want):
    with refused(ValueError, f"f: argument 'x' must be {want}, got nan"):
        C.real_arg(NAN, "x", "f", lo, hi, lo_open=lo_open, hi_open=hi_open)


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_real_arg_refuses_non_finite_values_even_unbounded(value):
    with refused(ValueError, f"f: argument 'x' must be a finite float, got {value!r}"):
        C.real_arg(value, "x", "f")


def test_real_arg_boundaries():
    assert C.real_arg(0, "x", "f", 0) == 0.0  # closed
    assert C.real_arg(1.0, "x", "f", 0, 1) == 1.0
    with refused(ValueError, "f: argument 'x' must be > 0, got 0"):
        C.real_arg(0, "x", "f", 0, lo_open=True)
    with refused(ValueError, "f: argument 'x' must be in [0, 1), got 1.0"):
        C.real_arg(1.0, "x", "f", 0, 1, hi_open=True)
    with refused(ValueError, "f: argument 'x' must be >= 0, got -1e-300"):
        C.real_arg(-1e-300, "x", "f", 0)
    assert C.real_arg(np.nextafter(1.0, 0.0), "x", "f", 0, 1, hi_open=True) < 1.0


@pytest.mark.parametrize("value", [True, False, np.bool_(True), "0.5", None, [0.5], 1j, np.array(0.5)])
def test_real_arg_wrong_types(value):
    """A value error by default, a TypeError with type_error; the words say a float is wanted."""
    with refused(ValueError, f"f: argument 'x' must be a float in [0, 1), got {value!r}"):
        C.real_arg(value, "x", "f", 0, 1, hi_open=True)
    with refused(TypeError, f"f: argument 'x' must be a float in [0, 1), got {type(value).__name__} {value!r}"):
        C.real_arg(value, "x", "f", 0, 1, hi_open=True, type_error=True)
    with refused(TypeError, "f: argument 'x' must be a finite float, got"):
        C.real_arg(value, "x", "f", type_error=True)


def test_real_arg_type_error_is_only_for_the_type():
    with refused(ValueError, "f: argument 'x' must be > 0, got -1"):
        C.real_arg(-1, "x", "f", 0, lo_open=True, type_error=True)


def test_real_arg_want_and_numpy():
    with refused(ValueError, "f: argument 'lr' must be a finite float >= 0, got -0.1"):
        C.real_arg(-0.1, "lr", "f", 0, want="a finite float >= 0")
    with refused(ValueError, "f: argument 'p' must be a probability in [0, 1], got "):
        C.real_arg(np.float32(0.5), "p", "f", 0, 1, want="a probability in [0, 1]", numpy=False)
    assert C.real_arg(np.float64(0.5), "p", "f", 0, 1, numpy=False) == 0.5  # np.float64 is a float


# -- nonneg_real, positive_real ---------------------------------------------------------------------
@pytest.mark.parametrize("value", [-0.1, -1, NAN, INF, True, "1", None])
def test_nonneg_real_refuses(value):
    with refused(ValueError, f"L1: argument 'l' must be a non-negative float, got {value!r}"):
        C.nonneg_real(value, "l", "L1")


@pytest.mark.parametrize("value", [0, -0.1, -1, NAN, INF, False, "1", None])
def test_positive_real_refuses(value):
    with refused(ValueError, f"Huber: argument 'delta' must be a positive float, got {value!r}"):
        C.positive_real(value, "delta", "Huber")


def test_nonneg_and_positive_real_boundaries():
    assert C.nonneg_real(0, "l", "L1") == 0.0
    assert C.positive_real(5e-324, "eps", "f") == 5e-324
    assert C.nonneg_real(np.float32(0.25), "l", "L1") == 0.25
    with refused(ValueError, "L1: argument 'l' must be a non-negative float"):
        C.nonneg_real(np.float32(0.25), "l", "L1", numpy=False)
    with refused(ValueError, "f: argument 'eps' must be a positive float"):
        C.positive_real(np.int64(1), "eps", "f", numpy=False)


# -- pair, real_pair --------------------------------------------------------------------------------
def test_pair():
    assert C.pair(3, "k", "f") == (3, 3)
    assert C.pair([1, np.int64(2)], "k", "f") == (1, 2)
    assert C.pair(0, "k", "f") == (0, 0)
    with refused(ValueError, "f: argument 'k' must be >= 1, got (1, 0)"):
        C.pair((1, 0), "k", "f", minimum=1)
    for bad in (True, 2.0, (1, 2, 3), (1, True), "3", None, (1.0, 2)):
        with refused(TypeError, "f: argument 'k' must be an int or a pair of ints, got"):
            C.pair(bad, "k", "f")


def test_real_pair():
    assert C.real_pair(0.5, "t", "f") == (0.5, 0.5)
    assert C.real_pair((0, np.float32(0.25)), "t", "f") == (0.0, 0.25)
    assert C.real_pair((1, 2), "s", "f", minimum=1.0) == (1.0, 2.0)
    for bad in ((-0.1, 0.0), (0.0, NAN), INF):
        with refused(ValueError, "f: argument 't' must be finite and >= 0.0, got"):
            C.real_pair(bad, "t", "f")
    for bad in (True, "0.5", (0.1,), (0.1, False), None):
        with refused(TypeError, "f: argument 't' must be a number or a pair of numbers, got"):
            C.real_pair(bad, "t", "f")


# -- arrays, dtypes, axes ---------------------------------------------------------------------------
def test_check_float_array():
    C.check_float_array(np.zeros((2, 3), np.float32), "x", "f", 2)
    with refused(TypeError, "f: argument 'x' must be an array, got list"):
        C.check_float_array([1.0], "x", "f")
    with refused(TypeError, "f: argument 'x' must be a floating-point array, got dtype int64"):
        C.check_float_array(np.zeros(2, np.int64), "x", "f")
    with refused(ValueError, "f: argument 'x' must have 2 or 4 dimensions (N, C), got shape (3,)"):
        C.check_float_array(np.zeros(3), "x", "f", (2, 4), "(N, C)")
    with refused(ValueError, "f: argument 'x' has an empty batch"):
        C.check_float_array(np.zeros((0, 3)), "x", "f")


def test_model_dtype():
    assert C.model_dtype("float32", "dtype", "f") == np.float32
    assert C.model_dtype(np.dtype(">f8"), "dtype", "f") == np.dtype("<f8").newbyteorder("=")
    with refused(ValueError, "f: argument 'dtype' must be float32 or float64, got float16"):
        C.model_dtype(np.float16, "dtype", "f")
    for bad in (None, True, "int32", "nonsense"):
        with refused(TypeError, "f: argument 'dtype' must be float32 or float64"):
            C.model_dtype(bad, "dtype", "f")


def test_axis_arg_and_check_axis():
    assert C.axis_arg(np.int64(-1), "axis", "f") == -1
    for bad in (True, 1.0, None):
        with refused(TypeError, f"f: argument 'axis' must be an int, got {bad!r}"):
            C.axis_arg(bad, "axis", "f")
    C.check_axis(-2, (3, 4), "axis", "f")
    with refused(ValueError, "f: argument 'axis'=2 is out of range for argument 'x' of shape (3, 4)"):
        C.check_axis(2, (3, 4), "axis", "f")


def test_check_finite():
    C.check_finite(np.zeros(3), "x", "f")
    C.check_finite(np.array([1, 2], np.int64), "x", "f")  # not floating: nothing to check
    C.check_finite(np.zeros(0), "x", "f")
    with refused(ValueError, "f: argument 'x' contains non-finite values (NaN)"):
        C.check_finite(np.array([1.0, np.nan]), "x", "f")
    with refused(ValueError, "f: argument 'x' contains non-finite values (Inf)"):
        C.check_finite(np.array([1.0, -np.inf]), "x", "f")


def test_check_grad_shape():
    C.check_grad_shape(np.zeros((2, 3)), (2, 3), "f")
    with refused(TypeError, "f: argument 'dy' must be an array, got float"):
        C.check_grad_shape(1.0, (2, 3), "f")
    with refused(ValueError, "f: argument 'dy' must have the shape of the forward output (2, 3), got (3, 2)"):
        C.check_grad_shape(np.zeros((3, 2)), (2, 3), "f")


def test_shape_arg():
    assert C.shape_arg([2, np.int64(3)], "f") == (2, 3)
    assert C.shape_arg((), "f") == ()
    for bad, words in ((2.0, "got 2.0"), ("ab", "got 'ab'"), ((2, 2.0), "entry 1 is a float"),
                       ((True,), "entry 0 is a bool")):
        with refused(TypeError, "f: argument 'shape' must be a tuple of ints"):
            C.shape_arg(bad, "f")
        with pytest.raises(TypeError, match=re.escape(words)):
            C.shape_arg(bad, "f")
    with refused(ValueError, "f: argument 'shape' must have non-negative sizes, got (2, -1)"):
        C.shape_arg((2, -1), "f")


def test_float_dtype():
    assert C.float_dtype("float16", "f") == np.float16
    for bad in ("int32", None, "nonsense", bool):
        with refused(TypeError, "f: argument 'dtype' must be a floating-point dtype"):
            C.float_dtype(bad, "f")


# -- finite_real ------------------------------------------------------------------------------------
def test_finite_real():
    assert C.finite_real(np.float32(0.5), "std", "normal", minimum=0.0) == 0.5
    assert C.finite_real(0, "std", "normal", minimum=0.0) == 0.0  # inclusive
    with refused(ValueError, "normal: argument 'std' must be >= 0, got -0.1"):
        C.finite_real(-0.1, "std", "normal", minimum=0.0)
    with refused(ValueError, "orthogonal: argument 'gain' must be a positive float (> 0), got 0"):
        C.finite_real(0, "gain", "orthogonal", minimum=0.0, strict=True)
    for value in (NAN, INF):
        with refused(ValueError, f"normal: argument 'std' must be a finite float, got {value!r}"):
            C.finite_real(value, "std", "normal", minimum=0.0)
    for value in (True, "1", None):
        with refused(TypeError, f"normal: argument 'std' must be a finite float, got {type(value).__name__}"):
            C.finite_real(value, "std", "normal")
    assert math.isclose(C.finite_real(-2.5, "mean", "normal"), -2.5)


# -- data_format_arg, sample_weight_arg, class_weight_arg ------------------------------------------
def test_data_format_arg():
    assert C.data_format_arg("channels_last", "data_format", "f") == "channels_last"
    assert C.data_format_arg("Channels_First", "data_format", "f") == "channels_first"
    with refused(ValueError, "f: argument 'data_format' must be 'channels_first' (N, C, H, W) or 'channels_last' "
                             "(N, H, W, C), got 'NHWC'"):
        C.data_format_arg("NHWC", "data_format", "f")
    for bad in (None, 1, ("channels_last",)):
        with refused(TypeError, "f: argument 'data_format' must be 'channels_first'"):
            C.data_format_arg(bad, "data_format", "f")


def test_sample_weight_arg():
    out = C.sample_weight_arg([1, 0, 2.5], 3, "sample_weight", "fit")
    assert out.dtype == np.float64 and out.tolist() == [1.0, 0.0, 2.5]
    with refused(ValueError, "fit: argument 'sample_weight' must have shape (3,), one weight per sample, got shape "
                             "(3, 1)"):
        C.sample_weight_arg(np.ones((3, 1)), 3, "sample_weight", "fit")
    with refused(ValueError, "fit: argument 'sample_weight' must have shape (3,)"):
        C.sample_weight_arg(np.ones(4), 3, "sample_weight", "fit")
    with refused(ValueError, "fit: argument 'sample_weight' must hold finite weights >= 0"):
        C.sample_weight_arg(np.array([1.0, -1.0, 1.0]), 3, "sample_weight", "fit")
    with refused(ValueError, "fit: argument 'sample_weight' must hold finite weights >= 0"):
        C.sample_weight_arg(np.array([1.0, NAN, 1.0]), 3, "sample_weight", "fit")
    with refused(ValueError, "fit: argument 'sample_weight' is all zeros"):
        C.sample_weight_arg(np.zeros(3), 3, "sample_weight", "fit")
    with refused(TypeError, "fit: argument 'sample_weight' must hold real numbers, got dtype bool"):
        C.sample_weight_arg(np.ones(3, bool), 3, "sample_weight", "fit")
    with refused(TypeError, "fit: argument 'sample_weight' must be a 1-D NumPy array with one weight per sample, "
                            "got str"):
        C.sample_weight_arg("1", 3, "sample_weight", "fit")


def test_class_weight_arg():
    assert C.class_weight_arg({0: 1, np.int64(2): 0.5}, "class_weight", "fit") == {0: 1.0, 2: 0.5}
    with refused(TypeError, "fit: argument 'class_weight' must be a non-empty dict class index -> weight, got {}"):
        C.class_weight_arg({}, "class_weight", "fit")
    with refused(TypeError, "fit: argument 'class_weight' must be a non-empty dict class index -> weight, got list"):
        C.class_weight_arg([1.0], "class_weight", "fit")
    with refused(ValueError, "fit: argument 'class_weight['a']' must be keyed by a class index (an int >= 0), "
                             "got 'a'"):
        C.class_weight_arg({"a": 1.0}, "class_weight", "fit")
    with refused(ValueError, "fit: argument 'class_weight[-1]' must be keyed by a class index"):
        C.class_weight_arg({-1: 1.0}, "class_weight", "fit")
    with refused(ValueError, "fit: argument 'class_weight[True]' must be keyed by a class index"):
        C.class_weight_arg({True: 1.0}, "class_weight", "fit")
    with refused(ValueError, "fit: argument 'class_weight[1]' must be a finite weight >= 0, got -2"):
        C.class_weight_arg({1: -2}, "class_weight", "fit")
    with refused(ValueError, "fit: argument 'class_weight[1]' must be a finite weight >= 0, got nan"):
        C.class_weight_arg({1: NAN}, "class_weight", "fit")
