"""Philox4x32-10 dropout (kernels/philox.cu) against its NumPy reference (gpunn/backend/ops/dropout.py).

The reference is checked against Random123's published known-answer vectors; the kernel is then
held to the reference bit for bit (the keep mask, y and dx are exact: the same products), and the
state in device memory to its documented advance (ceil(n/4) blocks a float32 draw, ceil(n/2) a
float64 one).
"""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn.backend.cuda import dropout_launch, launchers
from gpunn.backend.ops.dropout import (dropout_scale, philox4x32, philox_blocks, philox_keep,
                                       philox_uniform)
from gpunn.layers import Dropout
from gpunn.testing import gradcheck
from tests.kernel_support import device_backend, get_kernel_backend, reference, to_host  # noqa: F401

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]

# Random123 1.x, examples/kat_vectors, "philox4x32 10" lines: counter, key, expected output.
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


# -- the reference --------------------------------------------------------------------------
@pytest.mark.parametrize("counter,key,expected", KAT, ids=["zeros", "ones", "pi"])
def test_reference_matches_random123_known_answers(counter, key, expected):
    out = philox4x32(np.array(counter), np.array(key))
    assert out.dtype == np.uint32
    assert [int(w) for w in out] == list(expected)


def test_reference_is_vectorized_over_counters():
    counters = np.array([c for c, _, _ in KAT])
    keys = np.array([k for _, k, _ in KAT])
    np.testing.assert_array_equal(philox4x32(counters, keys), np.array([e for _, _, e in KAT], dtype=np.uint32))


def test_uniform_follows_the_documented_stream():
    seed, offset = 0x0123456789ABCDEF, 5
    words = philox4x32(np.array([offset, 0, 0, 0]), np.array([seed & 0xFFFFFFFF, seed >> 32])).astype(np.uint64)
    u32 = philox_uniform(seed, offset, 4, np.float32)
    np.testing.assert_array_equal(u32, (words >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24))
    u64 = philox_uniform(seed, offset, 2, np.float64)
    bits = [((int(words[1]) << 32) | int(words[0])) >> 11, ((int(words[3]) << 32) | int(words[2])) >> 11]
    np.testing.assert_array_equal(u64, np.array(bits, dtype=np.float64) * 2.0 ** -53)
    # the counter's high word carries: offset 2^32 - 1 then 2^32
    w = philox4x32(np.array([[0xFFFFFFFF, 0, 0, 0], [0, 1, 0, 0]]), np.array([1, 0]))
    np.testing.assert_array_equal(philox_uniform(1, 0xFFFFFFFF, 8, np.float32),
                                  (w.reshape(-1) >> 8).astype(np.float32) * np.float32(2.0 ** -24))
    # a draw continues where the previous one stopped
    full = philox_uniform(3, 0, 40, np.float32)
    np.testing.assert_array_equal(philox_uniform(3, philox_blocks(13, np.float32), 24, np.float32), full[16:])
    assert philox_blocks(13, np.float32) == 4 and philox_blocks(13, np.float64) == 7
    with pytest.raises(TypeError, match="'dtype'"):
        philox_uniform(0, 0, 4, np.float16)


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_is_uniform(dtype):
    u = philox_uniform(11, 0, 200_000, dtype)
    assert u.dtype == dtype and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    counts = np.histogram(u, bins=16, range=(0.0, 1.0))[0]
    expected = u.size / 16
    assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected))


# -- the kernel ------------------------------------------------------------------------------
def _draw(be, x, rate):
    y, mask = be.dropout_forward(be.asarray(x), rate)
    return to_host(be, y), to_host(be, mask)


def _state(be):
    return [int(v) for v in to_host(be, be.philox_state)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (5,), (4,), (3, 7), (2, 3, 5, 7), (1031,)], ids=str)
