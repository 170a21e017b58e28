"""Architectures of gpunn.Model as configs (gpunn/io/config.py): a functional graph (layers with
their inbound calls) and a registered subclass (constructor kwargs plus build shapes) round-trip
through model_from_config; configs that do not describe such a model raise ConfigError."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import gpunn
from gpunn import Input, Model
from gpunn.io import ConfigError, model_from_config, register_serializable
from gpunn.layers import Add, BatchNorm, Concatenate, Dense, ReLU


def functional() -> Model:
    a, b = Input((4,), name="a"), Input((4,), name="b")
    shared = Dense(5, activation="tanh", name="shared")
    inner_in = Input((5,), name="inner_in")
    inner = Model(inner_in, ReLU()(BatchNorm()(inner_in)), name="inner")
    s = Add()([shared(a), shared(b)])
    h = Concatenate()([inner(s), gpunn.Sequential([Dense(3), ReLU()])(s)])
    return Model([a, b], {"out": Dense(2, name="head")(h), "aux": s}, name="net")


def test_a_graph_round_trips_through_json():
    model = functional()
    config = json.loads(json.dumps(model.get_config()))
    graph = config["graph"]
    assert config["class"] == "Model" and config["input_shape"] is None
    assert [e["name"] for e in graph["layers"]] == list(model.children)
    shared = next(e for e in graph["layers"] if e["name"] == "shared")
    assert shared["inbound_nodes"] == [[["a", 0, 0]], [["b", 0, 0]]]
    add = next(e for e in graph["layers"] if e["name"] == "Add")
    assert add["inbound_nodes"] == [[["shared", 0, 0], ["shared", 1, 0]]]
    assert graph["output_names"] == ["out", "aux"]
    rebuilt = model_from_config(config)
    assert type(rebuilt) is Model and rebuilt.name == "net"
    assert list(rebuilt.children) == list(model.children) and rebuilt.output_names == ["out", "aux"]
    assert rebuilt.get_config() == config
    rebuilt.load_state_dict(model.state_dict())
    x = [np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)] * 2
    for u, v in zip(model.forward(x), rebuilt.forward(x)):
        np.testing.assert_array_equal(u, v)


def test_float64_and_frozen_flags_survive():
    model = functional().to_dtype("float64")
    model.get_layer("shared").trainable = False
    rebuilt = model_from_config(model.get_config())
    assert rebuilt.dtype == np.float64 and rebuilt.get_layer("head").params["weight"].data.dtype == np.float64
    assert not rebuilt.get_layer("shared").trainable and rebuilt.get_layer("head").trainable


def edit(model, fn):
    config = copy.deepcopy(model.get_config())
    fn(config)
    return config


@pytest.mark.parametrize("fn, match", [
    (lambda c: c["graph"]["layers"].reverse(), "the graph does not build|not in the form gpunn writes"),
    (lambda c: c["graph"]["layers"][0]["layer"].update({"class": "Popen"}), "'Popen' is not a registered gpunn class"),
    (lambda c: c.update({"class": "Dense"}), "class 'Dense' is not a gpunn.Model"),
    (lambda c: c["config"].update({"layers": []}), "'config' of a functional model must be"),
    (lambda c: c["graph"]["layers"][-1]["layer"]["config"].update({"units": 10 ** 9}), "elements"),
    (lambda c: c["graph"]["layers"][0]["inbound_nodes"][0].append(["b", 0, 0]), "the graph does not build"),
    (lambda c: c["graph"]["outputs"].append(["ghost", 0, 0]), "'ghost'"),
    (lambda c: c.update({"input_shape": [4]}), "'input_shape' null"),
    (lambda c: c.update({"dtype": "float16"}), "'dtype' must be one of"),
])
def test_bad_graph_configs(fn, match):
    with pytest.raises(ConfigError, match=match):
        model_from_config(edit(functional(), fn))


def test_a_dangling_call_is_not_canonical():
    model = functional()

    def add_dangling(c):
        head = next(e for e in c["graph"]["layers"] if e["name"] == "head")
        head["inbound_nodes"].append(copy.deepcopy(head["inbound_nodes"][0]))  # a second call leading nowhere

    with pytest.raises(ConfigError, match="not in the form gpunn writes"):
        model_from_config(edit(model, add_dangling))


@register_serializable(package="tests")
class Tower(gpunn.Model):
    def __init__(self, width: int = 4, name: str | None = None) -> None:
        super().__init__(name=name)
        self.width = width
        self.body = Dense(width, activation="relu")
        self.pair = [Dense(width), Dense(width)]
        self.merge = Add()

    def call(self, x, training=False):
        h = self.body(x)
        return self.merge([self.pair[0](h), self.pair[1](h)])

    def get_config(self):
        return {"width": self.width, "name": self.name}


def test_a_registered_subclass_round_trips():
    model = Tower(width=6, name="t")
    model.build((3,))
    config = json.loads(json.dumps(gpunn.io.config.model_to_config(model)))
    assert config["class"] == "tests>Tower" and config["config"] == {"width": 6, "name": "t"}
    assert config["subclassed"]["built_shapes"] == {"body": [3], "pair.0": [6], "pair.1": [6], "merge": [[6], [6]]}
    rebuilt = model_from_config(config)
    assert type(rebuilt) is Tower and rebuilt.built and rebuilt.input_shape == (3,)
    assert rebuilt.merge.input_shape == ((6,), (6,))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("fn, match", [
    (lambda c: c["subclassed"]["built_shapes"].update({"ghost": [3]}), r"names layers \['ghost'\]"),
    (lambda c: c["subclassed"]["built_shapes"].update({"body": [2 ** 30]}), "elements"),
    (lambda c: c["subclassed"]["built_shapes"].update({"body": "3"}), "list of positive ints"),
    (lambda c: c["subclassed"].pop("layers"), "keys input_shape, built_shapes, layers"),
    (lambda c: c["config"].update({"depth": 3}), r"unknown arguments \['depth'\]"),
    (lambda c: c.update({"class": "Dense"}), "not a subclass of gpunn.Model|unknown arguments"),
])
def test_bad_subclassed_configs(fn, match):
    model = Tower()
    model.build((3,))
    config = gpunn.io.config.model_to_config(model)
    fn(config)
    with pytest.raises(ConfigError, match=match):
        model_from_config(config)


def test_a_subclass_without_get_config():
    class Plain(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.d = Dense(2)

        def call(self, x, training=False):
            return self.d(x)

    model = Plain()
    model.build((3,))
    with pytest.raises(NotImplementedError, match="defines get_config"):
        model.get_config()
    with pytest.raises(ConfigError, match="register the class"):
        gpunn.io.config.model_to_config(model)
    described = gpunn.io.config.model_to_config(model, weights_only=True)  # what a weights file names
    assert described["subclassed"]["layers"] == {"d": "Dense"}


def test_get_config_must_fit_the_constructor():
    @register_serializable(package="tests", name="Misfit")
    class Misfit(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.d = Dense(2)

        def call(self, x, training=False):
            return self.d(x)

        def get_config(self):
            return {"units": 2}

    model = Misfit()
    model.build((3,))
    with pytest.raises(ConfigError, match=r"get_config\(\) returned \['units'\], which Misfit\(\) does not take"):
        gpunn.io.config.model_to_config(model)
