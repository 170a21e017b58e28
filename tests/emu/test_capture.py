"""The emulator's device memory and graph recorder (gpunn/emu/capture.py): what it records, what it
replays, and what it refuses as real CUDA stream capture would."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend import to_host
from gpunn.emu import capture
from gpunn.emu.capture import DeviceArray, device_numpy as xp
from gpunn.errors import GraphCaptureError
from tests.emu.conftest import requires_gxx


def host(a):
    return a.view(np.ndarray).copy()


def test_the_array_module_makes_device_arrays_and_keeps_reductions_on_the_device():
    a = xp.arange(6, dtype=np.float32).reshape(2, 3)
    assert type(a) is DeviceArray
    assert type(xp.asarray(np.ones(3))) is DeviceArray
    for r in (a.sum(), a.max(), a.mean(), xp.sum(a), (a * 2).sum(axis=1), a[1, 2], a.argmax()):
        assert type(r) is DeviceArray, type(r)
    assert a.sum().ndim == 0 and float(a.sum()) == 15.0
    assert a[1, 2].base is not None  # a[i, j] is a 0-d view, as in CuPy, not a host scalar
    owner = xp.zeros((2, 3))
    assert owner[:, 1:].base is owner  # basic indexing: NumPy's own view, its base the array
    assert xp.float32 is np.float32 and xp.ndarray is np.ndarray and xp.newaxis is None


def test_in_place_operators_keep_the_object():
    a = xp.zeros(4, dtype=np.float32)
    b = a
    a += 1
    a *= xp.full(4, 3.0, dtype=np.float32)
    assert a is b and host(a).tolist() == [3.0] * 4


def test_replay_reruns_ops_on_the_same_memory_and_bakes_python_scalars():
    w = xp.ones(3, dtype=np.float32)
    lr_dev = xp.full((1,), 0.5, dtype=np.float32)
    lr_host = 0.5
    g = xp.asarray(np.array([1.0, 2.0, 3.0], dtype=np.float32))

    def body():
        w[...] -= g * lr_dev  # reads the lr from device memory
        w[...] -= g * lr_host  # bakes the Python float in
        return w.sum()

    graph, total = capture.record(body)
    np.testing.assert_array_equal(host(w), [1, 1, 1])  # recording runs nothing (the memory is restored)
    graph.replay()
    np.testing.assert_array_equal(host(w), [0, -1, -2])
    assert float(total) == -3.0  # the result buffer is rewritten by each replay
    lr_dev[...] = 0.0
    lr_host = 100.0  # noqa: F841 - a replay cannot see it: that is the point
    graph.replay()
    np.testing.assert_array_equal(host(w), [-0.5, -2, -3.5])
    assert graph.ops >= 4 and graph.launches == 0 and "np.multiply" in graph.describe()


def test_fresh_results_live_in_the_pool_and_fancy_indexing_is_an_op():
    src = xp.asarray(np.arange(5, dtype=np.float64))
    idx = xp.asarray(np.array([4, 0, 2]))

    def body():
        return src[idx] * 2

    graph, out = capture.record(body)
    src[...] = xp.asarray(np.arange(5, dtype=np.float64) + 10)
    graph.replay()
    np.testing.assert_array_equal(host(out), [28, 20, 24])
    assert any(out.view(np.ndarray).base is p or p is capture._root(out.view(np.ndarray)) for p in graph._pool)


def test_recording_restores_every_array_it_wrote():
    a = xp.arange(4, dtype=np.float64)
    b = xp.zeros((2, 2))
    view = b[0]

    def body():
        a[...] = 7
        view[...] += 1
        xp.copyto(b[1], a[:2])
        a.fill(3)

    capture.record(body)
    np.testing.assert_array_equal(host(a), [0, 1, 2, 3])
    np.testing.assert_array_equal(host(b), np.zeros((2, 2)))


@pytest.mark.parametrize("what, body", [
    ("float()", lambda a: float(a.sum())),
    ("bool()", lambda a: bool((a > 0).all())),
    ("if", lambda a: 1 if a.max() > 0 else 0),
    (".item()", lambda a: a.sum().item()),
    (".tolist()", lambda a: a.tolist()),
    ("repr()", lambda a: repr(a)),
    ("format()", lambda a: f"{a.sum():.3f}"),
    ("to_host()", lambda a: to_host(a)),
    ("int()", lambda a: int(a.argmax())),
])
def test_host_reads_are_refused_naming_the_op_and_the_line(what, body):
    a = xp.arange(4, dtype=np.float32)
    with pytest.raises(GraphCaptureError, match="reads device memory back to the host") as info:
        capture.record(lambda: body(a))
    assert "test_capture.py" in str(info.value)  # the line that did it
    assert capture.active() is None  # the failed capture is over
    float(a.sum())  # and outside a capture the same read is fine


@pytest.mark.parametrize("body, match", [
    (lambda a: xp.asarray(np.ones(4, np.float32)), "copies host data to the device"),
    (lambda a: xp.asarray([1.0, 2.0]), "copies host data to the device"),
    (lambda a: a + np.ones(4, np.float32), "host NumPy array"),
    (lambda a: a[a > 1], "depends on the data"),
    (lambda a: a.nonzero(), "depends on the data"),
    (lambda a: np.unique(a), "depends on the data"),
])
def test_host_copies_and_data_dependent_shapes_are_refused(body, match):
    a = xp.arange(4, dtype=np.float32)
    with pytest.raises(GraphCaptureError, match=match):
        capture.record(lambda: body(a))


def test_captures_do_not_nest_and_replays_do_not_run_inside_one():
    graph, _ = capture.record(lambda: None)
    with pytest.raises(GraphCaptureError, match="do not nest"):
        capture.record(lambda: capture.record(lambda: None))
    with pytest.raises(GraphCaptureError, match="cannot be replayed inside"):
        capture.record(graph.replay)


@requires_gxx
def test_kernel_launches_are_recorded_and_replayed(selftest_module):
    add = selftest_module.get_function("vec_add")
    a = xp.asarray(np.arange(8, dtype=np.float32))
    b = xp.full(8, 1.0, dtype=np.float32)
    out = xp.zeros(8, dtype=np.float32)
    graph, _ = capture.record(lambda: add((1,), (8,), (a, b, out, np.int32(8))))
    assert graph.launches == 1 and host(out).tolist() == [0.0] * 8  # restored
    b[...] = 2.0
    graph.replay()
    np.testing.assert_array_equal(host(out), np.arange(8) + 2.0)
    with pytest.raises(GraphCaptureError, match="host NumPy array"):
        capture.record(lambda: add((1,), (8,), (a, np.ones(8, np.float32), out, np.int32(8))))
