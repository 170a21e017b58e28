"""The safetensors codec: the `safetensors` package encodes, validates and decodes the files; gpunn
adds the checksum, the atomic write and errors that say in plain words what is wrong.

Checkpoints written by gpunn's earlier, hand-written codec (tests/fixtures/checkpoint_v2_*, made by
tests/fixtures/gen_checkpoint_v2.py before the move) must still load, verify and predict the same.
"""
from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy as stnp

import gpunn
from gpunn import layers as L
from gpunn.io import CheckpointError, SafetensorsError, read_safetensors, write_safetensors
from gpunn.io.atomic import atomic_write, clean_stale_temporaries

CHECKSUM = "gpunn.sha256"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OLD_MODEL = FIXTURES / "checkpoint_v2_model.safetensors"
OLD_WEIGHTS = FIXTURES / "checkpoint_v2_weights.safetensors"
EXPECTED = json.loads((FIXTURES / "checkpoint_v2_expected.json").read_text())


def header_of(path) -> dict:
    blob = Path(path).read_bytes()
    return json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])


def raw_file(path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)
    return path


# -- files of the old, hand-written codec -----------------------------------------------------------------
def test_the_fixtures_are_the_bytes_the_old_codec_wrote():
    for name, digest in EXPECTED["file_sha256"].items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, \
            f"{name} changed: it must stay as gpunn's own codec wrote it (see gen_checkpoint_v2.py)"


def test_an_old_checkpoint_loads_verified_with_the_same_predictions_weights_and_optimizer_state():
    model = gpunn.load_model(OLD_MODEL)  # verify=True: its checksum is checked, by the same function as new files'
    x = np.array(EXPECTED["x"], np.float32)
    np.testing.assert_array_equal(model.predict(x), np.array(EXPECTED["predictions"], np.float32))
    state = model.state_dict()
    assert set(state) == set(EXPECTED["weights"])
    for key, values in EXPECTED["weights"].items():
        assert str(state[key].dtype) == EXPECTED["dtypes"][key]
        np.testing.assert_array_equal(state[key], np.array(values, state[key].dtype), err_msg=key)
    assert model.epoch == EXPECTED["epoch"]
    assert model.optimizer.step_count == EXPECTED["optimizer_step_count"] == 1
    buffers = model.optimizer.state_dict()["state"]
    assert set(buffers) == set(EXPECTED["optimizer_buffers"])
    for key, values in EXPECTED["optimizer_buffers"].items():
        np.testing.assert_array_equal(np.asarray(buffers[key]), np.array(values, np.float32), err_msg=key)
    # and training resumes from it
    model.fit(x, np.zeros((5, 3), np.float32), epochs=2, initial_epoch=model.epoch, batch_size=5, verbose=0)
    assert model.optimizer.step_count == 2


def test_an_old_weights_file_loads_into_a_fresh_model():
    fresh = gpunn.Sequential([L.Dense(3, input_shape=(4,)), L.ReLU()])
    fresh.load_weights(OLD_WEIGHTS)  # verified, and builds the unbuilt model as the file describes
    x = np.array(EXPECTED["x"], np.float32)
    np.testing.assert_array_equal(fresh.predict(x), np.array(EXPECTED["predictions"], np.float32))
    with pytest.raises(CheckpointError, match="weights only"):
        gpunn.load_model(OLD_WEIGHTS)


def test_old_and_new_files_carry_the_same_checksum(tmp_path):
    tensors, meta = read_safetensors(OLD_MODEL, CHECKSUM)
    write_safetensors(tmp_path / "new.safetensors", tensors, meta, CHECKSUM)
    again, new_meta = read_safetensors(tmp_path / "new.safetensors", CHECKSUM)
    assert new_meta == meta  # every entry, the checksum included
    for k in tensors:
        np.testing.assert_array_equal(again[k], tensors[k])
    old_header, new_header = header_of(OLD_MODEL), header_of(tmp_path / "new.safetensors")
    # the same tensors at the same offsets (all float32: both writers order them by name), so the
    # same canonical header and data: one checksum definition for old and new files
    assert {k: v for k, v in new_header.items() if k != "__metadata__"} == \
           {k: v for k, v in old_header.items() if k != "__metadata__"}


