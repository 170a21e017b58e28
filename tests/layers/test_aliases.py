"""Keras's layer names in gpunn.layers: MaxPooling2D, AveragePooling2D, BatchNormalization (the
same classes as MaxPool2D, AvgPool2D, BatchNorm) and Activation("relu"); a model built with them
saves and loads (the file names the class, so it loads under either name)."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
import gpunn.layers as layers
from gpunn import Sequential
from gpunn.io import model_from_config
from gpunn.layers import (Activation, AveragePooling2D, AvgPool2D, BatchNorm, BatchNormalization, Conv2D, Dense,
                          Flatten, MaxPool2D, MaxPooling2D, ReLU, Softmax)


@pytest.mark.parametrize("alias, cls", [(MaxPooling2D, MaxPool2D), (AveragePooling2D, AvgPool2D),
                                        (BatchNormalization, BatchNorm)])
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
    assert [type(layer) for layer in model.layers] == [Conv2D, BatchNorm, ReLU, MaxPool2D, Conv2D, ReLU, AvgPool2D,
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
