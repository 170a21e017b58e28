"""scikit-learn's bundled 8x8 handwritten digits: the offline default for demos.

scikit-learn is optional (the `demo` extra), so it is imported only when this is called.
"""
from __future__ import annotations

import numpy as np


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as (x, y): x float32 NCHW (N, 1, 8, 8) in [0, 1], y int64 in [0, 9]."""
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError("load_digits needs scikit-learn, which ships the digits data: "
                          "pip install 'gpunn[demo]' (or pip install scikit-learn)") from exc
    data = _sk_load_digits()
    x = (np.asarray(data.images, dtype=np.float32) / np.float32(16.0))[:, None, :, :]  # pixel values are 0..16
    return np.ascontiguousarray(x), np.asarray(data.target, dtype=np.int64)


def train_test_split(x: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0,
                     stratify: bool = True) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split (x, y) into train and test; with `stratify`, each class keeps its proportion."""
    where = "train_test_split"
    if len(x) != len(y):
        raise ValueError(f"{where}: arguments 'x' and 'y' must have the same length, got {len(x)} and {len(y)}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"{where}: argument 'test_fraction' must be in (0, 1), got {test_fraction!r}")
    if len(x) < 2:
        raise ValueError(f"{where}: need at least 2 samples to split, got {len(x)}")
    rng = np.random.default_rng(seed)
    y_np = np.asarray(y)
    if stratify:
        test_idx = []
        for c in np.unique(y_np):
            members = rng.permutation(np.flatnonzero(y_np == c))
            test_idx.append(members[:int(round(len(members) * test_fraction))])
        test = np.sort(np.concatenate(test_idx))
    else:
        test = np.sort(rng.permutation(len(x))[:max(1, int(round(len(x) * test_fraction)))])
    mask = np.ones(len(x), dtype=bool)
    mask[test] = False
    train = rng.permutation(np.flatnonzero(mask))
    return (x[train], y[train]), (x[test], y[test])