@pytest.mark.parametrize("old, new", [
    pytest.param(b'\\"epoch\\": 1', b'\\"epoch\\": 7', id="metadata-digit"),
    pytest.param(None, None, id="data-byte"),
])
def test_a_tampered_old_checkpoint_fails_its_checksum(tmp_path, old, new):
    blob = OLD_MODEL.read_bytes()
    if old is None:
        tampered = blob[:-3] + bytes([blob[-3] ^ 0x01]) + blob[-2:]
    else:
        assert blob.count(old) == 1
        tampered = blob.replace(old, new)
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(tampered)
    stnp.load_file(str(bad))  # still a well-formed safetensors file: only the checksum can tell
    with pytest.raises(SafetensorsError, match="tampered.safetensors: corrupt or tampered file.*SHA-256"):
        read_safetensors(bad, CHECKSUM)
    with pytest.raises(CheckpointError, match="does not match its SHA-256 checksum"):
        gpunn.load_model(bad)
    gpunn.load_model(bad, verify=False)  # the caller's call, when they trust the file


# -- the files are plain safetensors ------------------------------------------------------------------
def test_new_checkpoints_are_plain_safetensors_files(tmp_path):
    model = gpunn.load_model(OLD_MODEL)
    path = tmp_path / "m.safetensors"
    model.save(path)
    _, ours = read_safetensors(path, CHECKSUM)
    with safetensors.safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == ours and ours["gpunn.format"] == "model" and CHECKSUM in ours
        keys = set(f.keys())
        theirs = {k: f.get_tensor(k) for k in keys}
    assert keys == {f"model/{k}" for k in model.state_dict()} | {"optimizer/exp_avg", "optimizer/exp_avg_sq"}
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(theirs[f"model/{k}"], v)


def test_the_checksum_depends_on_the_content_only_and_mixed_dtypes_verify(tmp_path):
    arrays = {"z": np.arange(3, dtype=np.int8), "a": np.float16([1, 2]), "m": np.float64([[1.5]]),
              "b": np.array([True]), "u": np.uint32([7, 8])}
    meta = {"k": "v", "gpunn.other": "w", "x": "y"}
    write_safetensors(tmp_path / "1.safetensors", arrays, meta, CHECKSUM)
    write_safetensors(tmp_path / "2.safetensors", arrays, dict(reversed(meta.items())), CHECKSUM)
    # the package may order the metadata differently from one write to the next; the checksum is of
    # the canonical header, so it is the same
    assert header_of(tmp_path / "1.safetensors") == header_of(tmp_path / "2.safetensors")
    meta_keys = set(meta)
    back, meta = read_safetensors(tmp_path / "1.safetensors", CHECKSUM)  # the package reorders by dtype
    assert set(meta) == {*meta_keys, CHECKSUM} and meta["k"] == "v"
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype
        np.testing.assert_array_equal(back[k], v)


def test_a_stale_checksum_in_the_metadata_is_replaced(tmp_path):
    write_safetensors(tmp_path / "s.safetensors", {"w": np.ones(2, np.float32)}, {CHECKSUM: "0" * 64}, CHECKSUM)
    _, meta = read_safetensors(tmp_path / "s.safetensors", CHECKSUM)
    assert meta[CHECKSUM] != "0" * 64


def test_strided_and_big_endian_arrays_are_written_as_their_values(tmp_path):
    arrays = {"t": np.arange(12, dtype=np.float32).reshape(3, 4).T, "be": np.arange(4, dtype=">f8"),
              "f": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)), "s": np.arange(10)[::3]}
    write_safetensors(tmp_path / "x.safetensors", arrays, None, CHECKSUM)
    back, _ = read_safetensors(tmp_path / "x.safetensors", CHECKSUM)
    for k, v in arrays.items():
        assert back[k].dtype.isnative and back[k].flags.writeable and back[k].flags.c_contiguous
        assert back[k].dtype == v.dtype.newbyteorder("=")
        np.testing.assert_array_equal(back[k], v)
    assert set(stnp.load_file(str(tmp_path / "x.safetensors"))) == set(arrays)


