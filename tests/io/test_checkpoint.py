"""Saving and loading: the safetensors format, round trips for every layer type, exact resumption,
clear errors that leave the model unchanged, atomic writes, and no pickle anywhere."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import gpunn
from gpunn import layers as L
from gpunn.constraints import MaxNorm
from gpunn.io import CheckpointError, SafetensorsError, read_safetensors, write_safetensors
from gpunn.regularizers import L1, L2

IMG = (4, 6, 6)
VEC = (6,)

# one model per layer type, with non-default settings so that lost arguments change the output
FACTORIES = {
    "Dense": (VEC, lambda: [L.Dense(5, activation="tanh", kernel_regularizer=L2(0.02), kernel_constraint=MaxNorm(3.0),
                                    use_bias=True)]),
    "Conv2D": (IMG, lambda: [L.Conv2D(3, 3, padding="same", dilation=1, activation="relu", kernel_regularizer=L1(0.01)),
                             L.Conv2D(2, (3, 2), strides=2, use_bias=False)]),
    "MaxPool2D": (IMG, lambda: [L.MaxPool2D(3, strides=2, padding=1)]),
    "AvgPool2D": (IMG, lambda: [L.AvgPool2D(pool_size=2, strides=1)]),
    "GlobalAveragePooling2D": (IMG, lambda: [L.Conv2D(3, 3, data_format="channels_last"),
                                             L.GlobalAveragePooling2D(data_format="channels_last", keepdims=True),
                                             L.Flatten()]),
    "BatchNorm": (IMG, lambda: [L.BatchNorm(momentum=0.3, eps=1e-3), L.Flatten(), L.BatchNorm(affine=False)]),
    "BatchNormalization": (IMG, lambda: [L.BatchNormalization(momentum=0.8), L.Flatten(), L.BatchNormalization(axis=-1)]),
    "LayerNorm": (IMG, lambda: [L.LayerNorm(normalized_ndim=2, eps=1e-4)]),
    "GroupNorm": (IMG, lambda: [L.GroupNorm(2)]),
    "InstanceNorm": (IMG, lambda: [L.InstanceNorm(affine=False)]),
    "Dropout": (VEC, lambda: [L.Dense(4), L.Dropout(0.3)]),
    "Flatten": (IMG, lambda: [L.Flatten(), L.Dense(3)]),
    "Maxout": (VEC, lambda: [L.Maxout(4, pieces=3)]),
    "PReLU": (IMG, lambda: [L.PReLU(), L.Flatten(), L.PReLU(shared=True)]),
    "ELU": (VEC, lambda: [L.ELU(alpha=0.5)]),
    "SELU": (VEC, lambda: [L.SELU()]),
    "GELU": (VEC, lambda: [L.GELU(approximate="tanh")]),
    "LeakyReLU": (VEC, lambda: [L.LeakyReLU(0.2)]),
    "CReLU": (VEC, lambda: [L.CReLU()]),
    "ReLU": (VEC, lambda: [L.ReLU()]),
    "ReLU6": (VEC, lambda: [L.ReLU6()]),
    "SiLU": (VEC, lambda: [L.Swish()]),
    "Sigmoid": (VEC, lambda: [L.Sigmoid()]),
    "Tanh": (VEC, lambda: [L.Tanh()]),
    "Softmax": (VEC, lambda: [L.Softmax()]),
    "LogSoftmax": (VEC, lambda: [L.LogSoftmax()]),
    "Softplus": (VEC, lambda: [L.Softplus()]),
    "Softsign": (VEC, lambda: [L.Softsign()]),
    "Linear": (VEC, lambda: [L.Linear()]),
    "Residual": (IMG, lambda: [L.Residual(gpunn.Sequential([L.Conv2D(4, 3, padding=1), L.BatchNorm(), L.ReLU()])),
                               L.basic_block(6, strides=2), L.basic_block(6)]),
    "WeightNorm": (IMG, lambda: [L.WeightNorm(L.Conv2D(3, 3)), L.Flatten(), L.WeightNorm(L.Dense(4))]),
    "Chain": (VEC, lambda: [L.Chain([L.Dense(4, activation="sigmoid"), L.ReLU()], name="inner")]),
    "Sequential": (VEC, lambda: [gpunn.Sequential([L.Dense(4, activation="sigmoid"), L.ReLU()], name="inner")]),
}
_ABSTRACT = {"Layer", "Activation"}


def _merged(merge):
    """A functional model around a merge layer: two branches of one input, merged, then a head."""
    def factory():
        x = gpunn.Input(VEC)
        a, b = L.Dense(4, activation="tanh")(x), L.Dense(4)(x)
        return gpunn.Model(x, L.Dense(3)(merge()([a, b])))
    return factory


# the layers that take several inputs, so live in graphs: round-tripped in functional models
GRAPH_FACTORIES = {
    "Add": _merged(L.Add), "Subtract": _merged(L.Subtract), "Multiply": _merged(L.Multiply),
    "Average": _merged(L.Average), "Maximum": _merged(L.Maximum),
    "Concatenate": _merged(lambda: L.Concatenate(axis=-1, name="joined")),
}


def layer_classes() -> set[str]:
    return {n for n in L.__all__ if isinstance(getattr(L, n), type) and issubclass(getattr(L, n), L.Layer)
            and n not in _ABSTRACT and getattr(L, n).__name__ == n}


def test_every_layer_type_has_a_round_trip_case():
    missing = layer_classes() - set(FACTORIES) - set(GRAPH_FACTORIES)
    assert not missing, f"add save/load round-trip cases for {sorted(missing)} to FACTORIES"


@pytest.mark.parametrize("kind", sorted(GRAPH_FACTORIES))
def test_round_trip_every_merge_layer(kind, tmp_path):
    gpunn.manual_seed(0)
    model = GRAPH_FACTORIES[kind]()
    x = np.random.default_rng(0).normal(size=(5, *VEC)).astype(np.float32)
    before = model.predict(x)
    model.save(tmp_path / "m.safetensors")
    loaded = gpunn.load_model(tmp_path / "m.safetensors")
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    assert [a.name for a in loaded.layers] == [b.name for b in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), before)
    model.save_weights(tmp_path / "w.safetensors")
    gpunn.manual_seed(7)
    fresh = GRAPH_FACTORIES[kind]()
    fresh.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(fresh.predict(x), before)


def make(kind: str, seed: int = 0) -> tuple[gpunn.Sequential, np.ndarray]:
    shape, factory = FACTORIES[kind]
    gpunn.manual_seed(seed)
    model = gpunn.Sequential(factory())
    x = np.random.default_rng(seed).normal(size=(5, *shape)).astype(np.float32)
    model.forward(x, training=True)  # builds, and moves BatchNorm running statistics off their defaults
    rng = np.random.default_rng(seed + 1)
    for p in model.parameters():  # weights that no initializer would produce
        p.data[...] = rng.normal(size=p.shape).astype(p.dtype) * 0.5
    return model, x


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_round_trip_every_layer_type(kind, tmp_path):
    model, x = make(kind)
    if kind in ("Dropout", "Dense"):
        model.layers[0].trainable = False  # trainable flags survive too
    before = model.predict(x)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = gpunn.load_model(path)
    assert type(loaded) is gpunn.Sequential and len(loaded) == len(model)
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    assert [a.trainable for a in loaded.layers] == [b.trainable for b in model.layers]
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_array_equal(loaded.predict(x), before)
    # weights-only files load into a freshly built model of the same architecture
    model.save_weights(tmp_path / "w.safetensors")
    fresh, _ = make(kind, seed=7)
    fresh.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(fresh.predict(x), before)


def test_regularizer_and_constraint_settings_survive(tmp_path):
    model, _ = make("Dense")
    model.save(tmp_path / "m.safetensors")
    loaded = gpunn.load_model(tmp_path / "m.safetensors")
    dense = loaded.layers[0]
    assert dense.kernel_regularizer.l2 == pytest.approx(0.02) and dense.kernel_regularizer.l1 == 0
    assert isinstance(dense.kernel_constraint, MaxNorm) and dense.kernel_constraint.max_value == 3.0
    assert isinstance(dense.children["activation"], L.Tanh)


def test_round_trip_on_backend(backend, tmp_path):
    gpunn.manual_seed(0)
    model = gpunn.Sequential([L.Conv2D(3, 3, activation="relu", input_shape=IMG), L.BatchNorm(), L.Flatten(), L.Dense(2)])
    x = np.random.default_rng(0).normal(size=(8, *IMG)).astype(np.float32)
    y = np.arange(8) % 2
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    model.save(tmp_path / "m.safetensors")
    loaded = gpunn.load_model(tmp_path / "m.safetensors")
    assert all(backend.is_native(p.data) for p in loaded.parameters())
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    assert loaded.optimizer.step_count == model.optimizer.step_count == 4


# -- resuming ---------------------------------------------------------------------------------
def resumable_model() -> gpunn.Sequential:
    model = gpunn.Sequential([L.Dense(12, activation="relu", input_shape=VEC), L.BatchNorm(), L.Dropout(0.25), L.Dense(3)])
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"], lr=0.01, weight_decay=1e-4)
    return model


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_is_bit_identical(tmp_path, optimizer):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=40)

    def fresh():
        gpunn.manual_seed(11)
        model = resumable_model()
        if optimizer == "sgd":
            model.compile(loss="softmax_cross_entropy", optimizer="sgd", lr=0.05, momentum=0.9)
        return model

    straight = fresh()
    h_straight = straight.fit(x, y, epochs=4, batch_size=8, verbose=0)

    first = fresh()
    first.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[gpunn.callbacks.ModelCheckpoint(
        tmp_path / "ck.safetensors", monitor="loss")])
    gpunn.manual_seed(999)  # disturb every generator: the checkpoint must bring back what matters
    resumed = gpunn.load_model(tmp_path / "ck.safetensors")
    assert resumed.epoch == 2
    h_resumed = resumed.fit(x, y, epochs=4, initial_epoch=resumed.epoch, batch_size=8, verbose=0)
    a, b = straight.state_dict(), resumed.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert h_resumed.history["loss"] == h_straight.history["loss"][2:]
    assert resumed.optimizer.step_count == straight.optimizer.step_count


# -- failures leave the model untouched -------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    model, x = make("BatchNorm")
    path = tmp_path / "good.safetensors"
    model.save(path)
    return model, x, path


def assert_unchanged(model, state):
    after = model.state_dict()
    for k in state:
        np.testing.assert_array_equal(after[k], state[k], err_msg=k)


def corrupt(path, out, fn):
    blob = bytearray(Path(path).read_bytes())
    out.write_bytes(bytes(fn(blob)))
    return out


def flip(pos):
    def f(blob):
        blob[pos] ^= 0xFF
        return blob
    return f


@pytest.mark.parametrize("case, damage, match", [
    ("truncated data", lambda b: b[:-7], "truncated"),
    ("truncated header", lambda b: b[:40], "truncated"),
    ("shorter than 8 bytes", lambda b: b[:5], "8-byte"),
    ("empty", lambda b: b"", "8-byte"),
    ("header bytes flipped", flip(20), "corrupt|not valid JSON"),
    ("data byte flipped", flip(-3), "checksum"),
    ("garbage appended", lambda b: b + b"xx", "unexpected bytes"),
    ("huge header length", lambda b: (2**62).to_bytes(8, "little") + b[8:], "implausible"),
    ("pickle file", lambda b: pickle.dumps({"weights": [1, 2]}), "not a safetensors|implausible|truncated"),
])
def test_damaged_files_give_clear_errors(saved, tmp_path, case, damage, match):
    model, _, path = saved
    state = model.state_dict()
    bad = corrupt(path, tmp_path / "bad.safetensors", damage)
    with pytest.raises(CheckpointError, match=match):
        model.load_weights(bad)
    with pytest.raises(CheckpointError, match=match):
        gpunn.load_model(bad)
    assert_unchanged(model, state)


def test_wrong_architecture_is_named_and_model_unchanged(tmp_path):
    model, _ = make("Dense")
    other = gpunn.Sequential([L.Dense(7, input_shape=VEC)])
    other.build(VEC)
    other.save_weights(tmp_path / "other.safetensors")
    state = model.state_dict()
    with pytest.raises(CheckpointError, match=r"'0.weight' .* shape \(6, 7\) in the file, \(6, 5\) in the model"):
        model.load_weights(tmp_path / "other.safetensors")
    assert_unchanged(model, state)

    conv, _ = make("Conv2D")
    conv.save_weights(tmp_path / "conv.safetensors")
    with pytest.raises(CheckpointError, match="missing from the file|not in the model"):
        model.load_weights(tmp_path / "conv.safetensors")
    assert_unchanged(model, state)

    # same keys and shapes, different layer class: the owning layer is compared too
    bn = gpunn.Sequential([L.BatchNorm(track_running_stats=False, input_shape=VEC)])
    bn.build(VEC)
    bn.save_weights(tmp_path / "bn.safetensors")
    ln = gpunn.Sequential([L.LayerNorm(input_shape=VEC)])
    ln.build(VEC)
    assert set(bn.state_dict()) == set(ln.state_dict())
    ln_state = ln.state_dict()
    with pytest.raises(CheckpointError, match=r"BatchNorm\) in the file but to .*LayerNorm"):
        ln.load_weights(tmp_path / "bn.safetensors")
    assert_unchanged(ln, ln_state)


def test_wrong_dtype_is_named(tmp_path):
    model, _ = make("Dense")
    wide = gpunn.Sequential([L.Dense(5, input_shape=VEC)])
    wide._dtype = np.dtype(np.float64)
    wide.build(VEC)
    wide.save_weights(tmp_path / "f64.safetensors")
    state = model.state_dict()
    with pytest.raises(CheckpointError, match="dtype float64 in the file, float32"):
        model.load_weights(tmp_path / "f64.safetensors")
    assert_unchanged(model, state)


def test_foreign_and_misused_files(tmp_path, saved):
    model, _, path = saved
    write_safetensors(tmp_path / "foreign.safetensors", {"w": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match="no 'gpunn.sha256' checksum.*verify=False"):
        model.load_weights(tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="not a gpunn checkpoint"):
        gpunn.load_model(tmp_path / "foreign.safetensors", verify=False)
    with pytest.raises(CheckpointError, match=r"not in the model: \['w'\]"):
        model.load_weights(tmp_path / "foreign.safetensors", verify=False)
    model.save_weights(tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="weights only"):
        gpunn.load_model(tmp_path / "w.safetensors")
    with pytest.raises(FileNotFoundError, match="path"):
        gpunn.load_model(tmp_path / "nope.safetensors")
    with pytest.raises(RuntimeError, match="not built"):
        gpunn.Sequential([L.Dense(2)]).save(tmp_path / "x.safetensors")


def test_nan_weights_are_rejected(tmp_path):
    model, _ = make("Dense")
    model.layers[0].params["bias"].data[0] = np.nan
    model.save_weights(tmp_path / "nan.safetensors")
    fresh, _ = make("Dense", seed=3)
    state = fresh.state_dict()
    with pytest.raises(CheckpointError, match="NaN"):
        fresh.load_weights(tmp_path / "nan.safetensors")
    assert_unchanged(fresh, state)


# -- no pickle, no code -----------------------------------------------------------------------
def test_loading_never_calls_pickle(saved, monkeypatch, tmp_path):
    model, x, path = saved
    model.compile(loss="softmax_cross_entropy", optimizer="adam")

    def boom(*args, **kwargs):
        raise AssertionError("pickle was used while loading")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, boom)
    import _pickle
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(_pickle, name, boom)
    monkeypatch.setattr(np, "load", boom)
    loaded = gpunn.load_model(path)
    model.load_weights(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_pickle_payload_is_not_executed(tmp_path, saved):
    model, _, _ = saved
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError):
        gpunn.load_model(bad)
    with pytest.raises(CheckpointError):
        model.load_weights(bad)
    assert not marker.exists()


def test_configs_only_instantiate_gpunn_classes(tmp_path, saved):
    import json
    model, _, path = saved
    tensors, meta = read_safetensors(path)
    arch = json.loads(meta["gpunn.architecture"])
    arch["config"]["layers"][0]["__layer__"]["module"] = "os"
    arch["config"]["layers"][0]["__layer__"]["class"] = "system"
    meta["gpunn.architecture"] = json.dumps(arch)
    write_safetensors(tmp_path / "evil.safetensors", tensors, meta, "gpunn.sha256")  # re-signed, as an attacker can
    with pytest.raises(CheckpointError, match="'system' is not a registered gpunn class"):
        gpunn.load_model(tmp_path / "evil.safetensors")


def test_custom_layers_need_custom_objects(tmp_path):
    class Scale(L.Activation):
        def __init__(self, factor: float = 2.0, name=None):
            super().__init__(name=name)
            self.factor = factor

        def _forward(self, x):
            return x * self.factor, None

        def _backward(self, dy, saved):
            return dy * self.factor

    model = gpunn.Sequential([L.Dense(3, input_shape=VEC), Scale(3.0)])
    model.build(VEC)
    model.save(tmp_path / "c.safetensors")
    with pytest.raises(CheckpointError, match="custom_objects"):
        gpunn.load_model(tmp_path / "c.safetensors")
    loaded = gpunn.load_model(tmp_path / "c.safetensors", custom_objects={"Scale": Scale})
    assert loaded.layers[1].factor == 3.0


# -- atomic writes ----------------------------------------------------------------------------
def test_a_crash_mid_save_keeps_the_previous_checkpoint(saved, monkeypatch, tmp_path):
    model, x, path = saved
    before = Path(path).read_bytes()
    for p in model.parameters():
        p.data[...] = 0
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk on fire")))
    with pytest.raises(OSError, match="disk on fire"):
        model.save(path)
    monkeypatch.undo()
    assert Path(path).read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


# -- the format itself ------------------------------------------------------------------------
def test_safetensors_round_trip_dtypes(tmp_path):
    arrays = {"f64": np.arange(6, dtype=np.float64).reshape(2, 3), "f32": np.float32([1.5, -2]),
              "f16": np.float16([0.5]), "i64": np.int64([-(2**40)]), "i8": np.int8([-3, 4]),
              "u8": np.uint8([255]), "b": np.array([True, False]), "scalar": np.float32(3.0),
              "empty": np.zeros((0, 4), np.float32)}
    write_safetensors(tmp_path / "t.safetensors", arrays, {"k": "v"})
    back, meta = read_safetensors(tmp_path / "t.safetensors")
    assert meta == {"k": "v"}
    for k, v in arrays.items():
        assert back[k].dtype == np.asarray(v).dtype and back[k].shape == np.shape(v)
        np.testing.assert_array_equal(back[k], v)
    with pytest.raises(TypeError, match="complex128"):
        write_safetensors(tmp_path / "c.safetensors", {"c": np.zeros(2, np.complex128)})
    with pytest.raises(TypeError, match="metadata"):
        write_safetensors(tmp_path / "c.safetensors", {}, {"k": 1})
    assert not (tmp_path / "c.safetensors").exists()
    # tensor b moved onto a's bytes, the header keeping its length: the reader refuses the overlap
    write_safetensors(tmp_path / "ab.safetensors", {"a": np.zeros(2, np.float32), "b": np.zeros(2, np.float32)})
    blob = (tmp_path / "ab.safetensors").read_bytes()
    overlapping = blob.replace(b'"data_offsets":[8,16]', b'"data_offsets":[0,8] ')
    assert overlapping != blob and len(overlapping) == len(blob)
    (tmp_path / "ab.safetensors").write_bytes(overlapping)
    with pytest.raises(SafetensorsError, match=r"ab\.safetensors: .*overlap or gap"):
        read_safetensors(tmp_path / "ab.safetensors")


def test_interoperates_with_the_safetensors_package(tmp_path):
    import safetensors.numpy as stnp  # a core dependency: no skip when it is missing
    ours = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.int64([1, 2, 3])}
    write_safetensors(tmp_path / "ours.safetensors", ours, {"x": "y"})
    theirs = stnp.load_file(str(tmp_path / "ours.safetensors"))
    for k in ours:
        np.testing.assert_array_equal(theirs[k], ours[k])
    stnp.save_file({"w": np.ones((2, 2), np.float64)}, str(tmp_path / "theirs.safetensors"), metadata={"m": "n"})
    back, meta = read_safetensors(tmp_path / "theirs.safetensors")
    np.testing.assert_array_equal(back["w"], np.ones((2, 2)))
    assert meta == {"m": "n"}
    # and a full gpunn checkpoint is a valid safetensors file
    model, _ = make("Conv2D")
    model.save(tmp_path / "m.safetensors")
    assert set(stnp.load_file(str(tmp_path / "m.safetensors"))) == {f"model/{k}" for k in model.state_dict()}


def test_weights_of_another_graph_are_refused(tmp_path):
    GRAPH_FACTORIES["Add"]().save_weights(tmp_path / "w.safetensors")
    other = GRAPH_FACTORIES["Multiply"]()
    before = other.state_dict()
    with pytest.raises(CheckpointError, match="another architecture: layer model.Add is Add in the file but Multiply"):
        other.load_weights(tmp_path / "w.safetensors")
    assert all(np.array_equal(v, other.state_dict()[k]) for k, v in before.items())  # unchanged


def test_a_config_without_data_format_loads_channels_first_inside_a_channels_last_block():
    """Files written before data_format existed meant NCHW; the caller's default must not change that."""
    model = gpunn.Sequential([L.Conv2D(2, 3, input_shape=(1, 6, 6)), L.MaxPool2D(2), L.Flatten(), L.Dense(2)])
    config = model.get_config()

    def strip(node):
        if isinstance(node, dict):
            node.pop("data_format", None)
            for v in node.values():
                strip(v)
        elif isinstance(node, list):
            for v in node:
                strip(v)
    strip(config)
    with L.use_image_data_format("channels_last"):
        rebuilt = gpunn.io.model_from_config(config)
    assert [getattr(layer, "data_format", "channels_first") for layer in rebuilt.layers[:2]] == \
        ["channels_first", "channels_first"]
    assert L.image_data_format() == "channels_first"


def test_gradient_clipping_survives_save_and_load(tmp_path):
    """clipnorm / clipvalue reach Optimizer.__init__ through **kwargs; a checkpoint (and every
    rebuild of the optimizer) must keep them, or resumed training silently stops clipping."""
    gpunn.manual_seed(0)
    model = gpunn.Sequential([L.Dense(2, input_shape=(3,))])
    model.compile(loss="mse", optimizer=gpunn.optim.Adam(model, lr=0.01, clipnorm=0.5, clipvalue=0.25))
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    model.fit(x, np.zeros((8, 2), np.float32), epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.safetensors")
    loaded = gpunn.load_model(tmp_path / "m.safetensors")
    assert (loaded.optimizer.clipnorm, loaded.optimizer.clipvalue) == (0.5, 0.25)
    model.layers[0].trainable = False
    model.layers[0].trainable = True
    assert (model._rebuild_optimizer(model.optimizer).clipnorm, model.optimizer.clipvalue) == (0.5, 0.25)
