"""Test helpers: numerical gradient checks in float64, and backend parametrization."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gpunn.backend import get_backend


def numerical_grad(f: Callable[[], float], array: Any, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to `array`, perturbed in place."""
    flat = array.reshape(-1)
    grad = np.zeros(flat.shape, dtype=np.float64)
    for i in range(flat.size):
        orig = flat[i].item()
        flat[i] = orig + eps
        f_plus = f()
        flat[i] = orig - eps
        f_minus = f()
        flat[i] = orig
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad.reshape(array.shape)


def _compare(name: str, analytic: Any, numeric: np.ndarray, rtol: float, atol: float) -> None:
    analytic = np.asarray(get_backend().to_numpy(analytic), dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise AssertionError(f"gradcheck: {name} has shape {analytic.shape}, expected {numeric.shape}")
    if not np.allclose(analytic, numeric, rtol=rtol, atol=atol):
        err = np.abs(analytic - numeric)
        i = int(np.argmax(err))
        raise AssertionError(f"gradcheck: {name} differs from central differences: max abs error {err.max():.3e} "
                             f"at flat index {i} (analytic {analytic.reshape(-1)[i]:.6e}, numeric "
                             f"{numeric.reshape(-1)[i]:.6e})")


def gradcheck(layer: Any, x: Any, training: bool = True, seed: int | None = 0, eps: float = 1e-6,
              rtol: float = 1e-5, atol: float = 1e-7, check_params: bool = True) -> bool:
    """Check a layer's input and parameter gradients against central differences, in float64.

    The layer is cast to float64; the scalar checked is sum(forward(x) * r) for a fixed random r,
    so every output element contributes. `seed` reseeds before each forward so stochastic layers
    (dropout) see the same mask every time. Raises AssertionError with details; returns True.

    Several inputs (a merge layer, a model with several inputs) are given as a list `x`, and
    backward must return one gradient per input; several outputs (a list from forward) each get
    their own r, and backward takes the list of them.
    """
    from gpunn.random import manual_seed

    be = get_backend()
    several_in = isinstance(x, (list, tuple))
    xs = [be.asarray(np.asarray(be.to_numpy(a), dtype=np.float64)) for a in (x if several_in else [x])]
    arg = list(xs) if several_in else xs[0]
    layer.to_dtype(np.float64)

    def run() -> Any:
        if seed is not None:
            manual_seed(seed)
        return layer.forward(arg, training=training)

    y = run()
    several_out = isinstance(y, (list, tuple))
    rng = np.random.default_rng(1234)
    rs = [be.asarray(rng.standard_normal(tuple(out.shape))) for out in (y if several_out else [y])]

    def objective() -> float:
        out = run()
        return float(sum((o * r).sum() for o, r in zip(out if several_out else [out], rs)))

    for p in layer.parameters():
        p.grad[...] = 0
    run()
    dx = layer.backward(rs if several_out else rs[0])
    analytic_params = [(p.name, p.grad.copy()) for p in layer.parameters()]
    if several_in:
        if not isinstance(dx, (list, tuple)) or len(dx) != len(xs):
            raise AssertionError(f"gradcheck: backward returned {type(dx).__name__}, expected a list of "
                                 f"{len(xs)} input gradients")
        for i, (d, a) in enumerate(zip(dx, xs)):
            _compare(f"input {i} gradient", d, numerical_grad(objective, a, eps), rtol, atol)
    else:
        _compare("input gradient", dx, numerical_grad(objective, xs[0], eps), rtol, atol)
    if check_params:
        for (name, grad), p in zip(analytic_params, layer.parameters()):
            _compare(f"parameter {name!r}", grad, numerical_grad(objective, p.data, eps), rtol, atol)
    return True


def gradcheck_loss(loss: Any, pred: Any, target: Any, eps: float = 1e-6, rtol: float = 1e-5,
                   atol: float = 1e-7) -> bool:
    """Check a loss's backward() against central differences of forward() in float64."""
    be = get_backend()
    pred = be.asarray(np.asarray(be.to_numpy(pred), dtype=np.float64))
    loss.forward(pred, target)
    analytic = loss.backward()
    _compare("loss gradient", analytic, numerical_grad(lambda: loss.forward(pred, target), pred, eps), rtol, atol)
    return True


def assert_allclose(actual: Any, desired: Any, rtol: float = 1e-6, atol: float = 0.0, err_msg: str = "") -> None:
    """np.testing.assert_allclose that accepts arrays from any backend."""
    be = get_backend()
    np.testing.assert_allclose(be.to_numpy(actual) if not isinstance(actual, np.ndarray) else actual,
                               be.to_numpy(desired) if not isinstance(desired, np.ndarray) else desired,
                               rtol=rtol, atol=atol, err_msg=err_msg)
