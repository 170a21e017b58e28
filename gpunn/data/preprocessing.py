"""Data preprocessing on host arrays: scalers, PCA with whitening, mean-image subtraction.

Every estimator follows fit / transform / fit_transform / inverse_transform (where an inverse
exists). Statistics are computed in float64 and results come back in the input's float dtype.
Features are everything past axis 0, so an (N, C, H, W) image batch is scaled per pixel.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _check(x: Any, where: str, min_samples: int = 1) -> np.ndarray:
    if isinstance(x, (list, tuple)):
        x = np.asarray(x, dtype=np.float64)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{where}: argument 'x' must be a NumPy array, got {type(x).__name__}")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{where}: argument 'x' must be numeric, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{where}: argument 'x' must have at least 2 dimensions (samples, features...), "
                         f"got shape {x.shape}")
    if x.shape[0] < min_samples:
        raise ValueError(f"{where}: argument 'x' has {x.shape[0]} samples; expected at least {min_samples}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"{where}: argument 'x' contains NaN or infinity")
    return x


def _out_dtype(x: np.ndarray) -> np.dtype:
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)


class Estimator:
    """Shared plumbing: remember the fitted feature shape, refuse use before fit."""

    _fitted_shape: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def _fitted(self, x: Any, method: str) -> np.ndarray:
        where = f"{self.name}.{method}"
        if self._fitted_shape is None:
            raise RuntimeError(f"{where}: call fit() first")
        x = _check(x, where)
        if x.shape[1:] != self._fitted_shape:
            raise ValueError(f"{where}: argument 'x' must have per-sample shape {self._fitted_shape} as fitted, "
                             f"got {x.shape[1:]}")
        return x

    def fit(self, x: Any) -> Estimator:
        raise NotImplementedError

    def transform(self, x: Any) -> np.ndarray:
        raise NotImplementedError

    def fit_transform(self, x: Any) -> np.ndarray:
        return self.fit(x).transform(x)


class StandardScaler(Estimator):
    """(x - mean) / std per feature; constant features get std 1 (they become 0, not NaN)."""

    def __init__(self, with_mean: bool = True, with_std: bool = True) -> None:
        self.with_mean, self.with_std = bool(with_mean), bool(with_std)

    def fit(self, x: Any) -> StandardScaler:
        x = _check(x, f"{self.name}.fit").astype(np.float64)
        self.mean_ = x.mean(axis=0) if self.with_mean else np.zeros(x.shape[1:])
        std = x.std(axis=0) if self.with_std else np.ones(x.shape[1:])
        self.scale_ = np.where(std > 0, std, 1.0)
        self._fitted_shape = x.shape[1:]
        return self

    def transform(self, x: Any) -> np.ndarray:
        x = self._fitted(x, "transform")
        return ((x - self.mean_) / self.scale_).astype(_out_dtype(x))

    def inverse_transform(self, x: Any) -> np.ndarray:
        x = self._fitted(x, "inverse_transform")
        return (x * self.scale_ + self.mean_).astype(_out_dtype(x))


class MinMaxScaler(Estimator):
    """Map each feature's [min, max] onto `feature_range`; constant features map to its low end."""

    def __init__(self, feature_range: tuple[float, float] = (0.0, 1.0)) -> None:
        if (not isinstance(feature_range, (tuple, list)) or len(feature_range) != 2
                or not feature_range[0] < feature_range[1]):
            raise ValueError(f"MinMaxScaler: argument 'feature_range' must be a pair (lo, hi) with lo < hi, "
                             f"got {feature_range!r}")
        self.feature_range = (float(feature_range[0]), float(feature_range[1]))

    def fit(self, x: Any) -> MinMaxScaler:
        x = _check(x, f"{self.name}.fit").astype(np.float64)
        self.data_min_, self.data_max_ = x.min(axis=0), x.max(axis=0)
        span = self.data_max_ - self.data_min_
        lo, hi = self.feature_range
        self.scale_ = (hi - lo) / np.where(span > 0, span, 1.0)
        self.min_ = lo - self.data_min_ * self.scale_
        self._fitted_shape = x.shape[1:]
        return self

    def transform(self, x: Any) -> np.ndarray:
        x = self._fitted(x, "transform")
        return (x * self.scale_ + self.min_).astype(_out_dtype(x))

    def inverse_transform(self, x: Any) -> np.ndarray:
        x = self._fitted(x, "inverse_transform")
        return ((x - self.min_) / self.scale_).astype(_out_dtype(x))


