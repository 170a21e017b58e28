"""The main job (`python -m gpunn train`): the offline default, outputs, data sources, errors."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gpunn.jobs.train import main

SHARED_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


def _final_acc(text: str) -> float:
    match = re.search(r"final test accuracy: ([0-9.]+)", text)
    assert match, text
    return float(match.group(1))


def test_default_digits_run_reaches_97_percent(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert main(["--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits: " in out and "model: mlp" in out and "wall time:" in out
    assert _final_acc(out) >= 0.97
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["history"]["val_acc"]) == 40 and metrics["results"]["test_acc"] >= 0.97
    with np.load(tmp_path / "best.npz", allow_pickle=False) as state:  # plain arrays, no pickle
        assert any(k.endswith("weight") for k in state.files)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lenet_augment_tta_short_run(capsys):
    pytest.importorskip("sklearn")
    code = main(["--model", "lenet5", "--augment", "--batchnorm", "--epochs", "2", "--max-train", "300", "--tta",
                 "--optimizer", "sgd", "--schedule", "step", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "augmented" in out and "with test-time augmentation" in out
    assert re.search(r"epoch  2/2 .*val_acc", out)


def _cifar_folder(path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}.bin", 8) for i in range(1, 6)] + [("test_batch.bin", 10)]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        pixels = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        (path / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())


def test_cifar10_job_on_tiny_files(tmp_path, capsys):
    _cifar_folder(tmp_path)
    assert main(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--model", "lenet5", "--epochs", "1",
                 "--augment", "--batch-size", "8", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"cifar10: \d+ train, \d+ val, 10 test, input \(3, 32, 32\)", out)
    assert 0.0 <= _final_acc(out) <= 1.0


def test_missing_mnist_explains_where_to_put_files(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path / "none"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "MNIST: files not found" in err and "train-images-idx3-ubyte.gz" in err


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--lr", "-1"], ["--val-fraction", "1.5"], ["--model", "nope"],
                                  ["--dataset", "imagenet"], ["--dropout", "1"], ["--batch-size", "0"]])
def test_bad_arguments_exit_with_usage(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_unknown_backend_is_reported(capsys):
    assert main(["--backend", "tpu", "--quiet"]) == 1
    assert "backend" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is not present")
def test_lenet5_mnist_two_epochs_reaches_98_5(capsys):
    assert main(["--model", "lenet5", "--dataset", "mnist", "--data-dir", str(SHARED_MNIST), "--epochs", "2",
                 "--batch-size", "64", "--batchnorm", "--quiet"]) == 0
    assert _final_acc(capsys.readouterr().out) >= 0.985
