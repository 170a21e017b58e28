"""Checkpoints and configs as a hostile user writes them: each test replays an attack that worked
before the registry, the budgeted rebuild and the header checksum, and checks that it now ends
in a gpunn error with no side effect (no command run, no file touched, no exit, bounded memory)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import gpunn
from gpunn import layers as L
from gpunn.io import CheckpointError, ConfigError, model_from_config, read_safetensors, register_serializable
from gpunn.io import safetensors as st

CHECKSUM = "gpunn.sha256"


@pytest.fixture
def trained(tmp_path):
    """A small compiled model trained two steps (so the file holds Adam's moments), saved."""
    gpunn.manual_seed(0)
    model = gpunn.Sequential([L.Dense(4, activation="relu", input_shape=(3,)), L.Dropout(0.2), L.Dense(2)])
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    model.fit(x, np.arange(8) % 2, epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "good.safetensors"
    model.save(path)
    return model, x, path


def rewrite(src, dst, edit=None, edit_tensors=None, resign=True) -> None:
    """Copy a checkpoint with its metadata edited by `edit(meta_dict_of_json)`; re-signed by default,
    since the checksum guards integrity, not authorship: an attacker can always recompute it."""
    tensors, raw = read_safetensors(src)
    meta = {k: json.loads(v) if k.startswith("gpunn.") and k not in ("gpunn.format", "gpunn.version", CHECKSUM)
            else v for k, v in raw.items()}
    if edit:
        edit(meta)
    if edit_tensors:
        edit_tensors(tensors)
    raw = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    if resign:
        st.write_safetensors(dst, tensors, raw, CHECKSUM)
    else:
        st.write_safetensors(dst, tensors, raw)  # no checksum_key: the stale checksum entry is written as it was


def first_layer(meta) -> dict:
    return meta["gpunn.architecture"]["config"]["layers"][0]["__layer__"]


def listing(folder) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


# -- fault 1: classes come from the registry only -------------------------------------------------
CHAINS = [
    pytest.param("gpunn.emu.build", "subprocess.Popen", "args", id="popen"),
    pytest.param("gpunn.io.config", "np.memmap", "filename", id="memmap"),
    pytest.param("gpunn.emu.rawkernel", "ctypes.CDLL", "name", id="cdll"),
]


@pytest.mark.parametrize("compile_", [True, False])
@pytest.mark.parametrize("module,cls,arg", CHAINS)
def test_a_class_chain_in_the_architecture_runs_nothing(tmp_path, trained, module, cls, arg, compile_):
    _, _, path = trained
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    value = ["touch", str(tmp_path / "pwned")] if arg == "args" else str(victim)
    extra = {"mode": "w+", "shape": [1]} if cls == "np.memmap" else {}

    def edit(meta):
        first_layer(meta).update({"module": module, "class": cls, "config": {arg: value, **extra}})

    rewrite(path, tmp_path / "evil.safetensors", edit)
    before = listing(tmp_path)
    with pytest.raises(CheckpointError, match=f"{cls!r} is not a registered gpunn class"):
        gpunn.load_model(tmp_path / "evil.safetensors", compile=compile_)
    time.sleep(0.05)  # a started process would have had time to touch its file
    assert listing(tmp_path) == before
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("where", ["loss", "optimizer", "regularizer"])
def test_class_chains_in_the_loss_optimizer_and_nested_objects_are_refused(tmp_path, trained, where):
    _, _, path = trained
    evil = {"module": "gpunn.emu.build", "class": "subprocess.Popen", "config": {"args": ["touch", "pwned"]}}

    def edit(meta):
        if where == "regularizer":
            first_layer(meta)["config"]["kernel_regularizer"] = {"__object__": evil}
        else:
            meta["gpunn.compile"][where] = evil

    rewrite(path, tmp_path / "evil.safetensors", edit)
    with pytest.raises(CheckpointError, match="'subprocess.Popen' is not a registered gpunn class"):
        gpunn.load_model(tmp_path / "evil.safetensors")
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")


@pytest.mark.parametrize("position,name,kind", [
    ("layer", "Adam", "optimizer"), ("layer", "L1L2", "regularizer"), ("loss", "Dense", "layer"),
    ("optimizer", "MSE", "loss"), ("regularizer", "Sequential", "layer")])
def test_the_kind_is_checked_before_anything_is_constructed(tmp_path, trained, position, name, kind):
    _, _, path = trained

    def edit(meta):
        cfg = {"class": name, "config": {}}
        if position == "layer":
            first_layer(meta).update(cfg)
        elif position == "regularizer":
            first_layer(meta)["config"]["kernel_regularizer"] = {"__object__": cfg}
        else:
            meta["gpunn.compile"][position] = cfg

    rewrite(path, tmp_path / "evil.safetensors", edit)
    with pytest.raises(CheckpointError, match=f"{name!r} is of kind '{kind}'"):
        gpunn.load_model(tmp_path / "evil.safetensors")


def test_config_keys_are_checked_against_the_constructor_before_it_runs(tmp_path, trained):
    constructed = []

    class Spy(L.Activation):
        def __init__(self, factor: float = 1.0, name=None):
            constructed.append(factor)
            super().__init__(name=name)
            self.factor = factor

        def _forward(self, x):
            return x, None

        def _backward(self, dy, saved):
            return dy

    _, _, path = trained
    rewrite(path, tmp_path / "a.safetensors", lambda m: first_layer(m).update(
        {"class": "Spy", "config": {"factor": 2.0, "command": "rm -rf /"}}))
    with pytest.raises(CheckpointError, match=r"unknown arguments \['command'\]; Spy takes"):
        gpunn.load_model(tmp_path / "a.safetensors", custom_objects={"Spy": Spy})
    rewrite(path, tmp_path / "b.safetensors", lambda m: first_layer(m).update({"class": "Dense", "config": {}}))
    with pytest.raises(CheckpointError, match="do not fit Dense.*units"):
        gpunn.load_model(tmp_path / "b.safetensors")
    assert constructed == []


def test_custom_objects_must_be_classes_of_the_right_kind(tmp_path, trained):
    _, _, path = trained
    rewrite(path, tmp_path / "a.safetensors", lambda m: first_layer(m).update({"class": "Evil", "config": {}}))
    with pytest.raises(CheckpointError, match=r"custom_objects\['Evil'\] must be a class"):
        gpunn.load_model(tmp_path / "a.safetensors", custom_objects={"Evil": os.system})
    with pytest.raises(CheckpointError, match="'Evil' is of kind 'none"):
        gpunn.load_model(tmp_path / "a.safetensors", custom_objects={"Evil": subprocess.Popen})
    with pytest.raises(TypeError, match="custom_objects"):
        gpunn.load_model(path, custom_objects=["Dense"])


def test_get_config_and_model_from_config_rebuild_the_model(trained):
    model, x, _ = trained
    config = model.get_config()
    assert json.loads(json.dumps(config)) == config  # plain JSON
    assert config["class"] == "Sequential" and config["input_shape"] == [3] and config["dtype"] == "float32"
    clone = model_from_config(config)
    assert clone.built and [type(a) for a in clone.layers] == [type(b) for b in model.layers]
    clone.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(clone.predict(x), model.predict(x))


@pytest.mark.parametrize("config,message", [
    ("not a dict", "must be an object"),
    ({"class": "subprocess.Popen", "config": {"args": ["true"]}}, "not a registered gpunn class"),
    ({"class": "Sequential", "config": {"layers": []}, "input_shape": [3], "dtype": "object"}, "'dtype' must be"),
    ({"class": "Sequential", "config": {"layers": []}, "input_shape": "3"}, "'input_shape' must be"),
    ({"class": "Sequential", "config": {}, "surprise": 1}, r"unknown keys \['surprise'\]"),
    ({"class": "Sequential", "config": {"layers": [{"__layer__": {"class": "Dense", "config": {"units": 10 ** 9}}}]},
      "input_shape": [1000]}, "more than the"),
])
def test_model_from_config_rejects_bad_configs_with_a_value_error(config, message):
    with pytest.raises(ConfigError, match=message) as info:
        model_from_config(config)
    assert isinstance(info.value, ValueError)


def test_registered_user_classes_round_trip(tmp_path):
    @register_serializable(package="tests")
    class Doubler(L.Activation):
        def __init__(self, name=None):
            super().__init__(name=name)

        def _forward(self, x):
            return 2 * x, None

        def _backward(self, dy, saved):
            return 2 * dy

    model = gpunn.Sequential([L.Dense(2, input_shape=(3,)), Doubler()])
    model.build((3,))
    model.save(tmp_path / "m.safetensors")
    assert model.get_config()["config"]["layers"][1]["__layer__"]["class"] == "tests>Doubler"
    loaded = gpunn.load_model(tmp_path / "m.safetensors")  # no custom_objects needed once registered
    assert isinstance(loaded.layers[1], Doubler)
    with pytest.raises(TypeError, match="register_serializable: argument 'cls'"):
        register_serializable(dict)
    with pytest.raises(ValueError, match="already registered"):
        register_serializable(type("Doubler", (L.Activation,), {}), package="tests")


# -- fault 2: no module is imported because a file names it ---------------------------------------
def test_a_checkpoint_naming_gpunn_main_does_not_exit_the_process(tmp_path, trained):
    _, _, path = trained
    rewrite(path, tmp_path / "evil.safetensors", lambda m: first_layer(m).update(
        {"module": "gpunn.__main__", "class": "main", "config": {}}))
    sys.modules.pop("gpunn.__main__", None)
    with pytest.raises(CheckpointError, match="'main' is not a registered gpunn class"):
        gpunn.load_model(tmp_path / "evil.safetensors")
    assert "gpunn.__main__" not in sys.modules


def test_importing_gpunn_main_does_not_run_the_cli():
    out = subprocess.run([sys.executable, "-c", "import gpunn.__main__; print('still here')", "info"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "still here", out.stderr


# -- fault 3: sizes from the header are checked before anything is allocated -------------------------
def peak_while_refused(load, match: str) -> int:
    """The traced peak of memory (bytes) while `load()` raises the CheckpointError matching `match`."""
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=match):
            load()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("edit", [
    pytest.param(lambda m: first_layer(m)["config"].update(units=20_000_000), id="units-2e7"),
    pytest.param(lambda m: first_layer(m)["config"].update(units=10 ** 9), id="units-1e9"),
    pytest.param(lambda m: m["gpunn.architecture"].update(input_shape=[10 ** 9]), id="input-1e9"),
    pytest.param(lambda m: m["gpunn.architecture"].update(input_shape=[10 ** 6, 10 ** 6]), id="input-1e12"),
])
def test_huge_declared_sizes_fail_in_bounded_memory(tmp_path, trained, edit):
    _, _, path = trained
    rewrite(path, tmp_path / "big.safetensors", edit)
    assert (tmp_path / "big.safetensors").stat().st_size < 10_000
    peak = peak_while_refused(lambda: gpunn.load_model(tmp_path / "big.safetensors"),
                              "more than|must be a non-empty list|holds more than")
    assert peak < 20 * 2 ** 20, f"peak {peak / 2 ** 20:.0f} MiB while refusing a 10 KB file"


def test_a_huge_layer_into_load_weights_fails_in_bounded_memory(tmp_path, trained):
    _, _, path = trained
    rewrite(path, tmp_path / "big.safetensors", lambda m: first_layer(m)["config"].update(units=20_000_000))
    victim = gpunn.Sequential([L.Dense(20_000_000, activation="relu"), L.Dropout(0.2), L.Dense(2)])
    peak = peak_while_refused(lambda: victim.load_weights(tmp_path / "big.safetensors"), "more than")
    assert peak < 20 * 2 ** 20 and not victim.built


# -- fault 4: the checksum covers the metadata --------------------------------------------------------
@pytest.mark.parametrize("edit", [
    pytest.param(lambda m: m["gpunn.compile"]["optimizer"]["config"].update(beta2=0.998), id="adam-beta2"),
    pytest.param(lambda m: m["gpunn.training"].update(shuffle_seed=m["gpunn.training"]["shuffle_seed"] + 1),
                 id="shuffle-seed"),
    pytest.param(lambda m: first_layer(m).update(trainable=False), id="trainable"),
    pytest.param(lambda m: m["gpunn.optimizer"].update(step=7), id="step"),
])
def test_a_changed_metadata_entry_fails_the_checksum(tmp_path, trained, edit):
    _, _, path = trained
    rewrite(path, tmp_path / "flipped.safetensors", edit, resign=False)
    with pytest.raises(CheckpointError, match="does not match its SHA-256 checksum"):
        gpunn.load_model(tmp_path / "flipped.safetensors")


def test_a_missing_checksum_is_an_error_unless_verify_is_off(tmp_path, trained):
    model, x, path = trained
    tensors, meta = read_safetensors(path)
    del meta[CHECKSUM]
    st.write_safetensors(tmp_path / "bare.safetensors", tensors, meta)
    for load in (gpunn.load_model, model.load_weights):
        with pytest.raises(CheckpointError, match="no 'gpunn.sha256' checksum.*verify=False"):
            load(tmp_path / "bare.safetensors")
    np.testing.assert_array_equal(gpunn.load_model(tmp_path / "bare.safetensors", verify=False).predict(x),
                                  model.predict(x))


def test_a_file_of_another_safetensors_tool_loads_with_verify_false(tmp_path, trained):
    import safetensors.numpy as safetensors_numpy  # a core dependency: no skip when it is missing
    model, x, _ = trained
    safetensors_numpy.save_file(model.state_dict(), str(tmp_path / "hf.safetensors"))
    fresh = gpunn.Sequential([L.Dense(4, activation="relu"), L.Dropout(0.2), L.Dense(2)])
    fresh.build((3,))
    with pytest.raises(CheckpointError, match="verify=False"):
        fresh.load_weights(tmp_path / "hf.safetensors")
    fresh.load_weights(tmp_path / "hf.safetensors", verify=False)
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_a_format_1_checkpoint_needs_verify_false(tmp_path, trained):
    model, x, path = trained

    def to_v1(meta):
        arch = meta["gpunn.architecture"]
        meta["gpunn.architecture"] = {"architecture": {k: arch[k] for k in ("class", "config", "trainable")},
                                      "input_shape": arch["input_shape"], "dtype": arch["dtype"]}
        meta["gpunn.version"] = "1"

    rewrite(path, tmp_path / "v1.safetensors", to_v1)
    with pytest.raises(CheckpointError, match="version '1'.*verify=False"):
        gpunn.load_model(tmp_path / "v1.safetensors")
    np.testing.assert_array_equal(gpunn.load_model(tmp_path / "v1.safetensors", verify=False).predict(x),
                                  model.predict(x))


# -- fault 5: optimizer state is validated like the weights ---------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_optimizer_moments_are_refused(tmp_path, trained, bad):
    _, _, path = trained

    def poison(tensors):
        key = next(k for k in sorted(tensors) if k.startswith("optimizer/"))
        tensors[key] = tensors[key].copy()
        tensors[key][0] = bad

    rewrite(path, tmp_path / "nan.safetensors", edit_tensors=poison)
    with pytest.raises(CheckpointError, match="optimizer state .* not finite"):
        gpunn.load_model(tmp_path / "nan.safetensors")
    gpunn.load_model(tmp_path / "nan.safetensors", compile=False)  # the weights alone are fine


# -- the weaker findings: every malformed file is a CheckpointError ------------------------------------
def raw_file(path, header: bytes, data: bytes = b"") -> None:
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)


def test_shape_products_that_overflow_are_a_checkpoint_error(tmp_path, trained):
    model, _, _ = trained
    header = json.dumps({"w": {"dtype": "F32", "shape": [2 ** 40, 2 ** 40, 2 ** 40], "data_offsets": [0, 0]}})
    raw_file(tmp_path / "o.safetensors", header.encode())
    for load in (gpunn.load_model, model.load_weights):
        with pytest.raises(CheckpointError, match="do not hold shape"):
            load(tmp_path / "o.safetensors")


def test_deep_json_nesting_is_a_checkpoint_error(tmp_path, trained):
    model, _, path = trained
    raw_file(tmp_path / "deep.safetensors", b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        gpunn.load_model(tmp_path / "deep.safetensors")
    tensors, meta = read_safetensors(path)
    meta["gpunn.architecture"] = "[" * 200_000 + "]" * 200_000
    st.write_safetensors(tmp_path / "deepmeta.safetensors", tensors, meta, CHECKSUM)
    with pytest.raises(CheckpointError, match="corrupt 'gpunn.architecture'"):
        gpunn.load_model(tmp_path / "deepmeta.safetensors")
    nested: object = 1.0
    for _ in range(500):
        nested = [nested]
    rewrite(path, tmp_path / "deepcfg.safetensors", lambda m: first_layer(m)["config"].update(units=nested))
    with pytest.raises(CheckpointError, match="nested deeper than"):
        gpunn.load_model(tmp_path / "deepcfg.safetensors")


def test_huge_integers_are_a_checkpoint_error(tmp_path, trained):
    _, _, path = trained
    tensors, meta = read_safetensors(path)
    meta["gpunn.training"] = '{"epoch": ' + "9" * 10_000 + "}"
    st.write_safetensors(tmp_path / "int.safetensors", tensors, meta, CHECKSUM)
    with pytest.raises(CheckpointError, match="corrupt 'gpunn.training'"):
        gpunn.load_model(tmp_path / "int.safetensors")
    rewrite(path, tmp_path / "epoch.safetensors", lambda m: m["gpunn.training"].update(epoch=10 ** 40))
    with pytest.raises(CheckpointError, match="'epoch' must be in"):
        gpunn.load_model(tmp_path / "epoch.safetensors")


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["gpunn.architecture"].update(input_shape="abc"), "'input_shape' must be"),
    (lambda m: m["gpunn.architecture"].update(dtype=["float32"]), "'dtype' must be"),
    (lambda m: m.update({"gpunn.layers": ["x"]}), "'gpunn.layers' metadata: expected a JSON object"),
    (lambda m: m["gpunn.training"].update(epoch="3"), "'epoch' must be an int"),
    (lambda m: m["gpunn.training"].update(shuffle_seed=-1), "'shuffle_seed' must be in"),
    (lambda m: m["gpunn.training"].update(rng=[1, 2]), "'rng' must be an object"),
    (lambda m: m["gpunn.training"].update(rng={"bit_generator": "PCG64", "state": "junk"}), "random generator"),
    (lambda m: m["gpunn.training"]["rng"].update(philox=[1, 2 ** 64]), "'philox' must be"),
    (lambda m: m["gpunn.training"]["rng"].update(philox=[1]), "'philox' must be"),
    (lambda m: m["gpunn.compile"].update(metrics="accuracy"), "'metrics' must be a list"),
    (lambda m: m["gpunn.compile"].pop("loss"), r"missing keys \['loss'\]"),
    (lambda m: m["gpunn.optimizer"].update(step=True), "'step' must be an int"),
    (lambda m: m["gpunn.optimizer"].pop("hyperparams"), r"missing keys \['hyperparams'\]"),
    (lambda m: first_layer(m).update(trainable="no"), "'trainable' must be true or false"),
    (lambda m: first_layer(m)["config"].update(units={"__float__": "1e999"}), "malformed config marker"),
    (lambda m: first_layer(m)["config"].update(units={"a": 1, "b": 2}), "malformed config value"),
    (lambda m: first_layer(m).pop("class"), "expected an object with keys 'class' and 'config'"),
    (lambda m: m.pop("gpunn.architecture"), "lacks the 'gpunn.architecture' metadata"),
])
def test_wrong_json_types_and_missing_keys_are_a_checkpoint_error(tmp_path, trained, edit, message):
    _, _, path = trained
    rewrite(path, tmp_path / "bad.safetensors", edit)
    with pytest.raises(CheckpointError, match=message):
        gpunn.load_model(tmp_path / "bad.safetensors")