# -- hostile files: the package refuses them, we say what is wrong --------------------------------------------
ENTRY = b'{"dtype":"F32","shape":[2],"data_offsets":[%d,%d]}'


@pytest.mark.parametrize("header, data, match", [
    pytest.param(b'{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}', b"\0" * 4,
                 "tensor 'a' has dtype BF16, which gpunn does not read", id="bf16"),
    pytest.param(b'{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}', b"\0" * 8,
                 # safetensors 0.5 and later know C64, so gpunn refuses it; 0.4 refuses it itself
                 "tensor 'a' has dtype C64, which gpunn does not read|not a safetensors header", id="complex"),
    pytest.param(b'{"a":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4,
                 r"not valid JSON, or not a safetensors header \(safetensors: ", id="unknown-dtype"),
    pytest.param(b'{"__metadata__":{"k":1}}', b"", "not valid JSON, or not a safetensors header", id="metadata-int"),
    pytest.param(b'{"a":' + ENTRY % (0, 8) + b',"b":' + ENTRY % (16, 24) + b'}', b"\0" * 24,
                 r"tensor 'b' does not start where the previous one ends \(overlap or gap\)", id="gap"),
    pytest.param(b'{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', b"\0" * 8,
                 r"corrupt entry for tensor 'a': offsets 0..8 do not hold shape \(3,\) of F32", id="short-entry"),
    pytest.param(b'{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', b"\0" * 4,
                 "not valid JSON, or not a safetensors header", id="negative-shape"),
    pytest.param(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}\0\0', b"\0" * 4,
                 "not valid JSON, or not a safetensors header", id="nul-after-header"),
    pytest.param(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 9,
                 "5 unexpected bytes after the tensors", id="trailing"),
    pytest.param(b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', b"\0" * 9,
                 "truncated: the tensors need 16 data bytes but only 9 are present", id="short-data"),
])
def test_a_malformed_file_is_refused_naming_the_file_and_the_fault(tmp_path, header, data, match):
    path = raw_file(tmp_path / "bad.safetensors", header, data)
    for checksum_key in (None, CHECKSUM):
        with pytest.raises(SafetensorsError, match=match) as info:
            read_safetensors(path, checksum_key)
        assert str(info.value).startswith(f"{path}: ")
    with pytest.raises(CheckpointError, match=match):
        gpunn.load_model(path)


def test_a_non_ascii_checksum_is_a_mismatch_not_a_crash(tmp_path):
    write_safetensors(tmp_path / "s.safetensors", {"w": np.ones(2, np.float32)}, {CHECKSUM: "\u00e9" * 64})
    with pytest.raises(SafetensorsError, match="does not match its SHA-256 checksum"):
        read_safetensors(tmp_path / "s.safetensors", CHECKSUM)


def truncated(tmp_path) -> Path:
    write_safetensors(tmp_path / "t.safetensors", {"w": np.ones(4, np.float32)})
    blob = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(blob[:-3])
    return tmp_path / "t.safetensors"


@pytest.mark.parametrize("wording", [
    "Error while deserializing: MetadataIncompleteBuffer",  # safetensors 0.4
    "Error while deserializing: incomplete metadata, file not fully covered",  # 0.5 and later
])
def test_both_wordings_of_the_package_errors_are_understood(tmp_path, monkeypatch, wording):
    path = truncated(tmp_path)

    def refuse(data):
        raise safetensors.SafetensorError(wording)

    monkeypatch.setattr(stnp, "load", refuse)
    with pytest.raises(SafetensorsError, match=f"truncated: the tensors need 16 data bytes but only 13 .*{wording}"):
        read_safetensors(path)


