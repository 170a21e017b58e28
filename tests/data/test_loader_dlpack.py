"""DataLoader and the transforms over torch tensors and other DLPack / __array__ producers."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.data import DataLoader
from gpunn.data.transforms import CenterCrop, FlipTTA, Normalize, RandomHorizontalFlip, predict_tta

from tests.dlpack_support import DLPackOnly, ptr

torch = pytest.importorskip("torch")




def test_loader_holds_torch_tensors_in_place_and_yields_their_batches():
    x = torch.arange(40, dtype=torch.float32).reshape(10, 4)
    y = torch.arange(10, dtype=torch.int64)
    loader = DataLoader(x, y, batch_size=4, shuffle=True, seed=1, prefetch=0)
    assert ptr(loader.x) == x.data_ptr() and ptr(loader.y) == y.data_ptr()  # no copy of the data set
    seen = []
    for xb, yb in loader:
        assert isinstance(xb, np.ndarray) and yb.dtype == np.int64
        np.testing.assert_array_equal(xb, x.numpy()[yb])
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(10))


def test_loader_with_prefetch_thread_and_sample_weight():
    x = torch.ones(6, 2)
    loader = DataLoader(x, torch.zeros(6, dtype=torch.int64), batch_size=3, prefetch=2,
                        sample_weight=torch.full((6,), 2.0, dtype=torch.float64))
    batches = list(loader)
    assert len(batches) == 2 and all(len(b) == 3 for b in batches)
    np.testing.assert_array_equal(batches[0][2], np.full(3, 2.0))


def test_loader_takes_dlpack_only_objects():
    base = np.arange(12.0).reshape(6, 2)
    loader = DataLoader(DLPackOnly(base), DLPackOnly(np.arange(6)), batch_size=6, prefetch=0)
    (xb, yb), = list(loader)
    np.testing.assert_array_equal(xb, base)
    np.testing.assert_array_equal(yb, np.arange(6))


def test_loader_applies_transforms_to_torch_images():
    x = torch.rand(4, 1, 6, 6)
    loader = DataLoader(x, None, batch_size=4, transform=Normalize(0.5, 0.25), prefetch=0)
    (xb,) = [b for b in loader]
    np.testing.assert_allclose(xb, (x.numpy() - 0.5) / 0.25, rtol=1e-6)


def test_transforms_take_torch_tensors_without_writing_into_them():
    x = torch.rand(3, 2, 8, 8)
    before = x.clone()
    out = RandomHorizontalFlip(p=1.0, seed=0)(x)
    np.testing.assert_array_equal(out, x.numpy()[..., ::-1])
    assert torch.equal(x, before)
    assert CenterCrop(4)(x).shape == (3, 2, 4, 4)
    readonly = x.numpy().copy()
    readonly.flags.writeable = False
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0, seed=0)(DLPackOnly(readonly)), out)


def test_predict_tta_takes_torch_images():
    x = torch.rand(2, 1, 4, 4)
    probs = predict_tta(lambda v: np.asarray(v).reshape(len(v), -1)[:, :3], x, FlipTTA())
    assert probs.shape == (2, 3)


# -- bad inputs ----------------------------------------------------------------------------------
def test_loader_refuses_a_tensor_requiring_grad():
    with pytest.raises(TypeError, match=r"DataLoader: cannot import the torch.Tensor.*detach\(\)"):
        DataLoader(torch.ones(4, 2, requires_grad=True))


def test_loader_refuses_mismatched_tensor_labels():
    with pytest.raises(ValueError, match=r"DataLoader: argument 'y' must have 4 samples on axis 0 to match x"):
        DataLoader(torch.ones(4, 2), torch.zeros(3, dtype=torch.int64))


def test_transforms_refuse_wrong_rank_and_integer_tensors_by_name():
    with pytest.raises(ValueError, match=r"RandomHorizontalFlip: argument 'x' must have 4 dimensions"):
        RandomHorizontalFlip()(torch.ones(2, 3))
    with pytest.raises(TypeError, match=r"Normalize: argument 'x' must be a floating-point array, got dtype int64"):
        Normalize(0.0, 1.0)(torch.ones(1, 1, 2, 2, dtype=torch.int64))
