"""Image augmentation on host NCHW NumPy batches, vectorized over the batch (no per-image loop).

Every random transform draws one set of parameters per sample from a generator: the one passed
as `rng=` (the DataLoader passes its per-epoch generator), else the transform's own, seeded by
`seed=`. Geometric transforms (rotation, shear, scale, stretch, translation) map every output
pixel back through the inverse affine matrix of its sample and sample the input there, bilinear
or nearest, with `fill` outside the image: one batched gather per bilinear corner.

Test-time augmentation: `TenCrop` (corners + center, and their flips) or `FlipTTA` give views of a
batch; `predict_tta` averages a model's softmax over the views.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gpunn._checks import is_real, pair, real_arg, real_pair
from gpunn.backend import foreign_to_host, is_foreign_array


def _images(x: Any, where: str, need_float: bool = False) -> np.ndarray:
    """Validate a host NCHW batch (a torch CPU tensor or any DLPack / __array__ producer is read
    in place as a NumPy array; transforms never write into their input)."""
    if is_foreign_array(x):
        x = foreign_to_host(x, where)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{where}: argument 'x' must be a host NumPy array (N, C, H, W), got {type(x).__name__}; "
                        "transforms run on the host before the loader moves batches to the device")
    if x.ndim != 4:
        raise ValueError(f"{where}: argument 'x' must have 4 dimensions (N, C, H, W), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{where}: argument 'x' has an empty batch (shape {x.shape}); expected at least one sample")
    if need_float and x.dtype.kind != "f":
        raise TypeError(f"{where}: argument 'x' must be a floating-point array, got dtype {x.dtype}; "
                        "convert images to float32 first")
    if x.dtype.kind == "f" and bool(np.isnan(x).any()):
        raise ValueError(f"{where}: argument 'x' contains NaN")
    return x


def _symmetric_range(value: Any, name: str, where: str) -> tuple[float, float]:
    """d -> (-d, d); (lo, hi) as given (lo <= hi)."""
    if is_real(value):
        d = real_arg(value, name, where, 0, want="finite and >= 0")
        return -d, d
    if (isinstance(value, (tuple, list)) and len(value) == 2 and all(is_real(v) for v in value)
            and value[0] <= value[1] and all(math.isfinite(v) for v in value)):
        return float(value[0]), float(value[1])
    raise ValueError(f"{where}: argument '{name}' must be a number >= 0 or a pair (lo, hi) with lo <= hi, "
                     f"got {value!r}")


class Transform:
    """Base: `t(x, rng=None)` returns a new batch; `x` is never modified in place."""

    need_float = False

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = _images(x, type(self).__name__, self.need_float)
        return self.apply(x, rng if rng is not None else self.rng)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "rng")
        return f"{type(self).__name__}({fields})"


class Compose(Transform):
    """Apply transforms in order; gpunn transforms share the generator, other callables get x only."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        super().__init__()
        if not isinstance(transforms, (list, tuple)) or not all(callable(t) for t in transforms):
            raise TypeError("Compose: argument 'transforms' must be a list of callables, got "
                            f"{transforms!r}")
        self.transforms = list(transforms)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.transforms:
            return x.copy()  # the same contract as every transform: a new array
        for t in self.transforms:
            x = t(x, rng=rng) if isinstance(t, Transform) else t(x)
        return x


# -- flips and crops ------------------------------------------------------------------------------
class RandomHorizontalFlip(Transform):
    """Mirror each sample left-right with probability p."""
    axis = 3

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(seed)
        self.p = real_arg(p, "p", type(self).__name__, 0, 1, want="a probability in [0, 1]", numpy=False)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        flip = rng.random(x.shape[0]) < self.p
        out = x.copy()
        out[flip] = np.flip(x[flip], axis=self.axis)
        return out


class RandomVerticalFlip(RandomHorizontalFlip):
    """Mirror each sample top-bottom with probability p."""
    axis = 2


def _pad(x: np.ndarray, ph: int, pw: int, mode: str, fill: float) -> np.ndarray:
    if not (ph or pw):
        return x
    widths = ((0, 0), (0, 0), (ph, ph), (pw, pw))
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=fill)
    return np.pad(x, widths, mode=mode)