def test_an_unknown_package_error_or_a_panic_is_still_a_safetensors_error(tmp_path, monkeypatch):
    path = truncated(tmp_path)

    class PanicException(BaseException):  # what pyo3 raises when the Rust core panics
        pass

    for exc, match in [(safetensors.SafetensorError("something new"), r"not a valid safetensors file \(safetensors: "
                                                                      "something new"),
                       (PanicException("index out of bounds"), "the safetensors package failed on it")]:
        def refuse(data, exc=exc):
            raise exc

        monkeypatch.setattr(stnp, "load", refuse)
        with pytest.raises(SafetensorsError, match=match):
            read_safetensors(path)

    def interrupted(data):
        raise KeyboardInterrupt

    monkeypatch.setattr(stnp, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        read_safetensors(path)


def test_a_header_the_package_and_we_read_differently_is_refused(tmp_path, monkeypatch):
    write_safetensors(tmp_path / "w.safetensors", {"w": np.ones(2, np.float32)})
    real = stnp.load
    monkeypatch.setattr(stnp, "load", lambda data: {**real(data), "ghost": np.zeros(1, np.float32)})
    with pytest.raises(SafetensorsError, match="disagree on its tensors"):
        read_safetensors(tmp_path / "w.safetensors")
    monkeypatch.setattr(stnp, "load", lambda data: {"w": np.zeros(3, np.float32)})
    with pytest.raises(SafetensorsError, match=r"tensor 'w' decodes as float32 \(3,\), but the header says F32"):
        read_safetensors(tmp_path / "w.safetensors")


def test_a_layout_change_between_the_two_encodings_writes_nothing(tmp_path, monkeypatch):
    real, calls = stnp.save, []

    def save(arrays, metadata=None):
        calls.append(1)
        return real({**arrays, "extra": np.zeros(1, np.float32)} if len(calls) == 2 else arrays, metadata=metadata)

    monkeypatch.setattr(stnp, "save", save)
    with pytest.raises(RuntimeError, match="laid out .* differently once the checksum was added; nothing was written"):
        write_safetensors(tmp_path / "w.safetensors", {"w": np.ones(2, np.float32)}, None, CHECKSUM)
    assert list(tmp_path.iterdir()) == []


# -- memory: at most two copies of the tensor bytes beside the caller's, writing or reading -------------------
def test_reading_and_writing_hold_at_most_two_copies(tmp_path):
    arrays = {"w": np.ones(4 * 2 ** 20, np.float32), "v": np.ones(2 ** 20, np.float64)}  # 24 MiB
    size = sum(a.nbytes for a in arrays.values())
    tracemalloc.start()
    try:
        write_safetensors(tmp_path / "big.safetensors", arrays, {"k": "v"}, CHECKSUM)
        write_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        back, _ = read_safetensors(tmp_path / "big.safetensors", CHECKSUM)
        read_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert write_peak < 2.5 * size, f"writing {size >> 20} MiB peaked at {write_peak >> 20} MiB"
    assert read_peak < 2.5 * size, f"reading {size >> 20} MiB peaked at {read_peak >> 20} MiB"
    np.testing.assert_array_equal(back["w"], arrays["w"])


# -- bad arguments ----------------------------------------------------------------------------------------
def test_read_safetensors_rejects_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="read_safetensors: argument 'path' must be a str or os.PathLike, got int"):
        read_safetensors(123)
    with pytest.raises(TypeError, match="read_safetensors: argument 'checksum_key' must be a str or None"):
        read_safetensors(OLD_MODEL, 1)
    with pytest.raises(FileNotFoundError, match="read_safetensors: argument 'path' .* not an existing file"):
        read_safetensors(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="not an existing file"):
        read_safetensors(tmp_path)


