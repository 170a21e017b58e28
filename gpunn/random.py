"""Seeding. Initializers draw on the host so every backend starts from identical weights;
stochastic layers (dropout) draw from the current backend's own generator."""
from __future__ import annotations

import numpy as np

_host_rng = np.random.default_rng()
_seed: int | None = None


def manual_seed(seed: int) -> None:
    """Seed the host generator and every backend's device generator."""
    global _host_rng, _seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed: argument 'seed' must be a non-negative int, got {seed!r}")
    _seed = int(seed)
    _host_rng = np.random.default_rng(_seed)
    from gpunn.backend import registry  # late: registry imports this module's seed
    registry.reseed_all(_seed)


def host_rng() -> np.random.Generator:
    return _host_rng


def current_seed() -> int | None:
    return _seed