_PAD_MODES = ("constant", "edge", "reflect", "symmetric")


def _crop_at(x: np.ndarray, size: tuple[int, int], oy: np.ndarray, ox: np.ndarray) -> np.ndarray:
    """Per-sample crops of `size` at top-left offsets (oy, ox): one gather through a window view."""
    windows = sliding_window_view(x, size, axis=(2, 3))  # (N, C, H-h+1, W-w+1, h, w), no copy
    return np.ascontiguousarray(windows[np.arange(x.shape[0]), :, oy, ox])  # -> (N, C, h, w)


class RandomCrop(Transform):
    """Pad each side by `padding`, then take a `size` crop at a random position per sample."""

    def __init__(self, size: int | tuple[int, int], padding: int | tuple[int, int] = 0, fill: float = 0.0,
                 pad_mode: str = "constant", seed: int | None = None) -> None:
        super().__init__(seed)
        where = type(self).__name__
        self.size = pair(size, "size", where, minimum=1)
        self.padding = pair(padding, "padding", where, minimum=0)
        if pad_mode not in _PAD_MODES:
            raise ValueError(f"{where}: argument 'pad_mode' must be one of {_PAD_MODES}, got {pad_mode!r}")
        self.fill, self.pad_mode = float(fill), pad_mode

    def _check_fits(self, x: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
        hp, wp = x.shape[2] + 2 * self.padding[0], x.shape[3] + 2 * self.padding[1]
        if size[0] > hp or size[1] > wp:
            raise ValueError(f"{type(self).__name__}: argument 'size' {size} is larger than the padded input "
                             f"({hp}, {wp}) from x of shape {x.shape}")
        return hp, wp

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._random_crop(x, self.size, rng)

    def _random_crop(self, x: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        hp, wp = self._check_fits(x, size)
        n = x.shape[0]
        oy = rng.integers(0, hp - size[0] + 1, n)
        ox = rng.integers(0, wp - size[1] + 1, n)
        return _crop_at(_pad(x, *self.padding, self.pad_mode, self.fill), size, oy, ox)


class RandomShift(RandomCrop):
    """Translate each sample by a whole number of pixels in [-max_shift, max_shift] per axis, with fill."""

    def __init__(self, max_shift: int | tuple[int, int], fill: float = 0.0, pad_mode: str = "constant",
                 seed: int | None = None) -> None:
        super().__init__(size=1, padding=max_shift, fill=fill, pad_mode=pad_mode, seed=seed)
        self.max_shift = self.padding

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._random_crop(x, (x.shape[2], x.shape[3]), rng)


class CenterCrop(Transform):
    """The central `size` crop (deterministic)."""

    def __init__(self, size: int | tuple[int, int]) -> None:
        super().__init__()
        self.size = pair(size, "size", type(self).__name__, minimum=1)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        if h > x.shape[2] or w > x.shape[3]:
            raise ValueError(f"CenterCrop: argument 'size' {self.size} is larger than the input {x.shape[2:]}")
        top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
        return np.ascontiguousarray(x[:, :, top:top + h, left:left + w])


# -- affine family ----------------------------------------------------------------------------------
def affine_sample(x: np.ndarray, inverse: np.ndarray, shift: np.ndarray, interpolation: str = "bilinear",
                  fill: float = 0.0) -> np.ndarray:
    """Resample each image of x through its own affine map, given by its inverse.

    For output pixel p (in coordinates centered on the image), the source point is
    inverse[n] @ (p - shift[n]). `inverse` is (N, 2, 2) acting on (col, row) vectors; `shift` is
    (N, 2) in pixels. Points outside the input read `fill`.

    The input is padded by one pixel of `fill` and source coordinates are clamped into that
    border, so every gather is in bounds and no per-corner masks are needed.
    """
    n, c, h, w = x.shape
    ct = np.dtype(x.dtype if x.dtype.kind == "f" else np.float32)  # coordinate and weight dtype
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    gx = (np.arange(w, dtype=ct) - ct.type(cx))[None, :].repeat(h, 0).ravel()[None, :]  # (1, P)
    gy = (np.arange(h, dtype=ct) - ct.type(cy))[:, None].repeat(w, 1).ravel()[None, :]
    inv = inverse.astype(ct)
    ux = gx - shift[:, 0:1].astype(ct)
    uy = gy - shift[:, 1:2].astype(ct)
    sx = inv[:, 0, 0:1] * ux + inv[:, 0, 1:2] * uy + ct.type(cx)  # (N, P) source columns
    sy = inv[:, 1, 0:1] * ux + inv[:, 1, 1:2] * uy + ct.type(cy)  # (N, P) source rows
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=fill).reshape(n, c, -1)
    stride = w + 2
    if interpolation == "nearest":
        xi = np.clip(np.rint(sx), -1, w).astype(np.intp) + 1
        yi = np.clip(np.rint(sy), -1, h).astype(np.intp) + 1
        return np.take_along_axis(padded, (yi * stride + xi)[:, None, :], axis=2).reshape(n, c, h, w)
    x0 = np.clip(np.floor(sx), -1, w - 1)
    y0 = np.clip(np.floor(sy), -1, h - 1)
    fx = np.clip(sx - x0, 0, 1)[:, None, :]
    fy = np.clip(sy - y0, 0, 1)[:, None, :]
    i00 = ((y0.astype(np.intp) + 1) * stride + x0.astype(np.intp) + 1)[:, None, :]
    v00 = np.take_along_axis(padded, i00, axis=2)
    v01 = np.take_along_axis(padded, i00 + 1, axis=2)
    v10 = np.take_along_axis(padded, i00 + stride, axis=2)
    v11 = np.take_along_axis(padded, i00 + stride + 1, axis=2)
    top = v00 + fx * (v01 - v00)  # exact at fx = 0 or 1, so the identity map returns x unchanged
    bottom = v10 + fx * (v11 - v10)
    out = top + fy * (bottom - top)
    return out.reshape(n, c, h, w).astype(x.dtype, copy=False)


_INTERPOLATIONS = ("bilinear", "nearest")


class RandomAffine(Transform):
    """Random rotation, translation, scale, per-axis stretch and shear, about the image center.

    - `degrees`: rotation angle range, d -> U(-d, d) (or a pair).
    - `translate`: (fy, fx) maximum shift as a fraction of the height and width.
    - `scale`: (lo, hi) isotropic zoom factor range, e.g. (0.9, 1.1).
    - `stretch`: s -> each axis independently scaled by U(1 - s, 1 + s) (the seeds' stretching).
    - `shear`: shear angle range in degrees along x, d -> U(-d, d) (or a pair).
    """

    need_float = True

    def __init__(self, degrees: float | tuple[float, float] = 0.0, translate: tuple[float, float] | None = None,
                 scale: tuple[float, float] | None = None, stretch: float = 0.0,
                 shear: float | tuple[float, float] = 0.0, interpolation: str = "bilinear", fill: float = 0.0,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        where = type(self).__name__
        self.degrees = _symmetric_range(degrees, "degrees", where)
        self.translate = real_pair(translate or 0.0, "translate", where, minimum=0.0)
        if max(self.translate) > 1.0:
            raise ValueError(f"{where}: argument 'translate' is a fraction of the size and must be <= 1, "
                             f"got {translate!r}")
        self.scale = real_pair(scale if scale is not None else 1.0, "scale", where, minimum=0.0)
        if self.scale[0] <= 0 or self.scale[0] > self.scale[1]:
            raise ValueError(f"{where}: argument 'scale' must be (lo, hi) with 0 < lo <= hi, got {scale!r}")
        self.stretch = real_arg(stretch, "stretch", where, 0, 1, hi_open=True, numpy=False)
        self.shear = _symmetric_range(shear, "shear", where)
        if max(abs(s) for s in self.shear) >= 90:
            raise ValueError(f"{where}: argument 'shear' must be within (-90, 90) degrees, got {shear!r}")
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"{where}: argument 'interpolation' must be one of {_INTERPOLATIONS}, "
                             f"got {interpolation!r}")
        self.interpolation = interpolation
        self.fill = real_arg(fill, "fill", where, want="a finite number", numpy=False)

    def sample_matrices(self, n: int, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample forward matrices M (N, 2, 2) (rotate @ shear @ scale) and shifts t (N, 2)."""
        theta = np.deg2rad(rng.uniform(*self.degrees, n))
        shear = np.tan(np.deg2rad(rng.uniform(*self.shear, n)))
        zoom = rng.uniform(*self.scale, n)
        sx = zoom * rng.uniform(1 - self.stretch, 1 + self.stretch, n)
        sy = zoom * rng.uniform(1 - self.stretch, 1 + self.stretch, n)
        tx = rng.uniform(-1, 1, n) * self.translate[1] * w
        ty = rng.uniform(-1, 1, n) * self.translate[0] * h
        cos, sin = np.cos(theta), np.sin(theta)
        rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
        shr = np.zeros((n, 2, 2))
        shr[:, 0, 0] = shr[:, 1, 1] = 1.0
        shr[:, 0, 1] = shear
        scl = np.zeros((n, 2, 2))
        scl[:, 0, 0], scl[:, 1, 1] = sx, sy
        return rot @ shr @ scl, np.stack([tx, ty], -1)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, _, h, w = x.shape
        forward, shift = self.sample_matrices(n, h, w, rng)
        return affine_sample(x, np.linalg.inv(forward), shift, self.interpolation, self.fill)


class RandomRotation(RandomAffine):
    """Rotate each sample by an angle drawn from U(-degrees, degrees) (or the given pair)."""

    def __init__(self, degrees: float | tuple[float, float], interpolation: str = "bilinear", fill: float = 0.0,
                 seed: int | None = None) -> None:
        super().__init__(degrees=degrees, interpolation=interpolation, fill=fill, seed=seed)


# -- photometric ------------------------------------------------------------------------------------
_LUMA = np.array([0.299, 0.587, 0.114])


class ColorJitter(Transform):
    """Per-sample brightness, contrast and saturation factors drawn from U(max(0, 1 - s), 1 + s).

    Brightness scales the pixels; contrast blends with the sample's mean gray level; saturation
    blends with its gray image (3-channel input only). The result is clipped to `clip` (None: off).
    """

    need_float = True

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 clip: tuple[float, float] | None = (0.0, 1.0), seed: int | None = None) -> None:
        super().__init__(seed)
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            real_arg(value, name, "ColorJitter", 0, want="a finite number >= 0", numpy=False)
        self.brightness, self.contrast, self.saturation = float(brightness), float(contrast), float(saturation)
        self.clip = clip

    def _factors(self, strength: float, n: int, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        return rng.uniform(max(0.0, 1 - strength), 1 + strength, n).astype(dtype)[:, None, None, None]

    def _gray(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] == 3:
            return np.einsum("nchw,c->nhw", x, _LUMA.astype(x.dtype))[:, None]
        return x.mean(axis=1, keepdims=True)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not (self.brightness or self.contrast or self.saturation):
            return x.copy()
        n = x.shape[0]
        out = x
        if self.brightness:
            out = out * self._factors(self.brightness, n, rng, x.dtype)
        if self.contrast:
            mean = self._gray(out).mean(axis=(1, 2, 3), keepdims=True)
            f = self._factors(self.contrast, n, rng, x.dtype)
            out = (out - mean) * f + mean
        if self.saturation and x.shape[1] == 3:
            gray = self._gray(out)
            f = self._factors(self.saturation, n, rng, x.dtype)
            out = (out - gray) * f + gray
        if self.clip is not None:
            out = np.clip(out, self.clip[0], self.clip[1])
        return out.astype(x.dtype, copy=False)


class Normalize(Transform):
    """(x - mean) / std per channel (scalars apply to every channel). Deterministic."""

    need_float = True

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        super().__init__()
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.std.ndim != 1 or not np.isfinite(self.mean).all():
            raise ValueError(f"Normalize: argument 'mean' must be a finite number or a 1-D sequence, got {mean!r}")
        if not (np.isfinite(self.std).all() and (self.std > 0).all()):
            raise ValueError(f"Normalize: argument 'std' must hold finite numbers > 0, got {std!r}")

    def _stats(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = x.shape[1]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.size not in (1, c):
                raise ValueError(f"Normalize: argument '{name}' has {v.size} values but x has {c} channels")
        shape = (1, -1, 1, 1)
        return self.mean.astype(x.dtype).reshape(shape), self.std.astype(x.dtype).reshape(shape)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean, std = self._stats(x)
        return (x - mean) / std

    def inverse(self, x: np.ndarray) -> np.ndarray:
        x = _images(x, "Normalize.inverse", need_float=True)
        mean, std = self._stats(x)
        return x * std + mean


# -- test-time augmentation -------------------------------------------------------------------------
class TestTimeAugmentation:
    """Deterministic views of a batch whose predictions are averaged."""

    __test__ = False  # not a pytest test class, despite the name

    def views(self, x: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


class TenCrop(TestTimeAugmentation):
    """The four corner crops and the center crop of the (optionally padded) batch, plus their flips.

    With `padding` p and `size` equal to the input size, the corners are the input shifted by p
    pixels diagonally: the test-time form of RandomCrop(size, padding=p). `flip`: "horizontal",
    "vertical" or None (five views).
    """

    def __init__(self, size: int | tuple[int, int], padding: int | tuple[int, int] = 0, fill: float = 0.0,
                 flip: str | None = "horizontal") -> None:
        self.size = pair(size, "size", "TenCrop", minimum=1)
        self.padding = pair(padding, "padding", "TenCrop", minimum=0)
        if flip not in ("horizontal", "vertical", None):
            raise ValueError(f"TenCrop: argument 'flip' must be 'horizontal', 'vertical' or None, got {flip!r}")
        self.fill, self.flip = float(fill), flip

    def views(self, x: np.ndarray) -> list[np.ndarray]:
        x = _images(x, "TenCrop")
        padded = _pad(x, *self.padding, "constant", self.fill)
        hp, wp = padded.shape[2:]
        h, w = self.size
        if h > hp or w > wp:
            raise ValueError(f"TenCrop: argument 'size' {self.size} is larger than the padded input {(hp, wp)}")
        tops_lefts = [(0, 0), (0, wp - w), (hp - h, 0), (hp - h, wp - w), ((hp - h) // 2, (wp - w) // 2)]
        crops = [np.ascontiguousarray(padded[:, :, t:t + h, l_:l_ + w]) for t, l_ in tops_lefts]
        if self.flip is not None:
            axis = 3 if self.flip == "horizontal" else 2
            crops += [np.ascontiguousarray(np.flip(c, axis=axis)) for c in crops]
        return crops


class FlipTTA(TestTimeAugmentation):
    """The batch and its horizontal mirror."""

    def views(self, x: np.ndarray) -> list[np.ndarray]:
        x = _images(x, "FlipTTA")
        return [x, np.ascontiguousarray(x[..., ::-1])]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _predict_fn(model: Any) -> Callable[[np.ndarray], Any]:
    if hasattr(model, "forward"):
        return lambda v: model.forward(v, training=False)
    if hasattr(model, "predict"):
        return model.predict
    if callable(model):
        return model
    raise TypeError(f"predict_tta: argument 'model' must be a Layer, a model with predict(), or a callable, "
                    f"got {type(model).__name__}")


def predict_tta(model: Any, x: np.ndarray, tta: TestTimeAugmentation, batch_size: int = 256,
                average: str = "probs") -> np.ndarray:
    """Class probabilities (N, classes) averaged over the views of `tta`.

    `model` maps a batch to logits (a gpunn Layer, run with training=False, or any callable).
    `average="probs"` averages softmax probabilities; "logits" averages the raw outputs.
    """
    from gpunn.backend import get_backend

    if not isinstance(tta, TestTimeAugmentation):
        raise TypeError(f"predict_tta: argument 'tta' must be a TestTimeAugmentation such as TenCrop, "
                        f"got {type(tta).__name__}")
    if average not in ("probs", "logits"):
        raise ValueError(f"predict_tta: argument 'average' must be 'probs' or 'logits', got {average!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"predict_tta: argument 'batch_size' must be a positive int, got {batch_size!r}")
    x = _images(x, "predict_tta")
    fn, be = _predict_fn(model), get_backend()
    chunks = []
    for i in range(0, x.shape[0], batch_size):
        views = tta.views(x[i:i + batch_size])
        total = None
        for v in views:
            out = np.asarray(be.to_numpy(fn(v)), dtype=np.float64)
            out = _softmax(out) if average == "probs" else out
            total = out if total is None else total + out
        chunks.append(total / len(views))
    return np.concatenate(chunks)