@pytest.mark.parametrize("call, error, match", [
    (lambda p: write_safetensors(123, {}), TypeError, "argument 'path' must be a str or os.PathLike"),
    (lambda p: write_safetensors(p, [np.zeros(2)]), TypeError, "argument 'tensors' must be a dict"),
    (lambda p: write_safetensors(p, {1: np.zeros(2)}), ValueError, "tensor name 1 is not allowed"),
    (lambda p: write_safetensors(p, {"__metadata__": np.zeros(2)}), ValueError, "'__metadata__' is not allowed"),
    (lambda p: write_safetensors(p, {"o": np.array([object()])}), TypeError, "dtype object, which safetensors"),
    (lambda p: write_safetensors(p, {"c": np.zeros(2, np.complex64)}), TypeError, "dtype complex64"),
    (lambda p: write_safetensors(p, {}, [("k", "v")]), TypeError, "argument 'metadata' must map str to str, got list"),
    (lambda p: write_safetensors(p, {}, {"k": None}), TypeError, "argument 'metadata' must map str to str"),
    (lambda p: write_safetensors(p, {}, None, ""), TypeError, "'checksum_key' must be a non-empty str"),
    (lambda p: write_safetensors(p, {}, None, 5), TypeError, "'checksum_key' must be a non-empty str"),
    (lambda p: write_safetensors(p.parent / "nope" / "x.safetensors", {}), FileNotFoundError, "does not exist"),
])
def test_write_safetensors_rejects_bad_arguments_and_writes_nothing(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_writes_bytes_like_data_and_rejects_bad_arguments(tmp_path):
    atomic_write(tmp_path / "a", bytearray(b"ab"))
    atomic_write(str(tmp_path / "b"), memoryview(b"cd"))
    assert (tmp_path / "a").read_bytes() == b"ab" and (tmp_path / "b").read_bytes() == b"cd"
    with pytest.raises(TypeError, match="atomic_write: argument 'path' must be a str or os.PathLike, got int"):
        atomic_write(3, b"")
    with pytest.raises(TypeError, match="atomic_write: argument 'data' must be bytes, bytearray or memoryview, "
                                        "got str"):
        atomic_write(tmp_path / "c", "text")
    with pytest.raises(ValueError, match="atomic_write: argument 'path' '' does not name a file"):
        atomic_write("", b"")
    with pytest.raises(FileNotFoundError, match="atomic_write: the folder .* does not exist"):
        atomic_write(tmp_path / "missing" / "c", b"")
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="atomic_write: argument 'path' .* is a folder"):
        atomic_write(tmp_path / "folder", b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "folder"]
    with pytest.raises(TypeError, match="clean_stale_temporaries: argument 'path' must be a str or os.PathLike"):
        clean_stale_temporaries(None)
    assert clean_stale_temporaries(tmp_path / "a") == []
    assert os.listdir(tmp_path / "folder") == []


def test_an_unreadable_header_from_the_package_writes_nothing(tmp_path, monkeypatch):
    """safetensors 0.4.0 to 0.4.3 wrote '{},"__metadata__":{...}}' for a file without tensors."""
    broken = b'{},"__metadata__":{"a":"b"}}    '
    monkeypatch.setattr(stnp, "save", lambda arrays, metadata=None: len(broken).to_bytes(8, "little") + broken)
    for checksum_key in (None, CHECKSUM):
        with pytest.raises(RuntimeError, match=r"unreadable header for .*nothing was written .*safetensors>=0\.4\.4"):
            write_safetensors(tmp_path / "w.safetensors", {}, {"a": "b"}, checksum_key)
    assert list(tmp_path.iterdir()) == []


def test_a_null_metadata_entry_is_no_metadata(tmp_path):
    path = raw_file(tmp_path / "n.safetensors", b'{"__metadata__":null,"w":{"dtype":"F32","shape":[1],'
                                                 b'"data_offsets":[0,4]}}', b"\0" * 4)
    tensors, meta = read_safetensors(path)
    assert meta == {} and tensors["w"].tolist() == [0.0]
    with pytest.raises(SafetensorsError, match="has no 'gpunn.sha256' checksum"):
        read_safetensors(path, CHECKSUM)
