"""Keras's layer names in gpunn.layers: MaxPooling2D, AveragePooling2D (the same classes as
MaxPool2D, AvgPool2D), BatchNormalization (BatchNorm with Keras's momentum and epsilon) and
Activation("relu"); a model built with them saves and loads."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
import gpunn.layers as layers
from gpunn import Sequential
from gpunn.io import model_from_config
from gpunn.layers import (Activation, AveragePooling2D, AvgPool2D, BatchNorm, BatchNormalization, Conv2D, Dense,
                          Flatten, MaxPool2D, MaxPooling2D, ReLU, Softmax)


@pytest.mark.parametrize("alias, cls", [(MaxPooling2D, MaxPool2D), (AveragePooling2D, AvgPool2D)])
def test_the_aliases_are_the_same_classes(alias, cls):
    assert alias is cls
    assert type(alias()) is cls


def test_the_aliases_are_exported():
    for name in ("MaxPooling2D", "AveragePooling2D", "BatchNormalization", "output_activation"):
        assert name in layers.__all__ and hasattr(layers, name)


def keras_style_model():
    gpunn.manual_seed(0)
    return Sequential([
        Conv2D(4, 3, padding="same", input_shape=(1, 8, 8)), BatchNormalization(), Activation("relu"),
        MaxPooling2D(2), Conv2D(4, 3, padding="same"), Activation("relu"), AveragePooling2D(2),
        Flatten(), Dense(10), Activation("softmax"),
    ])


def test_keras_names_build_gpunn_layers():
    model = keras_style_model()
    assert [type(layer) for layer in model.layers] == [Conv2D, BatchNormalization, ReLU, MaxPool2D, Conv2D, ReLU, AvgPool2D,
                                                       Flatten, Dense, Softmax]


def test_a_model_built_with_keras_names_saves_and_loads(backend, tmp_path):
    model = keras_style_model()
    x = np.random.default_rng(0).random((16, 1, 8, 8)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 10, 16)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "keras_names.safetensors")
    loaded = gpunn.load_model(tmp_path / "keras_names.safetensors")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    rebuilt = model_from_config(model.get_config())  # the architecture alone, as load_model rebuilds it
    assert [type(layer) for layer in rebuilt.layers] == [type(layer) for layer in model.layers]


def test_batch_normalization_keeps_keras_running_statistics(backend):
    """Keras: running = momentum * running + (1 - momentum) * batch, momentum 0.99, epsilon 1e-3;
    the same number in BatchNorm (PyTorch's) means the opposite weighting."""
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(64, 5)).astype(np.float64)
    layer = BatchNormalization(momentum=0.9)
    assert isinstance(layer, BatchNorm) and layer.eps == 1e-3
    layer.forward(x, training=True)
    mean = backend.to_numpy(layer.buffers["running_mean"])
    np.testing.assert_allclose(mean, 0.9 * 0.0 + 0.1 * x.mean(axis=0), rtol=1e-5)
    assert BatchNormalization().momentum == pytest.approx(0.01)  # BatchNorm's (PyTorch's) form of Keras's 0.99


def test_batch_normalization_bad_arguments():
    with pytest.raises(ValueError, match="BatchNormalization: arguments 'center' and 'scale' must be both"):
        BatchNormalization(center=True, scale=False)
    with pytest.raises(ValueError, match="BatchNormalization: argument 'axis' must be 1"):
        BatchNormalization(axis=2)
    with pytest.raises(ValueError, match="argument 'axis'=-1 reads channels_last but 'data_format'"):
        BatchNormalization(axis=-1, data_format="channels_first")
    with pytest.raises(ValueError, match="BatchNormalization: argument 'momentum' must be a float in"):
        BatchNormalization(momentum=1.5)
    assert BatchNormalization(axis=-1).data_format == "channels_last"