class RobustScaler(Estimator):
    """(x - median) / interquartile range per feature: outliers barely move the statistics."""

    def __init__(self, quantile_range: tuple[float, float] = (25.0, 75.0), with_centering: bool = True,
                 with_scaling: bool = True) -> None:
        if (not isinstance(quantile_range, (tuple, list)) or len(quantile_range) != 2
                or not 0 <= quantile_range[0] < quantile_range[1] <= 100):
            raise ValueError(f"RobustScaler: argument 'quantile_range' must be (lo, hi) with 0 <= lo < hi <= 100, "
                             f"got {quantile_range!r}")
        self.quantile_range = (float(quantile_range[0]), float(quantile_range[1]))
        self.with_centering, self.with_scaling = bool(with_centering), bool(with_scaling)

    def fit(self, x: Any) -> RobustScaler:
        x = _check(x, f"{self.name}.fit").astype(np.float64)
        self.center_ = np.median(x, axis=0) if self.with_centering else np.zeros(x.shape[1:])
        if self.with_scaling:
            q_lo, q_hi = np.percentile(x, self.quantile_range, axis=0)
            iqr = q_hi - q_lo
            self.scale_ = np.where(iqr > 0, iqr, 1.0)
        else:
            self.scale_ = np.ones(x.shape[1:])
        self._fitted_shape = x.shape[1:]
        return self

    def transform(self, x: Any) -> np.ndarray:
        x = self._fitted(x, "transform")
        return ((x - self.center_) / self.scale_).astype(_out_dtype(x))

    def inverse_transform(self, x: Any) -> np.ndarray:
        x = self._fitted(x, "inverse_transform")
        return (x * self.scale_ + self.center_).astype(_out_dtype(x))


class Normalizer(Estimator):
    """Scale each *sample* to unit norm ("l2", "l1" or "max"); zero rows stay zero. No inverse:
    the norms are not kept."""

    def __init__(self, norm: str = "l2") -> None:
        if norm not in ("l1", "l2", "max"):
            raise ValueError(f"Normalizer: argument 'norm' must be 'l1', 'l2' or 'max', got {norm!r}")
        self.norm = norm

    def fit(self, x: Any) -> Normalizer:
        _check(x, f"{self.name}.fit")  # stateless: validates only
        return self

    def transform(self, x: Any) -> np.ndarray:
        x = _check(x, f"{self.name}.transform")
        flat = x.reshape(x.shape[0], -1).astype(np.float64)
        if self.norm == "l2":
            norms = np.sqrt((flat * flat).sum(axis=1))
        elif self.norm == "l1":
            norms = np.abs(flat).sum(axis=1)
        else:
            norms = np.abs(flat).max(axis=1)
        norms = np.where(norms > 0, norms, 1.0)
        return (flat / norms[:, None]).reshape(x.shape).astype(_out_dtype(x))


