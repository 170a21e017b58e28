"""Seeding: the host generator and the seed every generator in gpunn follows.

Initializers draw on the host so every backend starts from identical weights; stochastic layers
(dropout) draw from the current backend's own generator. The backends sit above this module: the
registry subscribes with `on_seed` to reseed the backends it has built, and reads
`current_seed()` for the ones it builds later.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gpunn._checks import int_arg

_host_rng = np.random.default_rng()
_seed: int | None = None
_listeners: list[Callable[[int], None]] = []


def manual_seed(seed: int) -> None:
    """Seed the host generator and every backend's device generator."""
    global _host_rng, _seed
    _seed = int_arg(seed, "seed", "manual_seed", 0, want="a non-negative int")
    _host_rng = np.random.default_rng(_seed)
    for listener in list(_listeners):
        listener(_seed)


def on_seed(listener: Callable[[int], None]) -> None:
    """Call `listener(seed)` on every later manual_seed (once per listener)."""
    if not callable(listener):
        raise TypeError(f"on_seed: argument 'listener' must be callable, got {type(listener).__name__}")
    if listener not in _listeners:
        _listeners.append(listener)


def host_rng() -> np.random.Generator:
    return _host_rng


def current_seed() -> int | None:
    return _seed
