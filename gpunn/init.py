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

from gpunn._checks import finite_real, float_dtype, pair, shape_arg

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


def _rng(rng: np.random.Generator | None, where: str) -> np.random.Generator:
    if rng is None:
        from gpunn.random import host_rng
        return host_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{where}: argument 'rng' must be a numpy.random.Generator or None, "
                        f"got {type(rng).__name__}")
    return rng


def _check_fans(fans: Any, where: str) -> tuple[int, int] | None:
    return None if fans is None else pair(fans, "fans", where, minimum=0)


def _cast(values: Any, dtype: np.dtype, where: str) -> np.ndarray:
    """`values` as `dtype`, refusing what overflows it (normal(std=1e39) in float32 is all inf)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(values).astype(dtype, copy=False)
    if out.size and not np.isfinite(out).all():
        raise ValueError(f"{where}: the initial values overflow {dtype} (largest finite value "
                         f"{float(np.finfo(dtype).max):.4g}); use smaller parameters or a wider dtype")
    return out


def _prepare(where: str, shape: Any, dtype: Any, rng: Any = None, fans: Any = None
             ) -> tuple[tuple[int, ...], np.dtype]:
    """Validate an initializer call's arguments: (shape, dtype)."""
    shape = shape_arg(shape, where)
    dtype = float_dtype(dtype, where)
    if rng is not None:
        _rng(rng, where)
    _check_fans(fans, where)
    return shape, dtype


def _normal(where, shape, dtype, rng, std: float, mean: float = 0.0) -> np.ndarray:
    shape, dtype = _prepare(where, shape, dtype, rng)
    return _cast(_rng(rng, where).standard_normal(shape) * std + mean, dtype, where)


def _uniform(where, shape, dtype, rng, limit: float) -> np.ndarray:
    shape, dtype = _prepare(where, shape, dtype, rng)
    return _cast(_rng(rng, where).uniform(-limit, limit, size=shape), dtype, where)


def zeros(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
    shape, dtype = _prepare("zeros", shape, dtype, rng, fans)
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
    shape, dtype = _prepare("ones", shape, dtype, rng, fans)
    return np.ones(shape, dtype=dtype)


def constant(value: float = 0.0) -> Initializer:
    value = finite_real(value, "value", "constant")
    name = f"constant({value})"

    def init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        shape, dtype = _prepare(name, shape, dtype, rng, fans)
        return np.full(shape, _cast(value, dtype, name), dtype=dtype)
    init.__name__ = name
    return init


def normal(std: float = 0.05, mean: float = 0.0) -> Initializer:
    std = finite_real(std, "std", "normal", minimum=0.0)
    mean = finite_real(mean, "mean", "normal")
    name = f"normal(std={std})" if mean == 0.0 else f"normal(std={std}, mean={mean})"

    def init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        _check_fans(fans, name)
        return _normal(name, shape, dtype, rng, std, mean)
    init.__name__ = name
    return init


def uniform(limit: float = 0.05) -> Initializer:
    limit = finite_real(limit, "limit", "uniform", minimum=0.0)
    name = f"uniform(limit={limit})"

    def init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        _check_fans(fans, name)
        return _uniform(name, shape, dtype, rng, limit)
    init.__name__ = name
    return init


def orthogonal(gain: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix times `gain` (Saxe et al. 2014), as PyTorch builds it: the shape is
    flattened to (shape[0], prod(shape[1:])), the QR factor of a Gaussian matrix of that shape
    (transposed when it has more columns than rows) is taken with the signs of R's diagonal
    folded in, so the result is uniformly distributed. Rows (or columns, whichever are fewer)
    are orthonormal; each entry has variance gain^2 / max(rows, cols)."""
    gain = finite_real(gain, "gain", "orthogonal", minimum=0.0, strict=True)
    name = f"orthogonal(gain={gain})"

    def init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        shape, dtype = _prepare(name, shape, dtype, rng, fans)
        if len(shape) < 2:
            raise ValueError(f"{name}: argument 'shape' must have at least 2 dimensions, got {shape}")
        rows, cols = shape[0], int(np.prod(shape[1:]))
        if rows == 0 or cols == 0:
            return np.zeros(shape, dtype=dtype)
        a = _rng(rng, name).standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r)) + (np.diag(r) == 0)  # sign fix; a zero diagonal keeps its column
        if rows < cols:
            q = q.T
        return _cast((gain * q).reshape(shape), dtype, name)
    init.__name__ = name
    return init


def small_random(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
    """N(0, 0.01^2): the seeds' first attempt; too small for deep nets."""
    _check_fans(fans, "small_random")
    return _normal("small_random", shape, dtype, rng, 0.01)


def _fan_based(kind: str, scale: Callable[[int, int], float]) -> tuple[Initializer, Initializer]:
    def normal_init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        where = f"{kind}_normal"
        fan_in, fan_out = _check_fans(fans, where) or compute_fans(shape_arg(shape, where))
        return _normal(where, shape, dtype, rng, math.sqrt(scale(fan_in, fan_out)))

    def uniform_init(shape, dtype=np.float32, rng=None, fans=None) -> np.ndarray:
        where = f"{kind}_uniform"
        fan_in, fan_out = _check_fans(fans, where) or compute_fans(shape_arg(shape, where))
        return _uniform(where, shape, dtype, rng, math.sqrt(3.0 * scale(fan_in, fan_out)))

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
