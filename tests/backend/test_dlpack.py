"""DLPack and the array protocols in the backend: gpunn.from_dlpack, Backend.asarray, to_host,
foreign_to_host, with real torch tensors and plain objects exposing only one protocol."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn.backend import cuda_status, foreign_to_host, from_dlpack, is_foreign_array, to_host
from gpunn.backend.base import dlpack_device, dlpack_device_name
from gpunn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, LayerNorm, MaxPool2D, ReLU
from gpunn.losses import get_loss

torch = pytest.importorskip("torch")


def _ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


class DLPackOnly:
    """A producer with the DLPack protocol and nothing else (no shape, no dtype, no __array__)."""

    def __init__(self, a: np.ndarray, device: tuple[int, int] | None = (1, 0)) -> None:
        self._a = a
        self._device = device

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device


class DLPackNoDevice:
    """A producer with only __dlpack__ (older producers): read as host memory, as NumPy does."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)


class ArrayOnly:
    """A producer with only __array__ (a pandas-like or h5py-like object)."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


class OnDevice:
    """A producer that says it lives on CUDA device 0 and cannot hand its memory to the host."""

    def __dlpack__(self, **kwargs):
        raise BufferError("this producer cannot export to the host")

    def __dlpack_device__(self):
        return (2, 0)


class OnDeviceWithArray(OnDevice):
    """On a device, but its __array__ makes the host copy (as JAX's does)."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a.copy()


# -- recognising foreign arrays -----------------------------------------------------------------
def test_is_foreign_array():
    assert is_foreign_array(torch.zeros(2))
    assert is_foreign_array(DLPackOnly(np.zeros(2)))
    assert is_foreign_array(ArrayOnly(np.zeros(2)))
    for native in (np.zeros(2), np.float32(1.0), [1.0, 2.0], (1.0,), 3.0, None, "x", {"a": 1}):
        assert not is_foreign_array(native), native


def test_dlpack_device_names():
    assert dlpack_device(torch.zeros(2)) == (1, 0)
    assert dlpack_device(DLPackNoDevice(np.zeros(2))) is None
    assert dlpack_device_name((2, 1)) == "cuda:1"
    assert dlpack_device_name((99, 0)) == "device type 99:0"


def test_dlpack_device_bad_return_is_named():
    class Bad(DLPackOnly):
        def __dlpack_device__(self):
            return "cuda"

    with pytest.raises(TypeError, match=r"Bad.__dlpack_device__\(\) must return \(device type, device id\)"):
        dlpack_device(Bad(np.zeros(2)))


# -- zero copy on the host ----------------------------------------------------------------------
def test_torch_cpu_tensor_is_imported_without_a_copy():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    a = from_dlpack(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (3, 4)
    assert _ptr(a) == t.data_ptr()
    t[0, 0] = 100.0  # the same memory: a write to the tensor shows in the array
    assert a[0, 0] == 100.0


def test_root_exports_from_dlpack():
    assert gpunn.from_dlpack is from_dlpack
    assert "from_dlpack" in gpunn.__all__


def test_to_host_and_asarray_take_torch_tensors_in_place():
    t = torch.ones(4, 2, dtype=torch.float64)
    assert _ptr(to_host(t)) == t.data_ptr()
    assert _ptr(gpunn.get_backend().asarray(t)) == t.data_ptr()


def test_dtype_cast_copies_once():
    t = torch.ones(4, 2, dtype=torch.float64)
    a = from_dlpack(t, dtype=np.float32)
    assert a.dtype == np.float32 and _ptr(a) != t.data_ptr()
    np.testing.assert_array_equal(a, np.ones((4, 2), np.float32))


def test_plain_dlpack_producers():
    base = np.arange(6.0).reshape(2, 3)
    for producer in (DLPackOnly(base), DLPackNoDevice(base)):
        a = from_dlpack(producer)
        assert _ptr(a) == _ptr(base)
        np.testing.assert_array_equal(a, base)


def test_array_only_producer():
    base = np.arange(6.0, dtype=np.float32)
    a = from_dlpack(ArrayOnly(base))
    assert isinstance(a, np.ndarray) and _ptr(a) == _ptr(base)


def test_backend_arrays_round_trip_to_torch_without_a_copy():
    a = np.arange(6, dtype=np.float32)
    t = torch.from_dlpack(from_dlpack(a))
    assert t.data_ptr() == _ptr(a)


def test_readonly_export_stays_readonly_and_shared():
    base = np.arange(4.0)
    base.flags.writeable = False
    a = from_dlpack(DLPackOnly(base))
    assert not a.flags.writeable and _ptr(a) == _ptr(base)


def test_every_backend_imports_torch_tensors(backend):
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    a = backend.asarray(t)
    assert backend.is_native(a)
    np.testing.assert_array_equal(backend.to_numpy(a), t.numpy())


# -- one copy from a device, or a clear error -----------------------------------------------------
def test_device_producer_with_array_is_copied_once():
    base = np.arange(3.0)
    a = foreign_to_host(OnDeviceWithArray(base))
    np.testing.assert_array_equal(a, base)
    assert _ptr(a) != _ptr(base)


def test_device_producer_copying_through_dlpack_dl_device():
    """No __array__: DLPack 1.0's dl_device=(kDLCPU, 0), copy=True asks the producer for a host copy."""
    base = np.arange(4.0)
    asked = []

    class CopiesToHost(OnDevice):
        def __dlpack__(self, dl_device=None, copy=None, **kwargs):
            asked.append((dl_device, copy))
            if dl_device is None or int(dl_device[0]) != 1:
                raise BufferError("on the device")
            return base.copy().__dlpack__(**kwargs)

    a = from_dlpack(CopiesToHost())
    np.testing.assert_array_equal(a, base)
    assert asked and int(asked[-1][0][0]) == 1 and asked[-1][1] is True


def test_device_producer_without_a_host_copy_says_what_to_do():
    with pytest.raises(TypeError, match=r"gpunn.from_dlpack: the .*OnDevice lives on cuda:0, which this backend "
                                        r"cannot read.*t.cpu\(\).*set_backend\('cupy'\)"):
        from_dlpack(OnDevice())


# -- bad inputs ----------------------------------------------------------------------------------
def test_tensor_requiring_grad_is_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"gpunn.from_dlpack: cannot import the torch.Tensor.*detach\(\)"):
        from_dlpack(torch.ones(2, requires_grad=True))


@pytest.mark.parametrize("bad", [None, "abc", {"x": 1}])
def test_from_dlpack_refuses_non_arrays(bad):
    with pytest.raises(TypeError, match=r"gpunn.from_dlpack: argument 'obj' must be an array"):
        from_dlpack(bad)


def test_from_dlpack_refuses_an_object_array():
    with pytest.raises(TypeError, match=r"gpunn.from_dlpack: argument 'obj' must be an array.*object array"):
        from_dlpack(object())


def test_unsupported_dlpack_dtype_is_named():
    class BF16(DLPackOnly):
        def __dlpack__(self, **kwargs):
            return torch.ones(2, dtype=torch.bfloat16).__dlpack__(**kwargs)

    with pytest.raises(TypeError, match=r"gpunn.from_dlpack: cannot import the .*BF16 through DLPack"):
        from_dlpack(BF16(np.zeros(2)))


def test_check_float_array_names_a_foreign_dtype():
    from gpunn._checks import check_float_array

    with pytest.raises(TypeError, match=r"f: argument 'x' is a Tensor of dtype torch.float32, which is not a NumPy "
                                        r"dtype.*gpunn.from_dlpack"):
        check_float_array(torch.ones(2, 2), "x", "f")


# -- layers and losses ---------------------------------------------------------------------------
def test_layer_forward_and_backward_take_torch_tensors_in_place():
    layer = Dense(3)
    seen = []
    original = layer._as_input

    def spy(x, label):
        out = original(x, label)
        seen.append(out)
        return out

    layer._as_input = spy
    x = torch.randn(5, 4)
    y = layer.forward(x)
    assert _ptr(seen[0]) == x.data_ptr()
    np.testing.assert_allclose(y, x.numpy() @ layer.params["weight"].data + layer.params["bias"].data, rtol=1e-5)
    dx = layer.backward(torch.ones(5, 3, dtype=torch.float64))  # float64 gradient: cast to the layer's dtype
    assert dx.shape == (5, 4) and dx.dtype == np.float32


def test_layer_casts_float64_tensors_and_refuses_bool_and_complex():
    layer = Dense(2)
    assert layer.forward(torch.ones(3, 4, dtype=torch.float64)).dtype == np.float32
    with pytest.raises(TypeError, match=r"Dense.forward: argument 'x' must be a floating-point array, got dtype bool"):
        layer.forward(torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"forward: argument 'x' must be a floating-point array, got dtype complex64"):
        layer.forward(torch.ones(3, 4, dtype=torch.complex64))


def test_layer_refuses_a_tensor_requiring_grad_by_name():
    with pytest.raises(TypeError, match=r"forward: cannot import the torch.Tensor.*detach\(\)"):
        Dense(2).forward(torch.ones(3, 4, requires_grad=True))


def test_backward_takes_a_dlpack_only_gradient():
    layer = Dense(2)
    layer.forward(np.ones((3, 4), np.float32))
    dx = layer.backward(DLPackOnly(np.ones((3, 2), np.float32)))
    assert dx.shape == (3, 4)


@pytest.mark.parametrize("make, shape", [
    (lambda: Dense(3), (4, 5)),
    (lambda: ReLU(), (4, 5)),
    (lambda: LayerNorm(), (4, 5)),
    (lambda: BatchNorm(), (4, 5)),
    (lambda: Dropout(0.5), (4, 5)),
    (lambda: Conv2D(2, 3, padding=1), (2, 1, 5, 5)),
    (lambda: MaxPool2D(2), (2, 1, 4, 4)),
    (lambda: Flatten(), (2, 1, 4, 4)),
])
def test_layers_never_write_into_a_readonly_import(make, shape):
    """NumPy 2 marks a read-only DLPack export read-only; no layer may write into its input."""
    base = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    base.flags.writeable = False
    before = base.copy()
    layer = make()
    y = layer.forward(DLPackOnly(base), training=True)
    layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(base, before)


def test_losses_take_torch_predictions_and_int64_labels():
    loss = get_loss("sparse_categorical_crossentropy")
    pred = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    labels = torch.tensor([0, 2], dtype=torch.int64)
    value = float(loss.forward(pred, labels))
    expected = float(loss.forward(pred.numpy(), labels.numpy()))
    assert value == pytest.approx(expected) and value > 0
    mse = get_loss("mse")
    assert float(mse.forward(np.zeros((2, 2), np.float32), DLPackOnly(np.ones((2, 2), np.float32)))) == 1.0


def test_losses_refuse_complex_targets():
    with pytest.raises(TypeError, match=r"forward: argument 'target' must be numeric, got dtype complex64"):
        get_loss("mse").forward(np.zeros((2, 2), np.float32), torch.zeros(2, 2, dtype=torch.complex64))


# -- CUDA ------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_torch_cuda_tensor_into_cupy_without_a_copy_and_into_numpy_with_one():
    if not cuda_status().usable:
        pytest.skip(f"no usable CUDA: {cuda_status().reason}")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    t = torch.arange(6, dtype=torch.float32, device="cuda").reshape(2, 3)
    with gpunn.use_backend("cupy"):
        a = gpunn.from_dlpack(t)
        assert a.data.ptr == t.data_ptr()
        back = torch.from_dlpack(a)
        assert back.data_ptr() == t.data_ptr()
    with gpunn.use_backend("numpy"):
        h = gpunn.from_dlpack(t)  # one copy to the host
        assert isinstance(h, np.ndarray)
        np.testing.assert_array_equal(h, t.cpu().numpy())
