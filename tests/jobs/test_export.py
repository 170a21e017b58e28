"""The export job (`python -m gpunn export CHECKPOINT --onnx OUT`): end to end on a saved
checkpoint, through the real command line, and its errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import gpunn
from gpunn import layers as L
from gpunn.cli import main as cli_main
from gpunn.jobs.export import main


@pytest.fixture
def checkpoint(tmp_path):
    gpunn.manual_seed(0)
    model = gpunn.models.lenet5(batchnorm=True, input_shape=(1, 28, 28))
    model.compile(loss="cross_entropy", optimizer="adam")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    model.fit(x, rng.integers(0, 10, 16), epochs=1, batch_size=8, verbose=0)  # running stats move off 0 / 1
    path = tmp_path / "model.safetensors"
    model.save(path)
    return path, model, x


def _run_onnx(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_cli_exports_a_saved_checkpoint(checkpoint, tmp_path, capsys):
    path, model, x = checkpoint
    out = tmp_path / "lenet5.onnx"
    assert cli_main(["export", str(path), "--onnx", str(out), "--opset", "15"]) == 0
    assert f"wrote {out} (opset 15)" in capsys.readouterr().out
    assert onnx.load(str(out)).opset_import[0].version == 15
    for n in (1, 7):
        np.testing.assert_allclose(_run_onnx(out, x[:n]), model.predict(x[:n]), rtol=1e-5, atol=1e-5)


def test_python_dash_m_gpunn_export(checkpoint, tmp_path):
    path, model, x = checkpoint
    out = tmp_path / "m.onnx"
    done = subprocess.run([sys.executable, "-m", "gpunn", "export", str(path), "--onnx", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(_run_onnx(out, x), model.predict(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", ["12", "99", "seventeen"])
def test_bad_opset_is_a_usage_error(checkpoint, tmp_path, capsys, opset):
    path, _, _ = checkpoint
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--onnx", str(tmp_path / "m.onnx"), "--opset", opset])
    assert exc.value.code == 2
    assert "argument --opset: must be an int in [13, 21]" in capsys.readouterr().err


def test_missing_onnx_option_and_bad_out(checkpoint, tmp_path, capsys):
    path, _, _ = checkpoint
    with pytest.raises(SystemExit) as exc:
        main([str(path)])
    assert exc.value.code == 2 and "--onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--onnx", str(tmp_path)])
    assert exc.value.code == 2 and "is a folder, not a file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--onnx", str(tmp_path / "nope" / "m.onnx")])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_bad_checkpoint_is_one_line_and_status_1(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main([str(bad), "--onnx", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: ") and err.count("\n") == 1
    assert main([str(tmp_path / "missing.safetensors"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    assert not (tmp_path / "m.onnx").exists()


def test_a_dense_model_at_the_oldest_opset(tmp_path, capsys):
    gpunn.manual_seed(1)
    model = gpunn.Sequential([L.Dense(3, activation="softmax", input_shape=(4,))])
    model.build((4,))
    path = tmp_path / "m.safetensors"
    model.save(path)
    assert main([str(path), "--onnx", str(tmp_path / "m.onnx"), "--opset", "13"]) == 0
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(_run_onnx(tmp_path / "m.onnx", x), model.predict(x), rtol=1e-5, atol=1e-5)
