"""data_format="channels_last" on the image layers: float64 gradient checks on every backend,
the same numbers as channels_first on transposed data, Flatten's order (Keras's), the scoped
default, serialization, and the errors that say an input looks transposed."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpunn
from gpunn import Sequential
from gpunn.layers import (AvgPool2D, BatchNorm, Conv2D, Dense, Flatten, GlobalAveragePooling2D, GroupNorm,
                          InstanceNorm, MaxPool2D, ReLU, image_data_format, use_image_data_format)
from gpunn.layers.data_format import LayoutWarning, layout_hint, to_channels_first, to_channels_last
from gpunn.testing import gradcheck

LAST = "channels_last"


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _distinct(*shape, seed=3):
    """Distinct values: max-pool away from ties, where its derivative is undefined."""
    return np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape) / 10.0


# every image layer, built channels_first and channels_last from the same arguments
IMAGE_LAYERS = {
    "Conv2D": lambda fmt: Conv2D(3, 3, data_format=fmt),
    "Conv2D-relu-same": lambda fmt: Conv2D(2, 3, padding="same", activation="relu", data_format=fmt),
    "Conv2D-tanh-strided": lambda fmt: Conv2D(2, (3, 2), strides=2, padding=1, activation="tanh", data_format=fmt),
    "Conv2D-softmax": lambda fmt: Conv2D(3, 1, activation="softmax", data_format=fmt),
    "MaxPool2D": lambda fmt: MaxPool2D(2, data_format=fmt),
    "MaxPool2D-overlap": lambda fmt: MaxPool2D(3, strides=2, padding=1, data_format=fmt),
    "AvgPool2D": lambda fmt: AvgPool2D(3, strides=2, padding=1, data_format=fmt),
    "GlobalAveragePooling2D": lambda fmt: GlobalAveragePooling2D(data_format=fmt),
    "GlobalAveragePooling2D-keepdims": lambda fmt: GlobalAveragePooling2D(data_format=fmt, keepdims=True),
    "BatchNorm": lambda fmt: BatchNorm(momentum=0.3, data_format=fmt),
    "BatchNorm-plain": lambda fmt: BatchNorm(affine=False, track_running_stats=False, data_format=fmt),
    "GroupNorm": lambda fmt: GroupNorm(2, data_format=fmt),
    "InstanceNorm": lambda fmt: InstanceNorm(data_format=fmt),
}


@pytest.mark.parametrize("kind", sorted(IMAGE_LAYERS))
@pytest.mark.parametrize("training", [True, False])
def test_channels_last_gradcheck(backend, kind, training):
    layer = IMAGE_LAYERS[kind](LAST)
    x = _nhwc(_distinct(2, 4, 7, 6))  # (N, H, W, C) = (2, 7, 6, 4)
    if training is False and isinstance(layer, BatchNorm) and layer.track_running_stats:
        layer.forward(x, training=True)  # running statistics off their defaults
    assert gradcheck(layer, x, training=training)


@given(n=st.integers(1, 2), c=st.integers(1, 3), f=st.integers(1, 3), h=st.integers(4, 7), w=st.integers(4, 7),
       k=st.sampled_from([1, 2, 3, (2, 3)]), stride=st.sampled_from([1, 2, (2, 1)]),
       padding=st.sampled_from(["valid", 1, (1, 0)]), dilation=st.sampled_from([1, 2]))
def test_channels_last_conv2d_gradcheck_over_shapes(backend, n, c, f, h, w, k, stride, padding, dilation):
    kh, kw = (k, k) if isinstance(k, int) else k
    ph, pw = (0, 0) if padding == "valid" else ((padding, padding) if isinstance(padding, int) else padding)
    if h + 2 * ph < dilation * (kh - 1) + 1 or w + 2 * pw < dilation * (kw - 1) + 1:
        return
    layer = Conv2D(f, k, strides=stride, padding=padding, dilation=dilation, data_format=LAST)
    assert gradcheck(layer, _x(n, h, w, c))


@pytest.mark.parametrize("shape", [(4, 3), (3, 5, 4), (2, 3, 4, 5)])
def test_channels_last_norms_gradcheck_over_ranks(backend, shape):
    """(N, C), (N, L, C) and (N, H, W, C): the channels on the last axis."""
    assert gradcheck(BatchNorm(data_format=LAST), _x(*shape))
    assert gradcheck(GroupNorm(1, data_format=LAST), _x(*shape))
    if len(shape) > 2:
        assert gradcheck(InstanceNorm(data_format=LAST), _x(*shape))


@pytest.mark.parametrize("kind", sorted(IMAGE_LAYERS))
def test_channels_last_computes_what_channels_first_does_on_transposed_data(backend, kind):
    x = _distinct(2, 4, 7, 6).astype(np.float32)
    first, last = IMAGE_LAYERS[kind]("channels_first"), IMAGE_LAYERS[kind](LAST)
    first.forward(x, training=False)  # builds, leaving any running statistics alone
    last.forward(_nhwc(x), training=False)
    last.load_state_dict(first.state_dict())  # the same weights: they do not depend on the layout
    y_first = first.forward(x, training=True)
    y_last = last.forward(_nhwc(x), training=True)
    back = lambda a: a if a.ndim == 2 else np.moveaxis(a, -1, 1)  # noqa: E731
    np.testing.assert_allclose(back(backend.to_numpy(y_last)), backend.to_numpy(y_first), rtol=1e-5, atol=1e-6)
    dy = np.random.default_rng(1).standard_normal(y_first.shape).astype(np.float32)
    dx_first = first.backward(dy)
    dx_last = last.backward(dy if dy.ndim == 2 else np.moveaxis(dy, 1, -1))
    np.testing.assert_allclose(back(backend.to_numpy(dx_last)), backend.to_numpy(dx_first), rtol=1e-5, atol=1e-6)
    for name, p in first.named_parameters():
        q = dict(last.named_parameters())[name]
        np.testing.assert_allclose(backend.to_numpy(q.grad), backend.to_numpy(p.grad), rtol=1e-4, atol=1e-5)
    if isinstance(first, BatchNorm) and first.track_running_stats:
        for k in first.buffers:
            np.testing.assert_allclose(backend.to_numpy(last.buffers[k]), backend.to_numpy(first.buffers[k]),
                                       rtol=1e-5)


def test_wrapped_channels_last_layers_gradcheck(backend):
    """Layers that delegate to an image layer (WeightNorm, Residual) keep its layout."""
    from gpunn.layers import Residual, WeightNorm

    x = _nhwc(_x(2, 3, 6, 5))
    assert gradcheck(WeightNorm(Conv2D(2, 3, data_format=LAST)), x)
    block = Sequential([Conv2D(3, 3, padding=1, data_format=LAST), BatchNorm(data_format=LAST), ReLU()])
    assert gradcheck(Residual(block), x)


def test_output_shapes_are_in_the_layers_layout():
    x = np.zeros((2, 9, 8, 3), np.float32)  # (N, H, W, C)
    assert Conv2D(5, 3, data_format=LAST).forward(x).shape == (2, 7, 6, 5)
    assert MaxPool2D(2, data_format=LAST).forward(x).shape == (2, 4, 4, 3)
    assert AvgPool2D(3, strides=1, data_format=LAST).forward(x).shape == (2, 7, 6, 3)
    assert GlobalAveragePooling2D(data_format=LAST).forward(x).shape == (2, 3)
    assert GlobalAveragePooling2D(data_format=LAST, keepdims=True).forward(x).shape == (2, 1, 1, 3)
    assert GlobalAveragePooling2D(keepdims=True).forward(x).shape == (2, 9, 1, 1)
    conv = Conv2D(5, 3, data_format=LAST)
    conv.build((9, 8, 3))
    assert conv.params["weight"].shape == (5, 3, 3, 3)  # (filters, in_channels, kh, kw) in both layouts
    assert conv.output_shape == (7, 6, 5)
    bn = BatchNorm(data_format=LAST)
    bn.build((9, 8, 3))
    assert bn.params["gamma"].shape == (3,) and bn.buffers["running_mean"].shape == (3,)


def test_a_conv_activation_reads_the_channels_in_either_layout(backend):
    """Softmax (axis 1 of NCHW) is over the channels in channels_last too, as in Keras."""
    y = backend.to_numpy(Conv2D(3, 1, activation="softmax", data_format=LAST).forward(_x(2, 4, 5, 2)))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)
    y = backend.to_numpy(Conv2D(3, 1, activation="softmax").forward(_x(2, 2, 4, 5)))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_global_average_pooling_is_the_mean_over_h_and_w(backend):
    x = _x(2, 3, 4, 5).astype(np.float32)
    y = backend.to_numpy(GlobalAveragePooling2D().forward(x))
    np.testing.assert_allclose(y, x.mean(axis=(2, 3)), rtol=1e-6)
    y = backend.to_numpy(GlobalAveragePooling2D(data_format=LAST).forward(_nhwc(x)))
    np.testing.assert_allclose(y, x.mean(axis=(2, 3)), rtol=1e-6)


def test_a_channels_last_network_matches_the_channels_first_one(backend):
    """The whole stack, BatchNorm + ReLU fused by the container included; after Flatten the
    orders differ (H, W, C against C, H, W), which Flatten(data_format="channels_first") undoes."""
    def net(fmt, flatten):
        gpunn.manual_seed(0)
        return Sequential([Conv2D(4, 3, padding=1, data_format=fmt), BatchNorm(data_format=fmt), ReLU(),
                           MaxPool2D(2, data_format=fmt), Conv2D(3, 3, activation="relu", data_format=fmt),
                           flatten, Dense(5)])

    x = _x(4, 2, 8, 8).astype(np.float32)
    ported = net("channels_first", Flatten(data_format="channels_first"))  # flattens in (H, W, C) order
    keras = net(LAST, Flatten())
    y_ported = ported.forward(x, training=True)
    keras.forward(_nhwc(x), training=True)
    keras.load_state_dict(ported.state_dict())
    y_keras = keras.forward(_nhwc(x), training=True)
    np.testing.assert_allclose(backend.to_numpy(y_keras), backend.to_numpy(y_ported), rtol=1e-5, atol=1e-6)
    dy = np.ones(y_keras.shape, np.float32)
    dx_ported, dx_keras = ported.backward(dy), keras.backward(dy)
    np.testing.assert_allclose(backend.to_numpy(dx_keras), _nhwc(backend.to_numpy(dx_ported)), rtol=1e-4, atol=1e-5)
    grads = dict(ported.named_parameters())
    for name, p in keras.named_parameters():
        np.testing.assert_allclose(backend.to_numpy(p.grad), backend.to_numpy(grads[name].grad), rtol=1e-4,
                                   atol=1e-5, err_msg=name)
    assert gradcheck(net(LAST, Flatten()), _nhwc(_x(2, 2, 8, 8)))


def test_flatten_orders():
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)  # (N, C, H, W)
    np.testing.assert_array_equal(Flatten().forward(x), x.reshape(2, -1))  # (C, H, W) order, as PyTorch
    keras_order = x.transpose(0, 2, 3, 1).reshape(2, -1)  # (H, W, C), as Keras
    np.testing.assert_array_equal(Flatten(data_format="channels_first").forward(x), keras_order)
    np.testing.assert_array_equal(Flatten(data_format=LAST).forward(_nhwc(x)), keras_order)
    np.testing.assert_array_equal(Flatten().forward(_nhwc(x)), keras_order)
    seq = _x(2, 3, 5).astype(np.float32)  # (N, C, L): the channels move last too
    np.testing.assert_array_equal(Flatten(data_format="channels_first").forward(seq),
                                  seq.transpose(0, 2, 1).reshape(2, -1))
    assert gradcheck(Flatten(data_format="channels_first"), _x(2, 3, 4, 2))
    assert gradcheck(Flatten(data_format="channels_first"), _x(3, 4))  # 2-D: nothing to reorder


def test_channels_last_model_saves_and_loads_identically(backend, tmp_path):
    gpunn.manual_seed(0)
    with use_image_data_format(LAST):
        model = Sequential([Conv2D(4, 3, activation="relu", input_shape=(8, 8, 2)), BatchNorm(), MaxPool2D(2),
                            GroupNorm(2), AvgPool2D(2, strides=1), InstanceNorm(), GlobalAveragePooling2D(),
                            Dense(3)])
    model.compile(loss="softmax_cross_entropy", optimizer="adam")
    x = _nhwc(_x(6, 2, 8, 8)).astype(np.float32)
    model.fit(x, np.arange(6) % 3, epochs=2, batch_size=3, verbose=0)  # running statistics move
    before = model.predict(x)
    model.save(tmp_path / "m.safetensors")
    loaded = gpunn.load_model(tmp_path / "m.safetensors")  # outside the block: the config says the layout
    assert image_data_format() == "channels_first"
    assert [getattr(layer, "data_format", LAST) for layer in loaded.layers] == [LAST] * len(loaded.layers)
    np.testing.assert_array_equal(loaded.predict(x), before)
    config = model.get_config()
    assert "channels_last" in str(config)


# -- the scoped default --------------------------------------------------------------------------
def test_use_image_data_format_is_scoped_and_captured_at_construction():
    assert image_data_format() == "channels_first"
    with use_image_data_format("Channels_Last") as fmt:
        assert fmt == LAST and image_data_format() == LAST
        conv, pool, bn, gap, flat = Conv2D(2, 3), MaxPool2D(2), BatchNorm(), GlobalAveragePooling2D(), Flatten()
        with use_image_data_format("channels_first"):
            inner = Conv2D(2, 3)
        assert image_data_format() == LAST
    assert image_data_format() == "channels_first"
    assert [conv.data_format, pool.data_format, bn.data_format, gap.data_format] == [LAST] * 4
    assert inner.data_format == "channels_first"
    assert flat.data_format is None  # Flatten never reorders unless told to (see its docstring)
    assert conv.forward(np.zeros((1, 5, 5, 2), np.float32)).shape == (1, 3, 3, 2)  # built after the block
    assert Conv2D(2, 3, data_format=LAST).data_format == LAST
    with pytest.raises(RuntimeError, match="boom"), use_image_data_format(LAST):
        raise RuntimeError("boom")
    assert image_data_format() == "channels_first"  # restored after an error too


def test_use_image_data_format_is_per_thread():
    seen = []
    with use_image_data_format(LAST):
        worker = threading.Thread(target=lambda: seen.append((image_data_format(), Conv2D(2, 3).data_format)))
        worker.start()
        worker.join()
    assert seen == [("channels_first", "channels_first")]


def test_data_format_bad_values():
    for make in (lambda v: Conv2D(2, 3, data_format=v), lambda v: MaxPool2D(2, data_format=v),
                 lambda v: AvgPool2D(2, data_format=v), lambda v: GlobalAveragePooling2D(data_format=v),
                 lambda v: BatchNorm(data_format=v), lambda v: GroupNorm(2, data_format=v),
                 lambda v: InstanceNorm(data_format=v), lambda v: Flatten(data_format=v)):
        name = type(make(None)).__name__
        with pytest.raises(ValueError, match=rf"{name}: argument 'data_format' must be 'channels_first' "
                                             r"\(N, C, H, W\) or 'channels_last' \(N, H, W, C\), got 'nhwc'"):
            make("nhwc")
        with pytest.raises(TypeError, match=rf"{name}: argument 'data_format' must be .*got int 3"):
            make(3)
    with pytest.raises(ValueError, match=r"use_image_data_format: argument 'data_format' must be"):
        with use_image_data_format("NCHW"):
            pass
    assert image_data_format() == "channels_first"


def test_channels_last_layers_refuse_other_ranks():
    with pytest.raises(ValueError, match=r"Conv2D.forward: argument 'x' must have 4 dimensions \(N, H, W, C\)"):
        Conv2D(2, 3, data_format=LAST).forward(np.zeros((2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"GlobalAveragePooling2D.forward: argument 'x' must have 4 dimensions "
                                         r"\(N, C, H, W\)"):
        GlobalAveragePooling2D().forward(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"must have 2 or 3 or 4 dimensions \(N, C\), \(N, L, C\) or \(N, H, W, C\)"):
        BatchNorm(data_format=LAST).forward(np.zeros((2, 3, 3, 3, 3), np.float32))
    bn = BatchNorm(data_format=LAST)
    bn.forward(np.zeros((2, 4, 4, 3), np.float32), training=False)
    with pytest.raises(ValueError, match=r"must have 3 channels \(the last axis\) as built, got shape "
                                         r"\('N', 4, 4, 5\)"):
        bn.forward(np.zeros((2, 4, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"must have 4 channels \(the last axis\), got per-sample shape \(4, 4, 3\)"):
        BatchNorm(4, data_format=LAST).forward(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"'groups'=2 must divide the number of channels, got 3 channels"):
        GroupNorm(2, data_format=LAST).forward(np.zeros((2, 4, 4, 3), np.float32))


# -- inputs in the other layout ------------------------------------------------------------------
MNIST_KERAS = (2, 28, 28, 1)  # Keras's MNIST layout: (N, H, W, C)
SAYS_LAST = (r"looks channels_last \(N, H, W, C\) with 1 channel\(s\), but this layer reads channels_first "
             r"\(N, C, H, W\): transpose the data with x.transpose\(0, 3, 1, 2\), or build the layers with "
             r"data_format='channels_last'")


def test_keras_mnist_shape_given_to_a_channels_first_conv_says_it_looks_channels_last():
    x = np.zeros(MNIST_KERAS, np.float32)
    with pytest.raises(ValueError, match=r"Conv2D: input of spatial size \(28, 1\) is smaller than the kernel "
                                         r"\(3, 3\).*" + SAYS_LAST):
        Conv2D(8, 3).forward(x)
    with pytest.raises(ValueError, match=r"MaxPool2D: input of spatial size \(28, 1\) is smaller than the pool "
                                         r"window \(2, 2\).*" + SAYS_LAST):
        MaxPool2D(2).forward(x)
    model = Sequential([Conv2D(8, 3, input_shape=(1, 28, 28)), Flatten(), Dense(10)])  # declared NCHW
    model.compile(loss="softmax_cross_entropy", optimizer="adam")
    with pytest.raises(ValueError, match=r"per-sample shape \(28, 28, 1\), but input_shape=\(1, 28, 28\) was "
                                         r"declared.*" + SAYS_LAST):
        model.fit(x, np.zeros(2, np.int64), verbose=0)
    built = Sequential([Conv2D(8, 3), Flatten(), Dense(10)])
    built.forward(np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"must have 1 channels \(axis 1\) as built, got shape "
                                         r"\('N', 28, 28, 1\).*" + SAYS_LAST):
        built.forward(x)
    # the same data, transposed or declared channels_last, trains
    model = Sequential([Conv2D(8, 3, data_format=LAST), MaxPool2D(2, data_format=LAST), Flatten(), Dense(10)])
    model.compile(loss="softmax_cross_entropy", optimizer="adam")
    model.fit(x, np.zeros(2, np.int64), verbose=0)
    assert model.layers[0].params["weight"].shape == (8, 1, 3, 3)


def test_channels_first_data_given_to_a_channels_last_layer_says_so():
    x = np.zeros((2, 1, 28, 28), np.float32)
    with pytest.raises(ValueError, match=r"smaller than the kernel.*looks channels_first \(N, C, H, W\) with 1 "
                                         r"channel\(s\).*x.transpose\(0, 2, 3, 1\)"):
        Conv2D(8, 3, data_format=LAST).forward(x)
    with pytest.raises(ValueError, match=r"smaller than the pool window.*looks channels_first"):
        AvgPool2D(2, data_format=LAST).forward(x)


def test_a_square_image_in_the_other_layout_warns_at_build():
    """(32, 32, 3) fits a channels_first 3x3 kernel (32 channels of 32 x 3) and would train on
    scrambled pixels without an error: building warns."""
    with pytest.warns(LayoutWarning, match=r"Conv2D.build: building for per-sample shape \(32, 32, 3\); the input "
                                           r"looks channels_last"):
        Conv2D(4, 3).forward(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.warns(LayoutWarning, match=r"looks channels_first"):
        Conv2D(4, 1, data_format=LAST).forward(np.zeros((1, 3, 32, 32), np.float32))


def test_layout_hint_stays_quiet_for_ordinary_shapes():
    assert layout_hint((1, 28, 28), "channels_first") == ""
    assert layout_hint((28, 28, 1), LAST) == ""
    assert layout_hint((16, 6, 6), "channels_first") == ""  # a feature map
    assert layout_hint((4, 6, 6), LAST) == ""  # too small to be an image
    assert layout_hint((16, 6, 6), "channels_first", channels=16) == ""
    assert layout_hint((6, 6, 16), "channels_first", channels=16) != ""  # the built count on the other end
    assert layout_hint((3, 5), "channels_first") == ""  # not an image


def test_views_are_views():
    x = np.zeros((2, 3, 4, 5))
    assert to_channels_last(x).shape == (2, 4, 5, 3) and np.shares_memory(to_channels_last(x), x)
    assert to_channels_first(to_channels_last(x)).flags.c_contiguous  # the round trip is the original memory
    assert to_channels_first(np.zeros((2, 3))).shape == (2, 3)
