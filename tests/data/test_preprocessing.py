"""Preprocessing against hand computations; PCA whitening gives identity covariance."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.data.preprocessing import (PCA, MeanImageSubtraction, MinMaxScaler, Normalizer, RobustScaler,
                                      StandardScaler)

X = np.array([[1.0, 10.0, 5.0], [3.0, 10.0, 7.0], [5.0, 10.0, 0.0], [7.0, 10.0, 4.0]])


def test_standard_scaler_by_hand():
    s = StandardScaler().fit(X)
    # column 0: mean 4, population std sqrt(5); column 1 is constant: std taken as 1
    np.testing.assert_allclose(s.transform(X)[:, 0], (X[:, 0] - 4) / np.sqrt(5))
    np.testing.assert_array_equal(s.transform(X)[:, 1], 0.0)
    np.testing.assert_allclose(s.inverse_transform(s.transform(X)), X)
    assert StandardScaler().fit_transform(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(StandardScaler(with_mean=False).fit_transform(X)[:, 0], X[:, 0] / np.sqrt(5))


def test_minmax_scaler_by_hand():
    s = MinMaxScaler((-1, 1)).fit(X)
    out = s.transform(X)
    np.testing.assert_allclose(out[:, 0], [-1, -1 / 3, 1 / 3, 1])
    np.testing.assert_allclose(out[:, 2], [2 * 5 / 7 - 1, 1, -1, 2 * 4 / 7 - 1])
    np.testing.assert_array_equal(out[:, 1], -1.0)  # a constant feature maps to the low end
    np.testing.assert_allclose(s.inverse_transform(out)[:, [0, 2]], X[:, [0, 2]])
    with pytest.raises(ValueError, match="feature_range"):
        MinMaxScaler((1, 0))


def test_robust_scaler_by_hand_and_outliers():
    x = np.array([[1.0], [2.0], [3.0], [4.0], [1000.0]])
    s = RobustScaler().fit(x)
    # median 3; 25th and 75th percentiles (linear) are 2 and 4
    np.testing.assert_allclose(s.transform(x)[:, 0], (x[:, 0] - 3) / 2)
    np.testing.assert_allclose(s.inverse_transform(s.transform(x)), x)
    with pytest.raises(ValueError, match="quantile_range"):
        RobustScaler((80, 20))


@pytest.mark.parametrize("norm,expected", [
    ("l2", [[3 / 5, 4 / 5], [0.0, 0.0]]), ("l1", [[3 / 7, 4 / 7], [0.0, 0.0]]), ("max", [[3 / 4, 1.0], [0.0, 0.0]]),
])
def test_normalizer_by_hand(norm, expected):
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(Normalizer(norm).fit_transform(x), expected)
    assert not hasattr(Normalizer(), "inverse_transform")


def test_pca_matches_eigendecomposition_and_inverts():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3)) @ np.array([[3.0, 0, 0], [1.0, 1.0, 0], [0, 0, 0.2]])
    pca = PCA(2).fit(x)
    cov = np.cov(x, rowvar=False)
    evals, evecs = np.linalg.eigh(cov)
    np.testing.assert_allclose(pca.explained_variance_, evals[::-1][:2], rtol=1e-10)
    for k in range(2):  # same directions up to sign
        assert abs(abs(pca.components_[k] @ evecs[:, ::-1][:, k]) - 1) < 1e-10
    full = PCA().fit(x)
    np.testing.assert_allclose(full.inverse_transform(full.transform(x)), x, atol=1e-10)
    assert PCA(0.9).fit(x).n_components_ == int(np.searchsorted(np.cumsum(evals[::-1]) / evals.sum(), 0.9) + 1)


def test_pca_whitening_gives_identity_covariance():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 4)) @ rng.standard_normal((4, 4)) + 5.0
    z = PCA(4, whiten=True, eps=0.0).fit_transform(x)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(4), atol=1e-10)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-10)
    pca = PCA(4, whiten=True).fit(x)
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(x)), x, atol=1e-6)


def test_pca_on_images_and_errors():
    x = np.random.default_rng(0).random((10, 1, 3, 3))
    pca = PCA(4).fit(x)
    assert pca.transform(x).shape == (10, 4) and pca.inverse_transform(pca.transform(x)).shape == x.shape
    with pytest.raises(ValueError, match="n_components"):
        PCA(20).fit(x)
    with pytest.raises(ValueError, match="n_components"):
        PCA(-1)
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        pca.inverse_transform(np.zeros((2, 3)))


def test_mean_image_subtraction():
    x = np.random.default_rng(0).random((8, 2, 3, 3)).astype(np.float32)
    m = MeanImageSubtraction().fit(x)
    np.testing.assert_allclose(m.transform(x), x - x.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.inverse_transform(m.transform(x)), x, atol=1e-6)
    pc = MeanImageSubtraction(per_channel=True).fit(x)
    np.testing.assert_allclose(pc.mean_[:, 0, 0], x.mean(axis=(0, 2, 3)), rtol=1e-6)
    assert pc.transform(np.zeros((1, 2, 5, 5), np.float32)).shape == (1, 2, 5, 5)  # any image size
    with pytest.raises(ValueError, match="2 channels"):
        pc.transform(np.zeros((1, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"images \(N, C, H, W\)"):
        MeanImageSubtraction().fit(np.zeros((3, 4)))


@pytest.mark.parametrize("est", [StandardScaler(), MinMaxScaler(), RobustScaler(), PCA(1), MeanImageSubtraction()],
                         ids=lambda e: type(e).__name__)
def test_bad_inputs(est):
    with pytest.raises(RuntimeError, match="fit"):
        est.transform(np.zeros((2, 1, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        est.fit(np.full((3, 1, 2, 2), np.nan))
    with pytest.raises(ValueError, match="samples"):
        est.fit(np.zeros((0, 1, 2, 2)))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        est.fit(np.zeros(3))
    with pytest.raises(TypeError, match="numeric"):
        est.fit(np.array([["a"], ["b"]]))
    est.fit(np.random.default_rng(0).random((4, 1, 2, 2)))
    with pytest.raises(ValueError, match="per-sample shape"):
        est.transform(np.zeros((2, 1, 3, 3)))
