"""DataLoader: coverage per epoch, drop_last, seeded shuffling, the prefetch thread, errors."""
from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

import gpunn
from gpunn.data import DataLoader
from gpunn.data import transforms as T


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gpunn-DataLoader-prefetch"]


def _wait_no_threads(timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while _prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _prefetch_threads()


@pytest.mark.parametrize("prefetch", [0, 2])
def test_every_sample_once_per_epoch(backend, prefetch):
    x = np.arange(23, dtype=np.float32)[:, None]
    y = np.arange(23)
    loader = DataLoader(x, y, batch_size=5, shuffle=True, seed=3, prefetch=prefetch)
    assert len(loader) == 5
    epochs = []
    for _ in range(2):
        seen = []
        for xb, yb in loader:
            assert backend.is_native(xb) and backend.is_native(yb)
            xs, ys = backend.to_numpy(xb), backend.to_numpy(yb)
            np.testing.assert_array_equal(xs[:, 0], ys)  # x and y stay paired
            seen.append(ys)
        assert [len(s) for s in seen] == [5, 5, 5, 5, 3]
        order = np.concatenate(seen)
        assert sorted(order.tolist()) == list(range(23))
        epochs.append(order)
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled per epoch


def test_drop_last():
    x = np.zeros((23, 2), dtype=np.float32)
    loader = DataLoader(x, batch_size=5, drop_last=True)
    batches = list(loader)
    assert len(loader) == 4 and len(batches) == 4 and all(b.shape == (5, 2) for b in batches)
    assert len(DataLoader(x, batch_size=30, drop_last=True)) == 0
    assert len(list(DataLoader(x, batch_size=30, drop_last=True))) == 0


def test_no_shuffle_keeps_order_and_x_only():
    x = np.arange(7, dtype=np.float32)[:, None]
    out = np.concatenate([np.asarray(b) for b in DataLoader(x, batch_size=3)])
    np.testing.assert_array_equal(out[:, 0], np.arange(7))


def test_seeded_reproducible_including_transforms():
    x = np.random.default_rng(0).random((20, 1, 6, 6)).astype(np.float32)
    y = np.arange(20)

    def run() -> list[np.ndarray]:
        loader = DataLoader(x, y, batch_size=8, shuffle=True, seed=11, transform=T.RandomAffine(15, seed=None))
        return [np.asarray(b[0]) for _ in range(2) for b in loader]

    a, b = run(), run()
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    other = DataLoader(x, y, batch_size=8, shuffle=True, seed=12)
    assert not np.array_equal(np.concatenate([b[1] for b in other]), np.concatenate(
        [b[1] for b in DataLoader(x, y, batch_size=8, shuffle=True, seed=11)]))


def test_manual_seed_makes_unseeded_loader_reproducible():
    x = np.arange(10, dtype=np.float32)[:, None]
    orders = []
    for _ in range(2):
        gpunn.manual_seed(5)
        orders.append(np.concatenate([b[:, 0] for b in DataLoader(x, batch_size=4, shuffle=True)]))
    np.testing.assert_array_equal(*orders)


def test_set_epoch_replays():
    x = np.arange(10, dtype=np.float32)[:, None]
    loader = DataLoader(x, batch_size=10, shuffle=True, seed=0)
    first = np.asarray(next(iter(loader)))
    loader.set_epoch(0)
    np.testing.assert_array_equal(first, np.asarray(next(iter(loader))))


def test_prefetch_thread_shuts_down_on_exhaustion_break_and_close():
    x = np.zeros((50, 3), dtype=np.float32)
    loader = DataLoader(x, batch_size=2, prefetch=2)
    list(loader)
    assert _wait_no_threads()
    it = iter(loader)
    next(it)
    assert _prefetch_threads()  # running, blocked on the full queue
    it.close()
    assert not _prefetch_threads() and it.thread is None
    with pytest.raises(StopIteration):
        next(it)
    for i, _ in enumerate(loader):  # breaking out of a for loop: collected, then joined
        if i == 1:
            break
    del _
    gc.collect()
    assert _wait_no_threads()
    with iter(loader) as it2:
        next(it2)
    assert not _prefetch_threads()


class Boom(Exception):
    pass


@pytest.mark.parametrize("prefetch", [0, 1])
def test_transform_exception_reaches_the_consumer(prefetch):
    calls = []

    def bad(xb):
        calls.append(len(xb))
        if len(calls) == 2:
            raise Boom("bad batch")
        return xb

    loader = DataLoader(np.zeros((10, 1), np.float32), batch_size=3, transform=bad, prefetch=prefetch)
    got = []
    with pytest.raises(Boom, match="bad batch"):
        for xb in loader:
            got.append(xb)
    assert len(got) == 1
    assert _wait_no_threads()


def test_transform_gets_epoch_rng_and_plain_callables_work():
    x = np.ones((4, 1, 2, 2), np.float32)
    out = list(DataLoader(x, batch_size=4, transform=lambda b: b * 2))
    np.testing.assert_array_equal(np.asarray(out[0]), 2 * x)


def test_batches_on_emulated_or_current_backend(backend):
    x = np.ones((4, 2), np.float32)
    (xb,) = list(DataLoader(x, batch_size=4))
    assert backend.is_native(xb)


@pytest.mark.parametrize("kwargs,match", [
    ({"x": np.zeros((0, 2))}, "empty"),
    ({"x": 3.0}, "must be an array"),
    ({"y": np.zeros(4)}, "'y' must have 5 samples"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"seed": -1}, "seed"),
    ({"transform": 5}, "transform"),
    ({"prefetch": -1}, "prefetch"),
])
def test_bad_arguments(kwargs, match):
    args = {"x": np.zeros((5, 2), np.float32), "y": None, "batch_size": 2}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        DataLoader(**args)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_sample_weight_batches_stay_paired(backend, prefetch):
    x = np.arange(11, dtype=np.float32)[:, None]
    y = np.arange(11)
    w = np.arange(11) / 10.0
    loader = DataLoader(x, y, batch_size=4, shuffle=True, seed=1, prefetch=prefetch, sample_weight=w)
    seen = []
    for xb, yb, wb in loader:
        assert backend.is_native(wb)
        ys, ws = backend.to_numpy(yb), backend.to_numpy(wb)
        np.testing.assert_allclose(ws, ys / 10.0)  # each weight travels with its sample
        seen.append(ys)
    assert sorted(np.concatenate(seen).tolist()) == list(range(11))


@pytest.mark.parametrize("kwargs,match", [
    ({"sample_weight": np.ones(5)}, r"DataLoader: argument 'sample_weight' needs targets 'y'"),
    ({"y": np.zeros(5), "sample_weight": np.ones(4)}, r"argument 'sample_weight' must have shape \(5,\)"),
    ({"y": np.zeros(5), "sample_weight": -np.ones(5)}, r"argument 'sample_weight' must hold finite weights >= 0"),
    ({"y": np.zeros(5), "sample_weight": "heavy"}, r"argument 'sample_weight' must be a 1-D NumPy array"),
])
def test_bad_sample_weight(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        DataLoader(np.zeros((5, 2), np.float32), batch_size=2, **kwargs)
