"""Weight initializers, by name or callable.

Every initializer is called as `init(shape, dtype=float32, rng=None, fans=None)` and returns a
host NumPy array; layers move it to their backend. Fans come from the shape unless given:
- (in_features, units) for Dense: fan_in = shape[0], fan_out = shape[1];
- (filters, channels, kh, kw) for Conv2D: fan_in = channels*kh*kw, fan_out = filters*kh*kw;
- a vector (bias): fan_in = fan_out = its length.

Parameterless initializers are plain functions (`zeros`, `he_normal`, ...). Parameterized
ones are factories that return an initializer: `constant(0.1)`, `normal(std=0.05)`,
`uniform(limit=0.05)`, `orthogonal(gain=1.0)`. `get_initializer("normal")` uses the factory's defaults.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Initializer = Callable[..., np.ndarray]


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is not None:
        return rng
    from gpunn.random import host_rng
    return host_rng()


def _check_shape(shape: Any) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"initializer: argument 'shape' must be a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in out):
        raise ValueError(f"initializer: argument 'shape' must have non-negative sizes, got {out}")
    return out


def _normal(shape, dtype, rng, std: float, mean: float = 0.0) -> np.ndarray:
    shape = _check_shape(shape)
    return (_rng(rng).standard_normal(shape) * std + mean).astype(dtype)


def _uniform(shape, dtype, rng, limit: float) -> np.ndarray:
    shape = _check_shape(shape)
    return _rng(rng).uniform(-limit, limit, size=shape).astype(dtype)


def zeros(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
    return np.zeros(_check_shape(shape), dtype=dtype)


def ones(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
    return np.ones(_check_shape(shape), dtype=dtype)


def constant(value: float = 0.0) -> Initializer:
    def init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        return np.full(_check_shape(shape), value, dtype=dtype)
    init.__name__ = f"constant({value})"
    return init


def normal(std: float = 0.05, mean: float = 0.0) -> Initializer:
    if std < 0:
        raise ValueError(f"normal: argument 'std' must be >= 0, got {std}")

    def init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        return _normal(shape, dtype, rng, std, mean)
    init.__name__ = f"normal(std={std})"
    return init


def uniform(limit: float = 0.05) -> Initializer:
    if limit < 0:
        raise ValueError(f"uniform: argument 'limit' must be >= 0, got {limit}")

    def init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        return _uniform(shape, dtype, rng, limit)
    init.__name__ = f"uniform(limit={limit})"
    return init


def orthogonal(gain: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix times `gain` (Saxe et al. 2014), as PyTorch builds it: the shape is
    flattened to (shape[0], prod(shape[1:])), the QR factor of a Gaussian matrix of that shape
    (transposed when it has more columns than rows) is taken with the signs of R's diagonal
    folded in, so the result is uniformly distributed. Rows (or columns, whichever are fewer)
    are orthonormal; each entry has variance gain^2 / max(rows, cols)."""
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain <= 0:
        raise ValueError(f"orthogonal: argument 'gain' must be a positive float, got {gain!r}")

    def init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        shape = _check_shape(shape)
        if len(shape) < 2:
            raise ValueError(f"orthogonal: argument 'shape' must have at least 2 dimensions, got {shape}")
        rows, cols = shape[0], int(np.prod(shape[1:]))
        if rows == 0 or cols == 0:
            return np.zeros(shape, dtype=dtype)
        a = _rng(rng).standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r)) + (np.diag(r) == 0)  # sign fix; a zero diagonal keeps its column
        if rows < cols:
            q = q.T
        return (gain * q).reshape(shape).astype(dtype)
    init.__name__ = f"orthogonal(gain={gain})"
    return init


def small_random(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
    """N(0, 0.01^2): the seeds' first attempt; too small for deep nets."""
    return _normal(shape, dtype, rng, 0.01)


def _fan_based(kind: str, scale: Callable[[int, int], float]) -> tuple[Initializer, Initializer]:
    def normal_init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        fan_in, fan_out = fans or compute_fans(_check_shape(shape))
        return _normal(shape, dtype, rng, math.sqrt(scale(fan_in, fan_out)))

    def uniform_init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        fan_in, fan_out = fans or compute_fans(_check_shape(shape))
        return _uniform(shape, dtype, rng, math.sqrt(3.0 * scale(fan_in, fan_out)))

    normal_init.__name__, uniform_init.__name__ = f"{kind}_normal", f"{kind}_uniform"
    return normal_init, uniform_init


# variance = scale(fan_in, fan_out); the uniform limit sqrt(3 * variance) matches it.
glorot_normal, glorot_uniform = _fan_based("glorot", lambda fi, fo: 2.0 / max(fi + fo, 1))
he_normal, he_uniform = _fan_based("he", lambda fi, fo: 2.0 / max(fi, 1))
lecun_normal, lecun_uniform = _fan_based("lecun", lambda fi, fo: 1.0 / max(fi, 1))
xavier_normal, xavier_uniform = glorot_normal, glorot_uniform
kaiming_normal, kaiming_uniform = he_normal, he_uniform

_BY_NAME: dict[str, Initializer] = {
    "zeros": zeros, "ones": ones, "small_random": small_random,
    "glorot_normal": glorot_normal, "glorot_uniform": glorot_uniform,
    "xavier_normal": xavier_normal, "xavier_uniform": xavier_uniform,
    "he_normal": he_normal, "he_uniform": he_uniform,
    "kaiming_normal": kaiming_normal, "kaiming_uniform": kaiming_uniform,
    "lecun_normal": lecun_normal, "lecun_uniform": lecun_uniform,
}
_FACTORIES: dict[str, Callable[[], Initializer]] = {"constant": constant, "normal": normal, "uniform": uniform,
                                                    "orthogonal": orthogonal}


def register_initializer(name: str, init: Initializer, factory: bool = False) -> None:
    (_FACTORIES if factory else _BY_NAME)[name] = init


def get_initializer(spec: str | Initializer) -> Initializer:
    """An initializer from its name or a callable."""
    if callable(spec):
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        if key in _BY_NAME:
            return _BY_NAME[key]
        if key in _FACTORIES:
            return _FACTORIES[key]()
    names = sorted([*_BY_NAME, *_FACTORIES])
    raise ValueError(f"get_initializer: argument 'spec' must be a callable or one of {names}, got {spec!r}")


get = get_initializer
