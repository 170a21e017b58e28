"""Learning-rate schedules against hand-computed sequences."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gpunn import Parameter
from gpunn.optim import SGD
from gpunn.optim.schedules import (CosineAnnealing, ExponentialDecay, LinearWarmup, MultiStep, OneCycle,
                                   ReduceLROnPlateau, StepDecay)


def opt(lr: float = 1.0) -> SGD:
    return SGD([Parameter(np.zeros(3))], lr=lr)


def sequence(schedule, o, n):
    """lr at counts 0..n-1, read from the optimizer as a training loop would see it."""
    out = [o.lr]
    for _ in range(n - 1):
        schedule.step()
        out.append(o.lr)
    return out


def test_step_decay_divides_by_ten():
    o = opt(0.1)
    seq = sequence(StepDecay(o, step_size=3, gamma=0.1), o, 8)
    np.testing.assert_allclose(seq, [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001], rtol=1e-12)


def test_multistep():
    o = opt(1.0)
    seq = sequence(MultiStep(o, milestones=[2, 5], gamma=0.5), o, 7)
    np.testing.assert_allclose(seq, [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25], rtol=1e-12)


def test_exponential_decay():
    o = opt(2.0)
    seq = sequence(ExponentialDecay(o, gamma=0.9), o, 4)
    np.testing.assert_allclose(seq, [2.0, 1.8, 1.62, 1.458], rtol=1e-12)


def test_linear_warmup_default_and_start_factor():
    o = opt(1.0)
    np.testing.assert_allclose(sequence(LinearWarmup(o, warmup_steps=3), o, 6), [0.25, 0.5, 0.75, 1, 1, 1],
                               rtol=1e-12)
    o = opt(1.0)
    np.testing.assert_allclose(sequence(LinearWarmup(o, warmup_steps=4, start_factor=0.2), o, 6),
                               [0.2, 0.4, 0.6, 0.8, 1.0, 1.0], rtol=1e-12)


def test_cosine_annealing_with_and_without_warmup():
    o = opt(1.0)
    seq = sequence(CosineAnnealing(o, T_max=4, eta_min=0.0), o, 6)
    c = (1 + math.cos(math.pi / 4)) / 2
    np.testing.assert_allclose(seq, [1.0, c, 0.5, 1 - c, 0.0, 0.0], rtol=1e-12, atol=1e-15)
    o = opt(1.0)
    seq = sequence(CosineAnnealing(o, T_max=2, eta_min=0.1, warmup_steps=2), o, 6)
    np.testing.assert_allclose(seq, [1 / 3, 2 / 3, 1.0, 0.55, 0.1, 0.1], rtol=1e-12)


def test_one_cycle_matches_pytorch_formula():
    o = opt(0.1)
    seq = sequence(OneCycle(o, total_steps=10, max_lr=1.0, pct_start=0.3, div_factor=10, final_div_factor=100), o, 12)
    # phase 1: counts 0..2 (peak at 0.3*10 - 1 = 2), cos from 0.1 to 1.0; phase 2: counts 2..9 down to 0.001
    cos = lambda a, b, pct: b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)  # noqa: E731
    want = [cos(0.1, 1.0, k / 2) for k in range(3)] + [cos(1.0, 0.001, (k - 2) / 7) for k in range(3, 10)]
    want += [0.001, 0.001]  # held after total_steps
    np.testing.assert_allclose(seq, want, rtol=1e-12)
    assert seq[2] == pytest.approx(1.0) and seq[9] == pytest.approx(0.001)
    o = opt(1.0)
    lin = sequence(OneCycle(o, total_steps=5, pct_start=0.6, div_factor=4, final_div_factor=2, anneal="linear"), o, 5)
    # peak at 0.6*5 - 1 = 2: 0.25 -> 1.0 linearly, then down to 0.125 over counts 2..4
    np.testing.assert_allclose(lin, [0.25, 0.625, 1.0, 0.5625, 0.125], rtol=1e-12)


def test_call_jumps_to_a_count_and_state_round_trips():
    o = opt(1.0)
    s = StepDecay(o, step_size=2, gamma=0.5)
    assert s(5) == pytest.approx(0.25) and o.lr == pytest.approx(0.25)
    state = s.state_dict()
    o2 = opt(7.0)
    s2 = StepDecay(o2, step_size=2, gamma=0.5)
    s2.load_state_dict(state)
    assert o2.lr == pytest.approx(0.25)
    s2.step()
    assert o2.lr == pytest.approx(0.125)


def test_reduce_on_plateau_min_mode_with_cooldown_and_floor():
    o = opt(1.0)
    r = ReduceLROnPlateau(o, mode="min", factor=0.5, patience=1, min_lr=0.2, cooldown=1)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]
    lrs = [r.step(m) for m in metrics]
    # bad epochs: 0.95 x2 -> reduce (1.0 -> 0.5), cooldown eats the next, then 2 more -> 0.25,
    # cooldown, 2 more -> floor 0.2
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2])


def test_reduce_on_plateau_max_mode_and_threshold():
    o = opt(1.0)
    r = ReduceLROnPlateau(o, mode="max", factor=0.1, patience=0, threshold=0.01)
    assert r.step(0.5) == pytest.approx(1.0)      # first value is an improvement over -inf
    assert r.step(0.504) == pytest.approx(0.1)    # +0.8% is below the 1% relative threshold: a bad epoch
    assert r.step(0.6) == pytest.approx(0.1)      # improvement


def test_schedules_bad_input():
    o = opt(1.0)
    with pytest.raises(ValueError, match="argument 'step_size' must be an int >= 1"):
        StepDecay(o, step_size=0)
    with pytest.raises(ValueError, match="argument 'gamma'"):
        ExponentialDecay(o, gamma=1.5)
    with pytest.raises(ValueError, match="argument 'milestones' must be strictly increasing"):
        MultiStep(o, milestones=[3, 2])
    with pytest.raises(ValueError, match="argument 'T_max'"):
        CosineAnnealing(o, T_max=0)
    with pytest.raises(ValueError, match="argument 'eta_min'"):
        CosineAnnealing(o, T_max=3, eta_min=-1.0)
    with pytest.raises(ValueError, match="'pct_start' \\* 'total_steps'"):
        OneCycle(o, total_steps=3, pct_start=0.3)
    with pytest.raises(ValueError, match="argument 'anneal'"):
        OneCycle(o, total_steps=10, anneal="cubic")
    with pytest.raises(ValueError, match="argument 'mode'"):
        ReduceLROnPlateau(o, mode="lowest")
    with pytest.raises(ValueError, match="argument 'factor'"):
        ReduceLROnPlateau(o, factor=1.0)
    with pytest.raises(ValueError, match="argument 'metric' is NaN"):
        ReduceLROnPlateau(o).step(float("nan"))
    with pytest.raises(TypeError, match="argument 'optimizer' must have an 'lr' attribute"):
        StepDecay(object(), step_size=2)
    with pytest.raises(ValueError, match="argument 'count'"):
        StepDecay(o, step_size=2)(-1)
