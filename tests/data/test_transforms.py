"""Augmentation: shapes, identity at zero strength, flips, crops in bounds, seeded determinism,
geometry against hand-made expectations, bad inputs, and test-time augmentation."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.data import transforms as T


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((6, 3, 10, 12)).astype(np.float32)


RANDOM = [
    lambda s: T.RandomCrop(8, padding=2, seed=s),
    lambda s: T.RandomHorizontalFlip(seed=s),
    lambda s: T.RandomVerticalFlip(seed=s),
    lambda s: T.RandomShift(2, seed=s),
    lambda s: T.RandomRotation(20, seed=s),
    lambda s: T.RandomAffine(degrees=10, translate=(0.1, 0.2), scale=(0.8, 1.2), stretch=0.1, shear=15, seed=s),
    lambda s: T.RandomAffine(degrees=30, interpolation="nearest", seed=s),
    lambda s: T.ColorJitter(0.4, 0.4, 0.4, seed=s),
]


@pytest.mark.parametrize("make", RANDOM)
def test_shapes_dtype_and_seeded_determinism(images, make):
    a, b, c = make(1)(images), make(1)(images), make(2)(images)
    expected = (6, 3, 8, 8) if isinstance(make(1), T.RandomCrop) and not isinstance(make(1), T.RandomShift) \
        else images.shape
    assert a.shape == expected and a.dtype == images.dtype
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    t = make(1)
    np.testing.assert_array_equal(t(images, rng=np.random.default_rng(4)), t(images, rng=np.random.default_rng(4)))


@pytest.mark.parametrize("t", [
    T.RandomHorizontalFlip(p=0.0), T.RandomVerticalFlip(p=0.0), T.RandomShift(0), T.RandomCrop((10, 12)),
    T.RandomRotation(0), T.RandomAffine(), T.RandomAffine(interpolation="nearest"), T.ColorJitter(0, 0, 0),
    T.Compose([]), T.Normalize(0.0, 1.0),
], ids=lambda t: type(t).__name__)
def test_identity_at_zero_strength(images, t):
    out = t(images)
    np.testing.assert_array_equal(out, images)
    assert out is not images


def test_input_is_not_modified(images):
    before = images.copy()
    for make in RANDOM:
        make(0)(images)
    np.testing.assert_array_equal(images, before)


@pytest.mark.parametrize("cls,axis", [(T.RandomHorizontalFlip, 3), (T.RandomVerticalFlip, 2)])
def test_flip_twice_is_identity(images, cls, axis):
    once = cls(p=1.0)(images)
    np.testing.assert_array_equal(once, np.flip(images, axis=axis))
    np.testing.assert_array_equal(cls(p=1.0)(once), images)
    # with p=0.5 the same seed flips the same samples, so applying it twice undoes it too
    np.testing.assert_array_equal(cls(p=0.5, seed=7)(cls(p=0.5, seed=7)(images)), images)
    flipped = cls(p=0.5, seed=7)(images)
    changed = [not np.array_equal(flipped[i], images[i]) for i in range(len(images))]
    assert 0 < sum(changed) < len(images)


def test_crops_stay_in_bounds_and_come_from_the_image():
    # each pixel value encodes its position, so every crop must be a contiguous window of it
    h, w = 9, 11
    img = np.arange(h * w, dtype=np.float32).reshape(1, 1, h, w).repeat(40, axis=0)
    out = T.RandomCrop((4, 5), seed=0)(img)
    assert out.shape == (40, 1, 4, 5)
    tops, lefts = out[:, 0, 0, 0] // w, out[:, 0, 0, 0] % w
    assert tops.min() >= 0 and tops.max() <= h - 4 and lefts.max() <= w - 5
    for k in range(40):
        t, l_ = int(tops[k]), int(lefts[k])
        np.testing.assert_array_equal(out[k, 0], img[0, 0, t:t + 4, l_:l_ + 5])
    assert len(set(zip(tops.tolist(), lefts.tolist()))) > 5  # positions actually vary


def test_padded_crop_and_shift_fill_and_range():
    img = np.ones((200, 1, 5, 5), np.float32)
    out = T.RandomShift(2, fill=-1.0, seed=0)(img)
    # a shift of (dy, dx) leaves exactly (5 - |dy|) * (5 - |dx|) ones
    ones = (out == 1).sum(axis=(1, 2, 3))
    assert set(np.unique(out).tolist()) <= {-1.0, 1.0}
    assert ones.min() == 9 and ones.max() == 25


def test_crop_too_large(images):
    with pytest.raises(ValueError, match="larger than the padded input"):
        T.RandomCrop(20)(images)


def test_rotation_by_90_degrees_matches_rot90():
    x = np.random.default_rng(0).random((2, 1, 5, 5))
    out = T.RandomRotation((90, 90))(x)
    np.testing.assert_allclose(out, np.rot90(x, k=-1, axes=(2, 3)), atol=1e-12)
    near = T.RandomRotation((90, 90), interpolation="nearest")(x)
    np.testing.assert_allclose(near, np.rot90(x, k=-1, axes=(2, 3)))


def test_affine_translation_moves_content():
    x = np.zeros((1, 1, 7, 7))
    x[0, 0, 3, 3] = 1.0
    t = T.RandomAffine(translate=(0.0, 2 / 7), seed=0)
    forward, shift = t.sample_matrices(1, 7, 7, np.random.default_rng(0))
    out = T.affine_sample(x, np.linalg.inv(forward), np.array([[2.0, 0.0]]))
    assert out[0, 0, 3, 5] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)


def test_affine_scale_up_keeps_center_and_fill_outside():
    x = np.ones((1, 1, 8, 8), np.float32)
    shrink = T.RandomAffine(scale=(0.5, 0.5), fill=0.25)(x)
    assert shrink[0, 0, 0, 0] == pytest.approx(0.25)  # corners now come from outside the image
    assert shrink[0, 0, 4, 4] == pytest.approx(1.0)


def test_color_jitter_ranges():
    x = np.random.default_rng(0).random((50, 3, 4, 4)).astype(np.float32) * 0.5 + 0.25
    b = T.ColorJitter(brightness=0.5, clip=None, seed=0)(x)
    ratio = (b / x).reshape(50, -1)
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-5)  # one factor per sample
    assert ratio.min() >= 0.5 - 1e-6 and ratio.max() <= 1.5 + 1e-6
    c = T.ColorJitter(contrast=0.5, clip=None, seed=0)(x)
    gray = lambda a: np.einsum("nchw,c->n", a, np.array([0.299, 0.587, 0.114], np.float32)) / 16  # noqa: E731
    np.testing.assert_allclose(gray(c), gray(x), rtol=1e-4)  # contrast keeps the mean gray level
    s = T.ColorJitter(saturation=1.0, seed=0)(x)
    assert s.min() >= 0 and s.max() <= 1
    gray1 = T.ColorJitter(saturation=0.9, seed=0)(x[:, :1])
    np.testing.assert_array_equal(gray1, x[:, :1])  # saturation does nothing to a single channel


def test_normalize_and_inverse():
    x = np.random.default_rng(0).random((4, 2, 3, 3)).astype(np.float32)
    t = T.Normalize([0.5, 0.25], [2.0, 0.5])
    out = t(x)
    np.testing.assert_allclose(out[:, 1], (x[:, 1] - 0.25) / 0.5, rtol=1e-6)
    np.testing.assert_allclose(t.inverse(out), x, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="2 values but x has 3 channels"):
        t(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="std"):
        T.Normalize(0.0, 0.0)


def test_compose_chains_and_shares_rng(images):
    c = T.Compose([T.RandomCrop(8, seed=0), lambda a: a * 2, T.RandomHorizontalFlip(p=1.0)])
    out = c(images, rng=np.random.default_rng(0))
    assert out.shape == (6, 3, 8, 8)
    again = c(images, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)
    with pytest.raises(TypeError, match="list of callables"):
        T.Compose([1])


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 3, 4)), "4 dimensions"),
    (np.zeros((0, 1, 4, 4), np.float32), "empty batch"),
    ([[[[1.0]]]], "host NumPy array"),
    (np.full((1, 1, 2, 2), np.nan, np.float32), "NaN"),
])
def test_bad_inputs(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        T.RandomRotation(10)(bad)


def test_affine_needs_float():
    with pytest.raises(TypeError, match="floating-point"):
        T.RandomAffine(10)(np.zeros((1, 1, 4, 4), np.uint8))
    # flips and crops work on uint8 images
    assert T.RandomCrop(2, seed=0)(np.zeros((1, 1, 4, 4), np.uint8)).dtype == np.uint8


@pytest.mark.parametrize("make,match", [
    (lambda: T.RandomCrop(0), "size"), (lambda: T.RandomCrop(3, padding=-1), "padding"),
    (lambda: T.RandomCrop(3, pad_mode="wrap"), "pad_mode"), (lambda: T.RandomHorizontalFlip(p=1.5), "'p'"),
    (lambda: T.RandomRotation(-5), "degrees"), (lambda: T.RandomAffine(scale=(1.2, 0.8)), "scale"),
    (lambda: T.RandomAffine(shear=95), "shear"), (lambda: T.RandomAffine(stretch=1.0), "stretch"),
    (lambda: T.RandomAffine(translate=(2.0, 0.0)), "translate"),
    (lambda: T.RandomAffine(interpolation="cubic"), "interpolation"),
    (lambda: T.ColorJitter(brightness=-1), "brightness"), (lambda: T.TenCrop(3, flip="diagonal"), "flip"),
])
def test_bad_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_ten_crop_views():
    x = np.arange(2 * 1 * 6 * 6, dtype=np.float32).reshape(2, 1, 6, 6)
    views = T.TenCrop(4).views(x)
    assert len(views) == 10 and all(v.shape == (2, 1, 4, 4) for v in views)
    np.testing.assert_array_equal(views[0], x[:, :, :4, :4])
    np.testing.assert_array_equal(views[3], x[:, :, 2:, 2:])
    np.testing.assert_array_equal(views[4], x[:, :, 1:5, 1:5])
    np.testing.assert_array_equal(views[5], x[:, :, :4, :4][..., ::-1])
    padded = T.TenCrop(6, padding=1, flip=None).views(x)
    assert len(padded) == 5
    np.testing.assert_array_equal(padded[4], x)  # the center of a padded crop is the input itself
    with pytest.raises(ValueError, match="larger than the padded input"):
        T.TenCrop(9).views(x)


def test_predict_tta_averages_probabilities():
    x = np.random.default_rng(0).random((5, 1, 6, 6)).astype(np.float32)

    def model(v):  # logits that depend on the view: mean intensity and its negative
        m = v.reshape(len(v), -1).mean(axis=1)
        return np.stack([m, -m], axis=1)

    tta = T.TenCrop(4, flip=None)
    probs = T.predict_tta(model, x, tta, batch_size=2)
    expected = np.mean([np.exp(model(v)) / np.exp(model(v)).sum(1, keepdims=True) for v in tta.views(x)], axis=0)
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    logits = T.predict_tta(model, x, T.FlipTTA(), average="logits")
    np.testing.assert_allclose(logits, model(x), rtol=1e-5)  # the mean is flip-invariant
    with pytest.raises(TypeError, match="TestTimeAugmentation"):
        T.predict_tta(model, x, T.RandomCrop(4))
    with pytest.raises(ValueError, match="average"):
        T.predict_tta(model, x, tta, average="votes")


def test_predict_tta_with_a_gpunn_model():
    from gpunn.models import lenet5
    model = lenet5(input_shape=(1, 12, 12))
    x = np.random.default_rng(0).random((3, 1, 12, 12)).astype(np.float32)
    probs = T.predict_tta(model, x, T.TenCrop(12, padding=1, flip=None))
    assert probs.shape == (3, 10) and np.allclose(probs.sum(axis=1), 1.0)
