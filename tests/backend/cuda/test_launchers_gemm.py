"""Tiled GEMM kernels (kernels/gemm.cu) through gemm_launch.gemm and the backends' matmul, against np.matmul.

Tolerance: the elementwise rounding bound of a K-term dot product, summed in any order on both sides,
|got - want| <= (K + 2) * eps(dtype) * (|A| @ |B| + |C0|) (C0: the accumulated-into output), i.e.
about K unit roundoffs relative: 1.2e-7 * K for float32, 2.2e-16 * K for float64 (far below 1e-12 for
these K). A value just under one ulp of the largest product covers K = 0 and exact zeros.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gpunn
from gpunn.backend.cuda import gemm_launch
from tests.kernel_support import Spy, get_kernel_backend

DTYPES = [np.float32, np.float64]
# (M, N, K): tails in every tile dimension of both tiles (128 and 64, BK = 8), vectors of one, K = 1.
SHAPES = [(1, 1, 1), (1, 7, 33), (7, 1, 65), (33, 65, 7), (65, 33, 130), (130, 130, 20), (129, 67, 9)]
# Multiples of 4 in every dimension (the vector path), with tails in M and N for both tiles.
VEC_SHAPES = [(4, 4, 4), (68, 132, 36), (132, 68, 20)]


@pytest.fixture(scope="module")
def be() -> Any:
    return get_kernel_backend("emulated")





def _operands(form: str, m: int, n: int, k: int, dtype: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """a (M x K) and b (K x N) laid out for `form`: a "t" operand is the transpose view of a C-contiguous array."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if form[0] == "t" else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if form[1] == "t" else (k, n)).astype(dtype)
    return (a.T if form[0] == "t" else a), (b.T if form[1] == "t" else b)


