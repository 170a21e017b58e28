"""GradScaler (gpunn/optim/grad_scaler.py): torch.amp.GradScaler's scale schedule, on the device."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn.optim.grad_scaler import GradScaler

torch = pytest.importorskip("torch")

#: a scripted run: True where the step's gradients hold an inf (or NaN)
SCRIPT = [False] * 5 + [True] + [False] * 7 + [True, True] + [False] * 12 + [True] + [False] * 3


def torch_scales(script, **kw):
    """The scale after each step of `script`, from torch's own GradScaler (on the CPU)."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.0)
    scaler = torch.amp.GradScaler("cpu", **kw)
    out = []
    for bad in script:
        opt.zero_grad()
        loss = (p * (float("inf") if bad else 1.0)).sum()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        out.append((scaler.get_scale(), scaler.state_dict()["_growth_tracker"]))
    return out


def gpunn_scales(script, backend, **kw):
    scaler = GradScaler(**kw, backend=backend)
    out = []
    for bad in script:
        g = backend.xp.full((3,), np.inf if bad else 1.0, dtype=np.float32) * scaler.scale  # the scaled gradient
        scaler.unscale_(g)
        scaler.update()
        out.append((scaler.get_scale(), scaler.state_dict()["_growth_tracker"]))
    return out


@pytest.mark.parametrize("kw", [{"init_scale": 8.0, "growth_interval": 3}, {"init_scale": 2.0 ** 16, "growth_interval": 4,
                                                                          "growth_factor": 4.0, "backoff_factor": 0.25}])
def test_the_scale_follows_torch_grad_scaler_exactly(backend, kw):
    assert gpunn_scales(SCRIPT, backend, **kw) == torch_scales(SCRIPT, **kw)


def test_growth_stops_where_the_scale_would_overflow(backend):
    scaler = GradScaler(init_scale=2.0 ** 127, growth_interval=1, backend=backend)
    scaler.unscale_(backend.xp.ones(2, dtype=np.float32))
    scaler.update()
    assert scaler.get_scale() == 2.0 ** 127  # 2^128 is inf in float32: kept, as torch does


def test_unscale_divides_and_ors_found_inf_across_buffers(backend):
    xp = backend.xp
    scaler = GradScaler(init_scale=4.0, backend=backend)
    a = xp.asarray(np.array([4.0, 8.0], np.float32))
    out = xp.zeros(2, dtype=np.float32)
    scaler.unscale_(a, out=out)
    np.testing.assert_array_equal(gpunn.backend.to_host(out), [1.0, 2.0])
    assert float(gpunn.backend.to_host(scaler.found_inf)[0]) == 0.0
    scaler.unscale_(xp.asarray(np.array([np.nan], np.float32)))
    scaler.unscale_(xp.asarray(np.array([1.0], np.float32)))
    assert float(gpunn.backend.to_host(scaler.found_inf)[0]) == 1.0  # stays set until update()
    scaler.update()
    assert scaler.get_scale() == 2.0 and float(gpunn.backend.to_host(scaler.found_inf)[0]) == 0.0


def test_the_update_can_be_captured_and_replayed(emulated):
    """Nothing in unscale_/update reads the host: a recorded step replays the schedule."""
    scaler = GradScaler(init_scale=8.0, growth_interval=2, backend=emulated)
    g = emulated.xp.ones(4, dtype=np.float32)
    graph, _ = emulated.capture_graph(lambda: (scaler.unscale_(g), scaler.update()))
    scales = []
    for bad in (False, False, True, False):
        g[...] = np.inf if bad else 1.0
        graph.replay()
        scales.append(scaler.get_scale())
    assert scales == [8.0, 16.0, 8.0, 8.0]


def test_state_dict_round_trip_and_bad_input():
    a = GradScaler(init_scale=16.0, growth_interval=5)
    for _ in range(3):
        a.unscale_(np.ones(2, np.float32))
        a.update()
    state = a.state_dict()
    assert state["_growth_tracker"] == 3 and state["scale"] == 16.0
    b = GradScaler()
    b.load_state_dict(state)
    assert b.state_dict() == state
    with pytest.raises(ValueError, match="'init_scale'"):
        GradScaler(init_scale=0.0)
    with pytest.raises(ValueError, match="'backoff_factor'"):
        GradScaler(backoff_factor=1.5)
    with pytest.raises(ValueError, match="'growth_interval'"):
        GradScaler(growth_interval=0)
    with pytest.raises(KeyError, match="missing keys"):
        b.load_state_dict({"scale": 1.0})
    with pytest.raises(ValueError, match="_growth_tracker"):
        b.load_state_dict({**state, "_growth_tracker": 5})
    assert b.state_dict() == state  # nothing changed by the refused loads
