"""Checkpoints of gpunn.Model as a hostile user writes them (re-signed, since the checksum guards
integrity, not authorship): graphs naming unregistered classes, cycles, unknown refs, huge layers,
deep nesting, subclassed records with forged shapes, corrupt multi-output compile settings. Each
ends in CheckpointError, in bounded memory, with nothing run."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import gpunn
from gpunn import Input, Model
from gpunn.io import CheckpointError, register_serializable
from gpunn.layers import Add, Dense
from tests.io.test_hostile import rewrite


@pytest.fixture
def graph_file(tmp_path):
    gpunn.manual_seed(0)
    a, b = Input((3,), name="a"), Input((3,), name="b")
    shared = Dense(4, activation="relu", name="shared")
    s = Add()([shared(a), shared(b)])
    model = Model([a, b], [Dense(2, name="cls")(s), Dense(1, name="reg")(s)])
    model.compile(loss=["sparse_categorical_crossentropy", "mse"], optimizer="adam", metrics={"cls": "accuracy"})
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    model.fit([x, x], [np.arange(8) % 2, x[:, :1]], epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "graph.safetensors"
    model.save(path)
    return path


def layers_of(meta):
    return meta["gpunn.architecture"]["graph"]["layers"]


def test_the_file_loads(graph_file):
    model = gpunn.load_model(graph_file)
    assert model.output_names == ["cls", "reg"] and model.optimizer.step_count == 2


@pytest.mark.parametrize("edit, match", [
    (lambda m: layers_of(m)[0]["layer"].update({"class": "subprocess.Popen"}), "not a registered gpunn class"),
    (lambda m: layers_of(m)[0]["inbound_nodes"][0].__setitem__(0, ["Add", 0, 0]), "cycle"),
    (lambda m: layers_of(m)[0]["inbound_nodes"][0].__setitem__(0, ["nowhere", 0, 0]), "'nowhere'"),
    (lambda m: layers_of(m)[0].update({"inbound_nodes": "a"}), "must be a list"),
    (lambda m: m["gpunn.architecture"].update({"graph": []}), "'graph' must be an object"),
    (lambda m: m["gpunn.architecture"].update({"class": "Sequential"}), "not a gpunn.Model"),
    (lambda m: m["gpunn.compile"]["outputs"].update({"names": ["x", "y"]}), "but the model's outputs are"),
    (lambda m: m["gpunn.compile"]["outputs"].update({"losses": [None, None]}), "at least one a loss"),
    (lambda m: m["gpunn.compile"]["outputs"].update({"loss_weights": [1, float("inf")]}), "finite floats"),
    (lambda m: m["gpunn.compile"]["outputs"].update({"metrics": [["accuracy"]]}), "must be a list of 2 entries"),
    (lambda m: m["gpunn.compile"]["outputs"].pop("metrics"), "keys names, losses, loss_weights, metrics"),
    (lambda m: m["gpunn.compile"]["outputs"]["losses"].__setitem__(0, {"class": "os.system", "config": {}}),
     "not a registered gpunn class"),
])
def test_forged_graph_files_are_refused(tmp_path, graph_file, edit, match):
    bad = tmp_path / "bad.safetensors"
    rewrite(graph_file, bad, edit)
    with pytest.raises(CheckpointError, match=match):
        gpunn.load_model(bad)


def test_a_huge_layer_in_a_graph_fails_in_bounded_memory(tmp_path, graph_file):
    bad = tmp_path / "huge.safetensors"
    rewrite(graph_file, bad, lambda m: layers_of(m)[-1]["layer"]["config"].update({"units": 10 ** 8}))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="elements"):
            gpunn.load_model(bad)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2 ** 20


def test_graphs_nested_too_deep_are_refused(tmp_path, graph_file):
    def nest(m):
        arch = m["gpunn.architecture"]
        inner = {k: arch[k] for k in ("class", "config", "trainable", "graph")}
        for _ in range(70):  # a model whose only layer is a model whose only layer is ...
            inner = {"class": "Model", "config": {"name": "m"}, "trainable": True,
                     "graph": {"inputs": [{"name": "i", "shape": [3]}],
                               "layers": [{"name": "m", "layer": inner, "inbound_nodes": [[["i", 0, 0]]]}],
                               "outputs": [["m", 0, 0]], "output_names": ["m"]}}
        arch["graph"] = inner["graph"]

    bad = tmp_path / "deep.safetensors"
    rewrite(graph_file, bad, nest)
    with pytest.raises(CheckpointError, match="nested deeper than"):
        gpunn.load_model(bad)


@register_serializable(package="hostile")
class Small(gpunn.Model):
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.width = width
        self.d = Dense(width)

    def call(self, x, training=False):
        return self.d(x)

    def get_config(self):
        return {"width": self.width}


@pytest.fixture
def subclassed_file(tmp_path):
    model = Small()
    model.compile(loss="mse", optimizer="sgd")
    model.train_on_batch(np.ones((2, 4), np.float32), np.zeros((2, 3), np.float32))
    path = tmp_path / "small.safetensors"
    model.save(path)
    return path


def sub(meta):
    return meta["gpunn.architecture"]["subclassed"]


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["gpunn.architecture"].update({"class": "hostile>Nope"}), "not a registered gpunn class"),
    (lambda m: sub(m)["built_shapes"].update({"d": [10 ** 6]}), "elements"),
    (lambda m: sub(m)["built_shapes"].update({"ghost.d": [4]}), "does not have"),
    (lambda m: sub(m).update({"input_shape": [[[4]]]}), "list of positive ints"),
    (lambda m: m["gpunn.architecture"]["config"].update({"width": 10 ** 7}), "elements|does not match"),
])
def test_forged_subclassed_files_are_refused(tmp_path, subclassed_file, edit, match):
    assert gpunn.load_model(subclassed_file).d.params["weight"].shape == (4, 3)
    bad = tmp_path / "bad.safetensors"
    rewrite(subclassed_file, bad, edit)
    with pytest.raises(CheckpointError, match=match):
        gpunn.load_model(bad)