def test_kernel_matches_the_reference_bit_for_bit(device_backend, dtype, shape):
    be = device_backend
    rate = 0.3
    be.manual_seed(1234)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    n = x.size
    y, mask = _draw(be, x, rate)
    keep = philox_keep(1234, 0, n, rate, dtype).reshape(shape)
    assert mask.dtype == np.uint8 and mask.shape == shape and y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(mask, keep)
    np.testing.assert_array_equal(y, x * (keep * dropout_scale(rate, dtype)))
    assert _state(be) == [1234, philox_blocks(n, dtype)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_draws_advance_the_offset_and_reseeding_repeats_them(device_backend, dtype):
    be = device_backend
    x = np.ones((3, 67), dtype=dtype)  # 201 elements: a tail in both dtypes
    blocks = philox_blocks(x.size, dtype)
    be.manual_seed(99)
    masks = [_draw(be, x, 0.5)[1] for _ in range(3)]
    assert _state(be) == [99, 3 * blocks]
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])
    for k, m in enumerate(masks):
        np.testing.assert_array_equal(m.ravel(), philox_keep(99, k * blocks, x.size, 0.5, dtype))
    be.manual_seed(99)
    assert _state(be) == [99, 0]
    np.testing.assert_array_equal(_draw(be, x, 0.5)[1], masks[0])
    np.testing.assert_array_equal(_draw(be, x, 0.5)[1], masks[1])


def test_state_is_rewritten_in_place_and_created_lazily(emulated):
    from gpunn.backend.cuda.emulated import EmulatedBackend
    be = EmulatedBackend()
    be.manual_seed(2 ** 64 + 5)  # taken mod 2^64
    state = be.philox_state
    assert state.dtype == np.uint64 and state.shape == (2,) and _state(be) == [5, 0]
    be.dropout_forward(np.ones(10, np.float32), 0.5)
    assert _state(be) == [5, 3]
    be.manual_seed(6)
    assert be.philox_state is state and _state(be) == [6, 0]  # the same buffer: a graph keeps pointing at it
    unseeded = EmulatedBackend()
    assert int(unseeded.philox_state[1]) == 0


def test_gpunn_manual_seed_reseeds_the_emulated_backend(emulated):
    x = np.random.default_rng(3).standard_normal((8, 9)).astype(np.float32)
    with gpunn.use_backend(emulated):
        gpunn.manual_seed(42)
        first = [_draw(emulated, x, 0.25) for _ in range(2)]
        gpunn.manual_seed(42)
        again = [_draw(emulated, x, 0.25) for _ in range(2)]
    for (y0, m0), (y1, m1) in zip(first, again):
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(first[0][1].ravel(), philox_keep(42, 0, x.size, 0.25))
    assert not np.array_equal(first[0][1], first[1][1])


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_keep_rate_is_one_minus_rate(device_backend, rate):
    be = device_backend
    be.manual_seed(5)
    n = 20_000
    for dtype in (np.float32, np.float64):
        mask = _draw(be, np.ones(n, dtype=dtype), rate)[1]
        sigma = np.sqrt(rate * (1 - rate) / n)
        assert abs(mask.mean() - (1 - rate)) < 5 * sigma, (dtype, mask.mean())