def _assert_gemm(got: np.ndarray, a: np.ndarray, b: np.ndarray, c0: np.ndarray | None = None) -> None:
    want = np.matmul(a, b) if c0 is None else c0 + np.matmul(a, b)
    assert got.shape == want.shape and got.dtype == want.dtype
    eps = np.finfo(want.dtype).eps
    k = a.shape[1]
    scale = np.matmul(np.abs(a), np.abs(b)) + (0 if c0 is None else np.abs(c0))
    bound = (k + 2) * eps * scale + np.finfo(want.dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"max error {err.max()}; over the bound at {worst}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("tile", ["128", "64"])
@pytest.mark.parametrize("form", ["nn", "nt", "tn"])
def test_every_form_and_tile_matches_numpy_with_tails(be: Any, form: str, tile: str, dtype: Any) -> None:
    spy = Spy(be.kernels)
    for i, (m, n, k) in enumerate(SHAPES):
        a, b = _operands(form, m, n, k, dtype, seed=i)
        _assert_gemm(gemm_launch.gemm(spy, np, a, b, tile=tile, load="scl"), a, b)
    # A transposed view with one row or column is also C-contiguous: that one runs as nn
    sfx = "f32" if dtype == np.float32 else "f64"
    assert f"gemm_{form}_{tile}_scl_{sfx}" in spy.names and all(s.endswith(f"_{tile}_scl_{sfx}") for s in spy.names)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("tile", ["128", "64"])
@pytest.mark.parametrize("form", ["nn", "nt", "tn"])
def test_vector_path_matches_numpy(be: Any, form: str, tile: str, dtype: Any) -> None:
    spy = Spy(be.kernels)
    for i, (m, n, k) in enumerate(VEC_SHAPES):
        a, b = _operands(form, m, n, k, dtype, seed=10 + i)
        _assert_gemm(gemm_launch.gemm(spy, np, a, b, tile=tile), a, b)  # aligned, divisible: picked by default
    assert set(spy.names) == {f"gemm_{form}_{tile}_vec_{'f32' if dtype == np.float32 else 'f64'}"}


def _misaligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of `a` whose buffer starts one element past a 16-byte boundary."""
    raw = np.empty(a.size + 16, dtype=a.dtype)
    start = next(i for i in range(1, 16) if (raw[i:].__array_interface__["data"][0] % 16) != 0)
    out = raw[start:start + a.size].reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_misaligned_or_indivisible_operands_take_the_scalar_path(be: Any, dtype: Any) -> None:
    spy = Spy(be.kernels)
    a, b = _operands("nn", 68, 36, 20, dtype, seed=3)
    _assert_gemm(gemm_launch.gemm(spy, np, _misaligned(a), b), a, b)
    _assert_gemm(gemm_launch.gemm(spy, np, a, _misaligned(b)), a, b)
    a, b = _operands("nn", 68, 37, 20, dtype, seed=4)  # N = 37: B's rows are not whole vectors
    _assert_gemm(gemm_launch.gemm(spy, np, a, b), a, b)
    assert all(name.startswith("gemm_nn_64_scl") for name in spy.names), spy.names
    with pytest.raises(ValueError, match="'load'"):
        gemm_launch.gemm(be.kernels, np, a, b, load="vec")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("form", ["nn", "nt", "tn"])
def test_accumulate_adds_to_out_in_place(be: Any, form: str, dtype: Any) -> None:
    for i, (m, n, k) in enumerate([(33, 65, 7), (130, 5, 20), (8, 8, 8)]):
        a, b = _operands(form, m, n, k, dtype, seed=20 + i)
        c0 = np.random.default_rng(i).standard_normal((m, n)).astype(dtype)
        out = c0.copy()
        assert gemm_launch.gemm(be.kernels, np, a, b, out=out, accumulate=True) is out
        _assert_gemm(out, a, b, c0)
        out = c0.copy()  # out without accumulate: overwritten
        assert gemm_launch.gemm(be.kernels, np, a, b, out=out) is out
        _assert_gemm(out, a, b)


def test_empty_dimensions(be: Any) -> None:
    a, b = np.ones((3, 0)), np.ones((0, 5))
    np.testing.assert_array_equal(gemm_launch.gemm(be.kernels, np, a, b), np.zeros((3, 5)))  # K = 0: zeros
    out = np.full((3, 5), 2.0)
    gemm_launch.gemm(be.kernels, np, a, b, out=out, accumulate=True)
    np.testing.assert_array_equal(out, np.full((3, 5), 2.0))  # K = 0, accumulating: unchanged
    assert gemm_launch.gemm(be.kernels, np, np.ones((0, 4)), np.ones((4, 5))).shape == (0, 5)


def test_both_operands_transposed_and_strided_views(be: Any) -> None:
    rng = np.random.default_rng(5)
    a0, b0 = rng.standard_normal((9, 13)), rng.standard_normal((11, 9))
    _assert_gemm(gemm_launch.gemm(be.kernels, np, a0.T, b0.T), a0.T, b0.T)  # tt -> b copied, tn
    big = rng.standard_normal((20, 30))
    a, b = big[::2, 1:8], big[3:10, ::3]  # neither C- nor F-contiguous: copied
    _assert_gemm(gemm_launch.gemm(be.kernels, np, a, b), a, b)


def test_tile_heuristic() -> None:
    assert gemm_launch.pick_tile(4096, 4096) == "128"  # 1024 blocks of 128 x 128
    assert gemm_launch.pick_tile(128, 800) == "64"  # 7 blocks of 128: most SMs idle
    assert gemm_launch.pick_tile(1536, 1408) == "128"  # 12 x 11 = 132 blocks: one full wave
    assert gemm_launch.pick_tile(1536, 1407) == "128" and gemm_launch.pick_tile(1408, 1408) == "64"


@pytest.mark.parametrize("call, arg, exc", [
    (lambda k: gemm_launch.gemm(k, np, np.ones((2, 3), np.int32), np.ones((3, 2))), "'a'", TypeError),
    (lambda k: gemm_launch.gemm(k, np, np.ones((2, 3)), np.ones((3, 2), np.float16)), "'b'", TypeError),
    (lambda k: gemm_launch.gemm(k, np, np.ones((2, 3), np.float32), np.ones((3, 2))), "'b'", TypeError),
    (lambda k: gemm_launch.gemm(k, np, np.ones(3), np.ones((3, 2))), "'a'", ValueError),
    (lambda k: gemm_launch.gemm(k, np, np.ones((2, 3)), np.ones((2, 3, 2))), "'b'", ValueError),
    (lambda k: gemm_launch.gemm(k, np, np.ones((2, 3)), np.ones((4, 2))), "'b'", ValueError),
    (lambda k: gemm_launch.gemm(k, np, [[1.0]], np.ones((1, 1))), "'a'", TypeError),
    (lambda k: gemm_launch.gemm(k, np, np.ones((2, 3)), np.ones((3, 2)), accumulate=True), "'out'", ValueError),
    (lambda k: gemm_launch.gemm(k, np, np.ones((2, 3)), np.ones((3, 2)), out=np.ones((2, 3))), "'out'", ValueError),
    (lambda k: gemm_launch.gemm(k, np, np.ones((2, 3)), np.ones((3, 2)), out=np.ones((2, 2), np.float32)), "'out'",
     TypeError),
    (lambda k: gemm_launch.gemm(k, np, np.ones((2, 3)), np.ones((3, 2)), tile="256"), "'tile'", ValueError),
    (lambda k: gemm_launch.gemm(k, np, np.ones((2, 3)), np.ones((3, 2)), load="fast"), "'load'", ValueError),
])
def test_bad_arguments_name_the_argument(be: Any, call: Any, arg: str, exc: Any) -> None:
    with pytest.raises(exc, match=arg):
        call(be.kernels)


def test_out_must_be_writable_contiguous_and_separate(be: Any) -> None:
    a, b = np.ones((2, 3)), np.ones((3, 2))
    ro = np.zeros((2, 2))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="'out'.*writable"):
        gemm_launch.gemm(be.kernels, np, a, b, out=ro)
    with pytest.raises(ValueError, match="'out'.*C-contiguous"):
        gemm_launch.gemm(be.kernels, np, a, b, out=np.zeros((2, 4))[:, ::2])
    sq = np.ones((3, 3))
    with pytest.raises(ValueError, match="'out'.*overlap"):
        gemm_launch.gemm(be.kernels, np, sq, np.ones((3, 3)), out=sq)


# -- through the backend op ----------------------------------------------------------------------
def test_backend_matmul_routes_2d_products_to_the_kernel(be: Any) -> None:
    spy = Spy(be.kernels)
    saved, be.kernels = be.kernels, spy
    try:
        a, b = _operands("tn", 40, 24, 16, np.float32)
        _assert_gemm(be.matmul(a, b), a, b)
        assert spy.names == ["gemm_tn_64_vec_f32"]
        x = np.ones((2, 3, 4), np.float32)  # batched: the generic (broadcasting) path
        np.testing.assert_array_equal(be.matmul(x, np.ones((4, 5), np.float32)), np.full((2, 3, 5), 4.0))
        np.testing.assert_array_equal(be.matmul(np.ones((2, 3)), np.ones((3, 2), np.float32)), np.full((2, 2), 3.0))
        assert len(spy.names) == 1  # neither the batched nor the mixed-dtype product reached a kernel
        with pytest.raises(ValueError, match="matmul: argument 'b'"):  # the generic op's message
            be.matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))
        out = np.ones((40, 24), np.float32)
        be.matmul_acc(out, a, b)
        _assert_gemm(out, a, b, np.ones((40, 24), np.float32))
        assert spy.names[-1] == "gemm_tn_64_vec_f32" and len(spy.names) == 2
    finally:
        be.kernels = saved


def test_matmul_switched_off_uses_the_generic_path() -> None:
    from gpunn.backend.cuda.emulated import EmulatedBackend
    get_kernel_backend("emulated")
    off = EmulatedBackend(use_kernels={"im2col"})
    a, b = _operands("nn", 5, 6, 7, np.float64)
    np.testing.assert_array_equal(off.matmul(a, b), np.matmul(a, b))
    out = np.zeros((5, 6))
    off.matmul_acc(out, a, b)
    np.testing.assert_array_equal(out, np.matmul(a, b))
    assert "gemm" not in off.kernels.compiled_families()


def _dense_step(backend: str, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, ...]:
    from gpunn.layers import Dense
    with gpunn.use_backend(backend) as b:
        gpunn.manual_seed(0)
        layer = Dense(dy.shape[-1], activation="relu")
        y = layer.forward(b.asarray(x), training=True)
        dx = layer.backward(b.asarray(dy))
        return tuple(b.to_numpy(v) for v in (y, dx, layer.params["weight"].grad, layer.params["bias"].grad))


def test_dense_forward_backward_matches_numpy(be: Any) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((37, 45)).astype(np.float32)
    dy = rng.standard_normal((37, 19)).astype(np.float32)
    want = _dense_step("numpy", x, dy)
    got = _dense_step("emulated", x, dy)
    with gpunn.use_backend("emulated") as emu:
        assert "gemm" in emu.kernels.compiled_families()
    for name, g, w in zip(("y", "dx", "dW", "db"), got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(np.abs(w).max()), err_msg=name)


def test_dense_float64_gradcheck_on_the_kernels(be: Any) -> None:
    from gpunn.layers import Dense
    from gpunn.testing import gradcheck
    x = np.random.default_rng(8).standard_normal((5, 9))
    with gpunn.use_backend("emulated") as emu:
        gpunn.manual_seed(2)
        assert "matmul" in emu.use_kernels
        assert gradcheck(Dense(6, activation="tanh"), x, training=True)


def test_dimensions_must_fit_the_kernels_int_indices(be: Any) -> None:
    # Zero-size operands: no memory, but M is over int32 (or within a tile of it).
    with pytest.raises(ValueError, match="'M'"):
        gemm_launch.gemm(be.kernels, np, np.empty((2**31, 0)), np.empty((0, 2)))
    with pytest.raises(ValueError, match="int indices"):
        gemm_launch.gemm(be.kernels, np, np.empty((2**31 - 10, 0)), np.empty((0, 2)))


def test_matmul_acc_falls_back_for_outputs_the_kernel_cannot_take(be: Any) -> None:
    a, b = _operands("nn", 6, 5, 4, np.float32)
    want = 1 + np.matmul(a, b)
    for out in (np.ones((5, 6), np.float32).T,  # F-contiguous
                np.ones((6, 5), np.float64)):  # another dtype: numpy's casting rules
        be.matmul_acc(out, a, b)
        np.testing.assert_allclose(out, want, rtol=1e-6)
