"""torch tensors (and other DLPack / __array__ producers) into fit, evaluate, predict,
train_on_batch and batch sources on the NumPy backend, with no copy where none is needed."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn.layers import Dense, ReLU
from gpunn.train.model import check_xy

from tests.dlpack_support import DLPackOnly, ptr

torch = pytest.importorskip("torch")




class ArrayOnly:
    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


class Spy(Dense):
    """A Dense that keeps each input it computed on (after import and cast)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list = []

    def _as_input(self, x, label):
        out = super()._as_input(x, label)
        self.seen.append(out)
        return out


def _model(first=None):
    gpunn.manual_seed(0)
    model = gpunn.Sequential([first or Dense(8), ReLU(), Dense(3)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _data(n=32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] > 0).to(torch.int64) + (x[:, 1] > 0).to(torch.int64)  # int64 labels in {0, 1, 2}
    return x, y


def test_torch_tensor_goes_into_fit_and_predict_with_no_copy():
    x, y = _data()
    spy = Spy(8)
    model = _model(spy)
    model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    assert ptr(spy.seen[0]) == x.data_ptr()  # the layer computed on the tensor's own memory
    spy.seen.clear()
    out = model.predict(x, batch_size=32)
    assert ptr(spy.seen[0]) == x.data_ptr()
    np.testing.assert_allclose(out, model.predict(x.numpy().copy(), batch_size=32), rtol=1e-6)
    x[0] += 10.0  # a write to the tensor is what the model sees next: the memory is shared, not copied
    assert not np.allclose(model.predict(x, batch_size=32)[0], out[0])


def test_check_xy_imports_in_place():
    x, y = _data(8)
    cx, cy = check_xy(x, y, "fit", model=_model())
    assert isinstance(cx, np.ndarray) and ptr(cx) == x.data_ptr()
    assert cy.dtype == np.int64 and ptr(cy) == y.data_ptr()


def test_fit_on_torch_matches_fit_on_numpy():
    x, y = _data()
    a = _model()  # each built (seeded) right before its own fit
    ha = a.fit(x, y, epochs=3, batch_size=8, verbose=0, shuffle=False)
    b = _model()
    hb = b.fit(x.numpy().copy(), y.numpy().copy(), epochs=3, batch_size=8, verbose=0, shuffle=False)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)
    assert ha.history["loss"][-1] < ha.history["loss"][0]
    ea = a.evaluate(x, y, return_dict=True)
    eb = b.evaluate(x.numpy().copy(), y.numpy().copy(), return_dict=True)
    assert ea.keys() == eb.keys() and all(ea[k] == pytest.approx(eb[k]) for k in ea)


def test_float64_tensor_is_cast_into_a_float32_model():
    x, y = _data(16)
    model = _model()
    model.fit(x.double(), y, epochs=1, verbose=0)
    out = model.predict(x.double())
    assert out.dtype == np.float32
    assert model.layers[0].params["weight"].data.dtype == np.float32


def test_train_on_batch_validation_data_and_sample_weight_take_tensors():
    x, y = _data(16)
    model = _model()
    loss = model.train_on_batch(x, y)
    assert np.isfinite(float(loss if np.isscalar(loss) else loss[0]))
    model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y), sample_weight=torch.ones(16, dtype=torch.float64))
    assert "val_loss" in model.history.history


def test_dlpack_only_and_array_only_objects_into_fit_and_predict():
    x, y = _data(16)
    xn, yn = x.numpy(), y.numpy()
    model = _model()
    model.fit(DLPackOnly(xn), DLPackOnly(yn), epochs=1, verbose=0)
    model.fit(ArrayOnly(xn), ArrayOnly(yn), epochs=1, verbose=0)
    np.testing.assert_allclose(model.predict(DLPackOnly(xn)), model.predict(xn), rtol=1e-6)
    np.testing.assert_allclose(model.predict(ArrayOnly(xn)), model.predict(xn), rtol=1e-6)


def test_readonly_dlpack_input_trains():
    x, y = _data(16)
    xr = x.numpy().copy()
    xr.flags.writeable = False
    model = _model()
    history = model.fit(DLPackOnly(xr), y, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))


def test_functional_model_with_a_dict_of_tensors():
    inp = gpunn.Input((5,), name="features")
    out = Dense(3)(inp)
    model = gpunn.Model(inp, out)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = _data(16)
    model.fit({"features": x}, y, epochs=1, verbose=0)
    assert model.predict({"features": x}).shape == (16, 3)


def test_batch_sources_of_tensors():
    x, y = _data(32)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]
    model = _model()
    history = model.fit(batches, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert model.predict(x[i:i + 8] for i in range(0, 32, 8)).shape == (32, 3)
    model.fit(lambda: iter([(DLPackOnly(x.numpy()), DLPackOnly(y.numpy()))]), epochs=1, verbose=0)


def test_dataloader_over_tensors_into_fit():
    x, y = _data(32)
    loader = gpunn.data.DataLoader(x, y, batch_size=8, shuffle=True, seed=3, prefetch=0)
    model = _model()
    history = model.fit(loader, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))


# -- bad inputs ----------------------------------------------------------------------------------
def test_bool_and_complex_tensors_are_refused_by_name():
    model = _model()
    x, y = _data(8)
    with pytest.raises(TypeError, match=r"fit: argument 'x' must be a floating-point array, got dtype bool"):
        model.fit(x > 0, y, verbose=0)
    with pytest.raises(TypeError, match=r"predict: argument 'x' must be a floating-point array, got dtype complex64"):
        model.predict(x.to(torch.complex64))


def test_tensor_requiring_grad_is_refused_with_the_fix():
    model = _model()
    with pytest.raises(TypeError, match=r"predict: argument 'x': cannot import the torch.Tensor.*detach\(\)"):
        model.predict(torch.ones(4, 5, requires_grad=True))


def test_label_count_mismatch_is_named():
    x, y = _data(8)
    with pytest.raises(ValueError, match=r"fit: arguments 'x' and 'y' must have the same number of samples, got 8 "
                                         r"and 4"):
        _model().fit(x, y[:4], verbose=0)


def test_nan_in_a_tensor_is_refused():
    x, y = _data(8)
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"fit: argument 'x'"):
        _model().fit(x, y, verbose=0)


def test_fit_and_predict_take_torch_tensors_on_every_backend(backend):
    x, y = _data(16)
    model = _model()
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    out = model.predict(x)
    assert isinstance(out, np.ndarray) and out.shape == (16, 3)
    np.testing.assert_allclose(out, model.predict(x.numpy().copy()), rtol=1e-6)
