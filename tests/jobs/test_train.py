"""The main job (`python -m gpunn train`): the offline default, outputs, data sources, errors."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import gpunn
from gpunn.jobs.train import augmentation, main

SHARED_MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"


def _final_acc(text: str) -> float:
    match = re.search(r"final test accuracy: ([0-9.]+)", text)
    assert match, text
    return float(match.group(1))


def _normalized_digits_test_set(metrics: dict) -> tuple[np.ndarray, np.ndarray]:
    """The job's digits test split, standardized with the statistics it saved in metrics.json."""
    from gpunn.data import load_digits, train_test_split
    x, y = load_digits()
    _, (x_test, y_test) = train_test_split(x, y, test_fraction=0.2, seed=metrics["config"]["seed"])
    mean = np.asarray(metrics["normalize"]["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(metrics["normalize"]["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    return (x_test - mean) / std, y_test


def test_default_digits_run_reaches_97_percent(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert main(["--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits: " in out and "model: mlp" in out and "wall time:" in out
    assert _final_acc(out) >= 0.97
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    history, results = metrics["history"], metrics["results"]
    assert len(history["val_accuracy"]) == 40 and len(history["epoch_time"]) == 40
    assert results["test_acc"] >= 0.97
    # the per-step cosine schedule ran: the lr decays from 1e-3 towards 0 by the last epoch
    assert history["lr"][0] < 1e-3 and history["lr"][-1] < 1e-5
    # the checkpoint is the best-validation model, in the workflow's safe format, and reproduces the
    # reported test accuracy
    best = gpunn.load_model(tmp_path / "best.safetensors")
    best_epoch = results["best_epoch"]
    assert history["val_accuracy"][best_epoch - 1] == max(history["val_accuracy"])
    assert best.epoch == best_epoch
    x_test, y_test = _normalized_digits_test_set(metrics)
    acc = float((best.predict(x_test, batch_size=500).argmax(axis=1) == y_test).mean())
    assert acc == pytest.approx(results["test_acc"], abs=1e-9)
    assert f"final test accuracy: {acc:.4f}" in out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in out
        return
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_validation_the_last_epoch_is_kept(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert main(["--val-fraction", "0", "--epochs", "2", "--max-train", "200", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "0 val" in out and "[weights from epoch 2]" in out and "val_acc" not in out
    assert gpunn.load_model(tmp_path / "best.safetensors").epoch == 2


def test_mnist_augmentation_preset_is_light():
    # the heavier preset (rotate 10, shift 10%, scale 0.9-1.1, shear 10) lowered LeNet-5's 10-epoch accuracy
    (affine,) = augmentation("mnist")
    assert max(abs(d) for d in affine.degrees) <= 8 and max(affine.translate) <= 0.07
    assert affine.scale == (0.95, 1.05) and all(s == 0 for s in affine.shear)
    # on a batch, it moves pixels (it does augment) but keeps most of each digit's ink
    x = np.zeros((16, 1, 28, 28), np.float32)
    x[:, :, 8:20, 12:16] = 1.0
    y = affine(x, rng=np.random.default_rng(0))
    assert y.shape == x.shape and not np.allclose(y, x)
    ink = y.sum(axis=(1, 2, 3)) / x.sum(axis=(1, 2, 3))
    assert (ink > 0.85).all() and (ink < 1.15).all()


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


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--lr", "-1"], ["--lr", "nan"], ["--val-fraction", "1.5"],
                                  ["--model", "nope"], ["--dataset", "imagenet"], ["--dropout", "1"],
                                  ["--batch-size", "0"], ["--max-train", "5"], ["--epochs", "ten"],
                                  ["--schedule", "linear"], ["--optimizer", "lbfgs"]])
def test_bad_arguments_exit_with_usage(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and args[0] in err  # names the option at fault


def test_unknown_backend_is_reported(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--backend", "tpu", "--quiet"])
    assert info.value.code == 2
    assert "argument --backend: must be one of auto, numpy, cupy, emulated, got 'tpu'" in capsys.readouterr().err


def _usage_error(argv: list[str], capsys) -> str:
    """main(argv) must stop with argparse's exit status 2 before training; the error line."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "epoch" not in captured.out
    lines = captured.err.strip().splitlines()
    assert lines[0].startswith("usage: python -m gpunn train")
    assert lines[-1].startswith("python -m gpunn train: error: ")
    return lines[-1]


@pytest.mark.parametrize("option, value, expected", [
    # these used to end in a traceback from the optimizer (momentum only with sgd: else ignored silently)
    ("--momentum", "5", "must be a number in [0, 1), got 5"),
    ("--momentum", "-0.1", "must be a number in [0, 1), got -0.1"),
    ("--momentum", "nan", "must be a number in [0, 1), got nan"),
    ("--weight-decay", "-1", "must be a number >= 0, got -1"),
    ("--weight-decay", "inf", "must be a number >= 0, got inf"),
    ("--seed", "-1", "must be an int >= 0, got -1"),  # a traceback from manual_seed
    ("--seed", "1.5", "must be an int >= 0, got '1.5'"),
    ("--lr", "0", "must be a positive number, got 0"),
    ("--lr", "abc", "must be a positive number, got 'abc'"),
    ("--dropout", "-0.5", "must be a number in [0, 1), got -0.5"),
    ("--val-fraction", "nan", "must be a number in [0, 1), got nan"),
    ("--max-train", "9", "must be an int >= 10, got 9"),
    ("--epochs", "-3", "must be an int >= 1, got -3"),
    ("--out", "", "must be a folder path, got an empty string"),
])
def test_bad_option_values_are_usage_errors_naming_the_option(option, value, expected, capsys):
    line = _usage_error(["--optimizer", "sgd", option, value, "--quiet"], capsys)
    assert line == f"python -m gpunn train: error: argument {option}: {expected}"


@pytest.mark.parametrize("max_train", ["10", "30", "50"])
def test_a_max_train_that_leaves_no_validation_data_is_a_usage_error(max_train, capsys):
    # these used to crash in Normalize on an empty validation batch, after loading the data
    pytest.importorskip("sklearn")
    line = _usage_error(["--max-train", max_train, "--epochs", "1", "--quiet"], capsys)
    assert line.startswith(f"python -m gpunn train: error: argument --max-train: {max_train} samples with "
                           "--val-fraction 0.1 leave an empty validation split")


def test_a_val_fraction_that_leaves_no_validation_data_is_a_usage_error(capsys):
    pytest.importorskip("sklearn")
    line = _usage_error(["--val-fraction", "0.0001", "--epochs", "1", "--quiet"], capsys)
    assert line.startswith("python -m gpunn train: error: argument --val-fraction: 0.0001 of ")
    assert "empty validation split" in line


def test_out_must_not_be_a_file(tmp_path, capsys):
    # used to end in FileExistsError from mkdir, after loading the data
    afile = tmp_path / "results.txt"
    afile.write_text("keep me")
    line = _usage_error(["--out", str(afile), "--quiet"], capsys)
    assert line == f"python -m gpunn train: error: argument --out: {afile} is an existing file, not a folder"
    line = _usage_error(["--out", str(afile / "run1"), "--quiet"], capsys)
    assert line == (f"python -m gpunn train: error: argument --out: cannot create the folder {afile / 'run1'}: "
                    f"{afile} is a file")
    assert afile.read_text() == "keep me"


def test_out_with_an_earlier_run_needs_overwrite(tmp_path, capsys):
    """An earlier run's checkpoint and metrics used to be replaced without a word."""
    pytest.importorskip("sklearn")
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    line = _usage_error(["--out", str(tmp_path), "--epochs", "1", "--quiet"], capsys)
    assert line == (f"python -m gpunn train: error: argument --out: {tmp_path} already holds metrics.json from an "
                    "earlier run; pass --overwrite to replace them, or choose another folder")
    assert (tmp_path / "metrics.json").read_text() == "{}"
    argv = ["--out", str(tmp_path), "--epochs", "1", "--max-train", "200", "--quiet", "--overwrite"]
    assert main(argv) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["overwrite"] is True
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the job's own files are replaced


def test_a_new_nested_out_folder_is_created(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "runs" / "a"
    assert main(["--out", str(out), "--epochs", "1", "--max-train", "200", "--quiet"]) == 0
    assert (out / "metrics.json").is_file() and (out / "best.safetensors").is_file()


def test_bad_values_in_a_real_process_exit_2_without_traceback():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "gpunn", "train", "--momentum", "5"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("python -m gpunn train: error: argument --momentum: "
                                                    "must be a number in [0, 1), got 5")
    assert proc.stdout == ""


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is not present")
def test_lenet5_mnist_two_epochs_reaches_98_5(capsys):
    assert main(["--model", "lenet5", "--dataset", "mnist", "--data-dir", str(SHARED_MNIST), "--epochs", "2",
                 "--batch-size", "64", "--batchnorm", "--quiet"]) == 0
    assert _final_acc(capsys.readouterr().out) >= 0.985


def test_tensorboard_flag_writes_the_runs_values(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("tensorboardX")
    from tests.callbacks.tensorboard_events import read_folder
    out, logs = tmp_path / "out", tmp_path / "tb"
    assert main(["--epochs", "2", "--max-train", "200", "--quiet", "--out", str(out), "--tensorboard", str(logs)]) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    train, val = read_folder(logs / "train"), read_folder(logs / "validation")
    f32 = {"rel": 2e-7, "abs": 1e-30}
    assert [s for s, _ in train["scalars"]["epoch_loss"]] == [0, 1]
    assert [v for _, v in train["scalars"]["epoch_loss"]] == pytest.approx(history["loss"], **f32)
    assert [v for _, v in val["scalars"]["epoch_accuracy"]] == pytest.approx(history["val_accuracy"], **f32)
    # the per-step cosine schedule's lr at each epoch's end, as the job's history records it
    assert [v for _, v in train["scalars"]["epoch_learning_rate"]] == pytest.approx(history["lr"], **f32)
    best = gpunn.load_model(out / "best.safetensors")
    for name, param in best.named_parameters():
        assert [h.num for _, h in train["histograms"][f"weights/{name}"]] == [param.data.size] * 2
        assert len(train["histograms"][f"gradients/{name}"]) == 2
    norms = [tag for tag in train["scalars"] if tag.startswith("diagnostics/grad_norm/")]
    assert norms and all(len(train["scalars"][tag]) == 2 for tag in norms)


def test_tensorboard_must_not_be_a_file(tmp_path, capsys):
    afile = tmp_path / "tb.txt"
    afile.write_text("keep me")
    line = _usage_error(["--tensorboard", str(afile), "--quiet"], capsys)
    assert line == f"python -m gpunn train: error: argument --tensorboard: {afile} is an existing file, not a folder"
    assert afile.read_text() == "keep me"


def test_tensorboard_without_tensorboardx_stops_at_once(tmp_path, capsys, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # what an absent package looks like to import
    assert main(["--tensorboard", str(tmp_path / "tb"), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == ("error: --tensorboard: TensorBoard: the tensorboardX package is not installed; "
                                    "install gpunn's tensorboard extra: pip install 'gpunn[tensorboard]'")
    assert captured.out == "" and not (tmp_path / "tb").exists()


@pytest.mark.parametrize("backend", ["numpy", "emulated"])
def test_cuda_graph_run_prints_what_the_eager_run_prints(backend, capsys):
    """--cuda-graph trains the same model to the same numbers (on emulated the step is recorded and
    replayed; on numpy it runs eagerly); only the timings and the header's flag differ."""
    if backend == "emulated":
        pytest.importorskip("gpunn.emu")
    args = ["--backend", backend, "--epochs", "2", "--max-train", "300", "--quiet"]

    def numbers() -> list[str]:
        lines = capsys.readouterr().out.splitlines()
        return [line.split("(")[0] for line in lines if line.startswith(("epoch", "final"))]

    assert main(args) == 0
    eager = numbers()
    assert main([*args, "--cuda-graph"]) == 0
    assert numbers() == eager and len(eager) == 3


@pytest.mark.parametrize("precision", ["tf32", "bf16-mixed", "fp16-mixed"])
def test_precision_flag_trains_under_the_policy(precision, capsys):
    """--precision reaches compile: the header names the policy and the run learns (final test
    accuracy well above chance on the digits)."""
    assert main(["--backend", "numpy", "--epochs", "2", "--max-train", "600", "--quiet", "--precision",
                 precision]) == 0
    out = capsys.readouterr().out
    assert f"precision {precision}" in out
    final = [line for line in out.splitlines() if line.startswith("final")]
    assert final and float(final[0].split("accuracy:")[1].split()[0]) > 0.5


def test_precision_flag_refuses_unknown_names(capsys):
    with pytest.raises(SystemExit):
        main(["--precision", "fp8"])
    assert "argument --precision: invalid choice: 'fp8'" in capsys.readouterr().err