class PCA(Estimator):
    """Principal components by SVD of the centered data (samples x features, features flattened).

    `n_components`: an int, a float in (0, 1) (keep enough components for that fraction of the
    variance), or None (all). `whiten=True` divides each component by its standard deviation, so
    the transformed training data has identity covariance; `eps` guards the division.
    Component signs are fixed (largest-magnitude loading positive) so results are reproducible.
    """

    def __init__(self, n_components: int | float | None = None, whiten: bool = False, eps: float = 1e-8) -> None:
        ok = n_components is None or (isinstance(n_components, (int, np.integer)) and not isinstance(
            n_components, bool) and n_components >= 1) or (isinstance(n_components, float) and 0 < n_components < 1)
        if not ok:
            raise ValueError(f"PCA: argument 'n_components' must be a positive int, a float in (0, 1) or None, "
                             f"got {n_components!r}")
        if not eps >= 0:
            raise ValueError(f"PCA: argument 'eps' must be >= 0, got {eps!r}")
        self.n_components, self.whiten, self.eps = n_components, bool(whiten), float(eps)

    def fit(self, x: Any) -> PCA:
        x = _check(x, f"{self.name}.fit", min_samples=2)
        flat = x.reshape(x.shape[0], -1).astype(np.float64)
        n, d = flat.shape
        if isinstance(self.n_components, (int, np.integer)) and self.n_components > min(n, d):
            raise ValueError(f"PCA.fit: argument 'n_components' {self.n_components} exceeds min(samples, features) "
                             f"= {min(n, d)}")
        self.mean_ = flat.mean(axis=0)
        _, s, vt = np.linalg.svd(flat - self.mean_, full_matrices=False)
        signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
        vt *= np.where(signs == 0, 1.0, signs)[:, None]
        variance = s ** 2 / (n - 1)
        ratio = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
        if self.n_components is None:
            k = len(s)
        elif isinstance(self.n_components, float):
            k = int(np.searchsorted(np.cumsum(ratio), self.n_components) + 1)
            k = min(k, len(s))
        else:
            k = int(self.n_components)
        self.components_ = vt[:k]
        self.explained_variance_ = variance[:k]
        self.explained_variance_ratio_ = ratio[:k]
        self.n_components_ = k
        self._fitted_shape = x.shape[1:]
        return self

    def transform(self, x: Any) -> np.ndarray:
        x = self._fitted(x, "transform")
        z = (x.reshape(x.shape[0], -1) - self.mean_) @ self.components_.T
        if self.whiten:
            z = z / np.sqrt(self.explained_variance_ + self.eps)
        return z.astype(_out_dtype(x))

    def inverse_transform(self, z: Any) -> np.ndarray:
        where = f"{self.name}.inverse_transform"
        if self._fitted_shape is None:
            raise RuntimeError(f"{where}: call fit() first")
        z = _check(z, where)
        if z.ndim != 2 or z.shape[1] != self.n_components_:
            raise ValueError(f"{where}: argument 'z' must have shape (N, {self.n_components_}), got {z.shape}")
        zz = z.astype(np.float64)
        if self.whiten:
            zz = zz * np.sqrt(self.explained_variance_ + self.eps)
        return (zz @ self.components_ + self.mean_).reshape(-1, *self._fitted_shape).astype(_out_dtype(z))


class MeanImageSubtraction(Estimator):
    """Zero-centering for images: subtract the mean image (C, H, W), or with `per_channel` the mean
    of each channel (the two forms of the seeds' zero-centering)."""

    def __init__(self, per_channel: bool = False) -> None:
        self.per_channel = bool(per_channel)

    def fit(self, x: Any) -> MeanImageSubtraction:
        x = _check(x, f"{self.name}.fit")
        if x.ndim != 4:
            raise ValueError(f"{self.name}.fit: argument 'x' must be images (N, C, H, W), got shape {x.shape}")
        xs = x.astype(np.float64)
        self.mean_ = xs.mean(axis=(0, 2, 3), keepdims=True)[0] if self.per_channel else xs.mean(axis=0)
        self._fitted_shape = x.shape[1:]
        return self

    def _fitted(self, x: Any, method: str) -> np.ndarray:
        if self.per_channel and self._fitted_shape is not None:  # any image size with the same channels
            x = _check(x, f"{self.name}.{method}")
            if x.ndim != 4 or x.shape[1] != self._fitted_shape[0]:
                raise ValueError(f"{self.name}.{method}: argument 'x' must be images with {self._fitted_shape[0]} "
                                 f"channels, got shape {x.shape}")
            return x
        return super()._fitted(x, method)

    def transform(self, x: Any) -> np.ndarray:
        x = self._fitted(x, "transform")
        return (x - self.mean_).astype(_out_dtype(x))

    def inverse_transform(self, x: Any) -> np.ndarray:
        x = self._fitted(x, "inverse_transform")
        return (x + self.mean_).astype(_out_dtype(x))