def test_many_blocks_grid_stride(device_backend, monkeypatch):
    be = device_backend
    monkeypatch.setattr(launchers, "MAX_GRID", 2)  # 512 threads for 1000 blocks: each thread strides
    for dtype in (np.float32, np.float64):
        be.manual_seed(8)
        x = np.random.default_rng(1).standard_normal(3999).astype(dtype)
        y, mask = _draw(be, x, 0.4)
        keep = philox_keep(8, 0, x.size, 0.4, dtype)
        np.testing.assert_array_equal(mask, keep)
        dx = to_host(be, be.dropout_backward(be.asarray(x), be.asarray(mask), 0.4))
        np.testing.assert_array_equal(dx, x * (keep * dropout_scale(0.4, dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_kernel_matches_the_generic_op(device_backend, dtype):
    be = device_backend
    rng = np.random.default_rng(2)
    dy = rng.standard_normal((7, 13)).astype(dtype)
    mask = (rng.random((7, 13)) >= 0.3).astype(np.uint8)
    dx = to_host(be, be.dropout_backward(be.asarray(dy), be.asarray(mask), 0.3))
    expected = reference().dropout_backward(dy, mask, 0.3)  # NumPy, the generic op
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, expected)
    np.testing.assert_allclose(dx, dy * mask / (1 - 0.3), rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_zero_size_draws_nothing(emulated):
    emulated.manual_seed(1)
    y, mask = emulated.dropout_forward(np.ones((0, 3), np.float32), 0.5)
    assert y.shape == (0, 3) and mask.shape == (0, 3) and mask.dtype == np.uint8
    assert _state(emulated) == [1, 0]
    assert emulated.dropout_backward(y, mask, 0.5).shape == (0, 3)


def test_strided_input_is_made_contiguous_by_the_override(emulated):
    emulated.manual_seed(4)
    x = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32)
    y, mask = emulated.dropout_forward(x[:, ::2], 0.5)
    keep = philox_keep(4, 0, 30, 0.5).reshape(6, 5)
    np.testing.assert_array_equal(mask, keep)
    np.testing.assert_array_equal(y, x[:, ::2] * (keep * np.float32(2.0)))


def test_switched_off_or_other_dtypes_take_the_generic_path(emulated):
    from gpunn.backend.cuda.emulated import EmulatedBackend
    generic = get_kernel_backend("emulated", False)
    generic.manual_seed(3)
    state_before = generic.philox_state.copy()
    y, mask = generic.dropout_forward(np.ones(64, np.float32), 0.5)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(generic.philox_state, state_before)  # the kernel's stream is untouched
    ref = reference()  # NumPy: the same generator, the same draw
    ref.manual_seed(3)
    np.testing.assert_array_equal(ref.dropout_forward(np.ones(64, np.float32), 0.5)[1], mask)
    be = EmulatedBackend(use_kernels={"dropout_backward"})
    be.manual_seed(3)
    _, m = be.dropout_forward(np.ones(8, np.float32), 0.5)  # the forward kernel switched off: generic
    assert m.dtype == np.uint8 and _state(be) == [3, 0]
    dx = be.dropout_backward(np.ones(8, np.float32), m, 0.5)  # the backward kernel takes the generic mask
    np.testing.assert_array_equal(dx, m * np.float32(2.0))


# -- bad inputs --------------------------------------------------------------------------------
def test_launcher_refuses_bad_inputs(emulated):
    be = emulated
    kernels, xp = be.kernels, be.xp
    x = np.ones(8, np.float32)
    state = be.philox_state
    for rate in (-0.1, 1.0, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="'rate'"):
            dropout_launch.dropout_forward(kernels, xp, x, rate, state)
        with pytest.raises(ValueError, match="'rate'"):
            be.dropout_forward(x, rate)
        with pytest.raises(ValueError, match="'rate'"):
            be.dropout_backward(x, np.ones(8, np.uint8), rate)
    with pytest.raises(TypeError, match="argument 'x' must be float32 or float64"):
        dropout_launch.dropout_forward(kernels, xp, np.ones(8, np.int32), 0.5, state)
    with pytest.raises(ValueError, match="argument 'x' must be C-contiguous"):
        dropout_launch.dropout_forward(kernels, xp, np.ones(16, np.float32)[::2], 0.5, state)
    with pytest.raises(TypeError, match="argument 'x' must be a numpy.ndarray"):
        dropout_launch.dropout_forward(kernels, xp, [1.0, 2.0], 0.5, state)
    with pytest.raises(TypeError, match="argument 'state' must have dtype uint64"):
        dropout_launch.dropout_forward(kernels, xp, x, 0.5, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="argument 'state' must have shape"):
        dropout_launch.dropout_forward(kernels, xp, x, 0.5, np.zeros(3, np.uint64))
    frozen = np.zeros(2, np.uint64)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="argument 'state' is updated in place"):
        dropout_launch.dropout_forward(kernels, xp, x, 0.5, frozen)
    dy = np.ones(8, np.float32)
    with pytest.raises(TypeError, match="argument 'mask' must have dtype uint8"):
        dropout_launch.dropout_backward(kernels, xp, dy, np.ones(8, np.float32), 0.5)
    with pytest.raises(ValueError, match="argument 'mask' must have shape"):
        dropout_launch.dropout_backward(kernels, xp, dy, np.ones(9, np.uint8), 0.5)
    with pytest.raises(ValueError, match="argument 'dy' must be C-contiguous"):
        dropout_launch.dropout_backward(kernels, xp, np.ones(16, np.float32)[::2], np.ones(8, np.uint8), 0.5)
    with pytest.raises(TypeError, match="argument 'dy' must be float32 or float64"):
        dropout_launch.dropout_backward(kernels, xp, np.ones(8, np.int64), np.ones(8, np.uint8), 0.5)
    with pytest.raises(ValueError, match="argument 'mask' must have shape"):
        be.dropout_backward(dy, np.ones(9, np.uint8), 0.5)  # the generic op says the same
    with pytest.raises(ValueError, match="argument 'count'"):
        dropout_launch.philox_advance(kernels, xp, state, -1)


def test_advance_kernel(emulated):
    state = dropout_launch.make_state(np, 7, 2 ** 64 - 2)
    dropout_launch.philox_advance(emulated.kernels, np, state, 5)  # wraps mod 2^64
    assert [int(v) for v in state] == [7, 3]


# -- the layer -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_layer_on_the_emulated_backend(emulated, dtype):
    rate = 0.4
    x = np.random.default_rng(5).standard_normal((6, 11)).astype(dtype)
    dy = np.random.default_rng(6).standard_normal((6, 11)).astype(dtype)
    with gpunn.use_backend(emulated):
        layer = Dropout(rate)
        layer.to_dtype(dtype)
        gpunn.manual_seed(17)
        y = to_host(emulated, layer.forward(emulated.asarray(x), training=True))
        dx = to_host(emulated, layer.backward(emulated.asarray(dy)))
        keep = philox_keep(17, 0, x.size, rate, dtype).reshape(x.shape)
        np.testing.assert_array_equal(y, x * (keep * dropout_scale(rate, dtype)))
        np.testing.assert_array_equal(dx, dy * (keep * dropout_scale(rate, dtype)))
        np.testing.assert_allclose(dx, dy * keep / (1 - rate), rtol=1e-6 if dtype == np.float32 else 1e-15)
        # inference: the identity, no draw
        np.testing.assert_array_equal(to_host(emulated, layer.forward(emulated.asarray(x))), x)
        np.testing.assert_array_equal(to_host(emulated, layer.backward(emulated.asarray(dy))), dy)
        assert _state(emulated) == [17, philox_blocks(x.size, dtype)]


def test_dropout_layer_gradcheck_on_the_emulated_backend(emulated):
    with gpunn.use_backend(emulated):
        layer = Dropout(0.5)
        x = np.random.default_rng(7).standard_normal((3, 5))
        assert gradcheck(layer, x)


def test_get_and_set_philox_round_trip(emulated):
    from gpunn.backend.cuda.emulated import EmulatedBackend
    be = EmulatedBackend()
    be.manual_seed(21)
    be.dropout_forward(np.ones(9, np.float32), 0.5)
    saved = be.get_philox()
    assert saved == (21, 3)
    expected = _draw(be, np.ones(9, np.float32), 0.5)[1]
    state = be.philox_state
    be.set_philox(*saved)
    assert be.philox_state is state and be.get_philox() == saved
    np.testing.assert_array_equal(_draw(be, np.ones(9, np.float32), 0.5)[1], expected)