def test_load_weights_compares_the_stored_architecture(tmp_path):
    relu = gpunn.Sequential([L.Dense(4, activation="relu", input_shape=(3,)), L.Dense(2)])
    relu.build((3,))
    relu.save_weights(tmp_path / "relu.safetensors")
    tanh = gpunn.Sequential([L.Dense(4, activation="tanh", input_shape=(3,)), L.Dense(2)])
    tanh.build((3,))
    state = tanh.state_dict()
    with pytest.raises(CheckpointError, match=r"layer model.layers\[0\].activation is ReLU in the file but Tanh"):
        tanh.load_weights(tmp_path / "relu.safetensors")
    for k, v in tanh.state_dict().items():
        np.testing.assert_array_equal(v, state[k])


# -- saving: stale temporaries and file modes ---------------------------------------------------------
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_save_cleans_the_temporaries_of_killed_saves(tmp_path, trained):
    model, _, _ = trained
    target = tmp_path / "m.safetensors"
    host = socket.gethostname()
    dead = tmp_path / f".m.safetensors.{host}.{dead_pid()}.abc123.tmp"
    live = tmp_path / f".m.safetensors.{host}.{os.getppid()}.def456.tmp"  # a concurrent save: left alone
    other_host = tmp_path / f".m.safetensors.elsewhere.{dead_pid()}.ghi789.tmp"
    legacy = tmp_path / ".m.safetensors.x1y2z3.tmp"  # an older gpunn's name, an hour old
    recent_legacy = tmp_path / ".m.safetensors.q9r8s7.tmp"
    other_target = tmp_path / f".n.safetensors.{host}.{dead_pid()}.jkl.tmp"
    for p in (dead, live, other_host, legacy, recent_legacy, other_target):
        p.write_bytes(b"x" * 1000)
    old = time.time() - 7200
    os.utime(legacy, (old, old))
    model.save(target)
    left = {p.name for p in tmp_path.iterdir()}
    assert dead.name not in left and legacy.name not in left
    assert {live.name, other_host.name, recent_legacy.name, other_target.name, target.name} <= left


def test_an_overwritten_checkpoint_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path, trained):
    model, _, _ = trained
    existing = tmp_path / "shared.safetensors"
    model.save(existing)
    os.chmod(existing, 0o644)
    model.save(existing)
    assert existing.stat().st_mode & 0o777 == 0o644
    old = os.umask(0o027)
    try:
        model.save_weights(tmp_path / "new.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "new.safetensors").stat().st_mode & 0o777 == 0o640
