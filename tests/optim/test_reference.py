"""Our optimizers against PyTorch's trajectories (tests/fixtures/optim_reference.npz, made by
tests/fixtures/gen_optim_reference.py): 20 steps, float64, 1e-6 relative. No torch needed here."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from gpunn import Parameter
from gpunn.optim import get_optimizer

FIXTURE = pathlib.Path(__file__).parents[1] / "fixtures" / "optim_reference.npz"
DATA = dict(np.load(FIXTURE, allow_pickle=False))
META = json.loads(str(DATA["meta_json"]))
CASES = [(problem, name, opt, kw) for problem in ("quadratic", "rosenbrock") for name, opt, kw in META["configs"]]


def gradient(problem: str, z: np.ndarray) -> np.ndarray:
    if problem == "quadratic":
        return DATA["quadratic_A"] @ z - DATA["quadratic_c"]
    x, y = z
    return np.array([-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)])


def test_fixture_covers_every_optimizer_and_the_hard_settings():
    names = {opt for _, _, opt, _ in CASES}
    assert names == {"SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Nadam"}
    settings = [kw for _, _, _, kw in CASES]
    for key in ("nesterov", "centered", "amsgrad", "weight_decay", "momentum"):
        assert any(kw.get(key) for kw in settings), key
    assert META["steps"] == 20


@pytest.mark.parametrize("problem,name,opt,kw", CASES, ids=[f"{p}-{n}" for p, n, _, _ in CASES])
def test_matches_pytorch_trajectory(backend, problem, name, opt, kw):
    shapes = [tuple(s) for s in META["shapes"][problem]]
    x0 = DATA[f"{problem}_x0"]
    sizes = [int(np.prod(s)) for s in shapes]
    chunks = np.split(x0, np.cumsum(sizes)[:-1])
    params = [Parameter(backend.asarray(c.reshape(s).astype(np.float64)), name=f"p{i}")
              for i, (c, s) in enumerate(zip(chunks, shapes))]
    optimizer = get_optimizer(opt, params, **kw)
    traj = []
    for _ in range(META["steps"]):
        z = np.concatenate([backend.to_numpy(p.data).ravel() for p in params])
        for p, g in zip(params, np.split(gradient(problem, z), np.cumsum(sizes)[:-1])):
            p.grad[...] = backend.asarray(g.reshape(p.shape))
        optimizer.step()
        traj.append(np.concatenate([backend.to_numpy(p.data).ravel() for p in params]))
    ref = DATA[f"{problem}/{name}"]
    np.testing.assert_allclose(np.stack(traj), ref, rtol=1e-6, atol=1e-9)
    # the run moved: a no-op optimizer could not pass
    assert np.abs(ref[-1] - x0).max() > 1e-3
