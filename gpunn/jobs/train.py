"""The main job: train a zoo model on a data set and report per-epoch loss and accuracy.

    python -m gpunn train                      # offline default: an MLP on scikit-learn's 8x8 digits
    python -m gpunn train --model lenet5 --dataset mnist --data-dir PATH --epochs 10 \\
        --batch-size 128 --optimizer adam --lr 1e-3 --augment --out runs/lenet5

A stratified slice of the training set (--val-fraction) is held out for validation. Training runs
through the Keras-style workflow: `model.compile(...)` then `model.fit(loader, ...)` on a
gpunn.data.DataLoader (which prefetches and augments the next batch in a background thread), with
callbacks: ModelCheckpoint keeps the model with the best validation accuracy in --out as
best.safetensors (load it with gpunn.load_model), EarlyStopping(restore_best_weights) puts those
weights back for the final test accuracy, a per-step learning-rate schedule, TerminateOnNaN, and
History.plot draws curves.png; with --tensorboard DIR a TensorBoard callback writes the per-epoch
losses, accuracies and learning rate, weight and gradient histograms and the TrainingMonitor's
diagnostics to DIR/train and DIR/validation (the `tensorboard` extra). metrics.json holds the
history, the results and the input normalization (per-channel mean and std) that the saved model
expects. An --out folder that already holds these files from an earlier run is refused unless
--overwrite is given.

A bad option value (out of range, NaN, an --out that is a file, a --max-train or --val-fraction that
leaves a split empty) is a usage error: one line naming the option, exit status 2, no traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpunn.backend import BackendUnavailableError, get_backend, set_backend
from gpunn.callbacks import Callback, EarlyStopping, ModelCheckpoint, TensorBoard, TerminateOnNaN
from gpunn.data import DataLoader, load_cifar10, load_digits, load_fashion_mnist, load_mnist, train_test_split
from gpunn import distributed
from gpunn.data import transforms as T
from gpunn.distributed import DistributedError, is_main, launched_size
from gpunn.jobs.arguments import backend_name
from gpunn.models import MODELS, get_model
from gpunn.optim import OPTIMIZERS, CosineAnnealing, MultiStep
from gpunn.random import manual_seed
from gpunn.precision import POLICIES

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")


# -- data ---------------------------------------------------------------------------------------------
def load_dataset(name: str, data_dir: str | None, download: bool, seed: int):
    """((x_train, y_train), (x_test, y_test)) as float32 NCHW in [0, 1] and int64 labels."""
    if name == "digits":
        x, y = load_digits()
        return train_test_split(x, y, test_fraction=0.2, seed=seed)
    if name == "mnist":
        return load_mnist(data_dir, download=download)
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir, download=download)
    if data_dir is None:
        raise FileNotFoundError("cifar10 needs --data-dir: the cifar-10-batches-bin folder or cifar-10-binary.tar.gz")
    return load_cifar10(data_dir)


def augmentation(dataset: str) -> list[T.Transform]:
    """Label-preserving augmentation per data set (digits are not mirror-symmetric: no flips)."""
    if dataset in ("mnist", "digits"):
        # light on purpose: rotate 10 / shift 10% / scale 0.9-1.1 / shear 10 cost LeNet-5 accuracy in
        # 10 epochs (98.88% vs 99.10% with BN alone); about 2 px of shift on 28x28, no shear
        return [T.RandomAffine(degrees=8, translate=(0.07, 0.07), scale=(0.95, 1.05))]
    if dataset == "fashion-mnist":
        return [T.RandomCrop(28, padding=2), T.RandomHorizontalFlip()]
    return [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ColorJitter(0.2, 0.2, 0.2)]


# -- callbacks: the job's progress bar, per-epoch report and per-step schedule on top of fit() ---------------
class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label = total, label
        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, done: int, loss: float, acc: float) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.1 and done < self.total):
            return
        self.last = now
        frac = done / max(self.total, 1)
        eta = (now - self.start) * (1 - frac) / max(frac, 1e-9)
        bar = "#" * int(24 * frac)
        sys.stderr.write(f"\r{self.label} [{bar:<24}] {done}/{self.total}  loss {loss:.4f}  acc {acc:.4f}  "
                         f"eta {eta:4.0f}s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


class EpochReport(Callback):
    """The job's output: a progress bar per epoch (running loss and accuracy) and one line per epoch
    with train and validation loss and accuracy, a `*` where validation accuracy improved, and the
    epoch's time (training plus validation), which it also adds to the logs as "epoch_time".

    fit's own ProgbarLogger is not used: it would print a second summary per epoch."""

    rank_zero_only = True  # prints: once, on rank 0, in data-parallel training

    def __init__(self, epochs: int, progress: bool) -> None:
        super().__init__()
        self.epochs, self.progress = epochs, progress
        self.best = -math.inf
        self._bar: Progress | None = None
        self._start = 0.0
        self._seen, self._loss, self._correct = 0, 0.0, 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        self._seen, self._loss, self._correct = 0, 0.0, 0.0
        self._bar = Progress(self.params.get("steps") or 0, f"epoch {epoch + 1}/{self.epochs}", self.progress)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if getattr(self.model, "_graphs", None) is not None:
            # cuda_graph: the logs are the epoch's running means, and only every log_every batches
            if self._bar is not None and "loss" in logs:
                self._bar.update(batch + 1, logs["loss"], logs.get("accuracy", 0.0))
            return
        n = int(logs.get("size", 0))
        self._seen += n
        self._loss += logs.get("loss", 0.0) * n
        self._correct += logs.get("accuracy", 0.0) * n
        if self._bar is not None and self._seen:
            self._bar.update(batch + 1, self._loss / self._seen, self._correct / self._seen)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        if self._bar is not None:
            self._bar.close()
        elapsed = time.perf_counter() - self._start
        logs["epoch_time"] = elapsed
        line = (f"epoch {epoch + 1:2d}/{self.epochs}  loss {logs.get('loss', math.nan):.4f}  "
                f"acc {logs.get('accuracy', math.nan):.4f}")
        if "val_accuracy" in logs:
            line += f"  val_loss {logs['val_loss']:.4f}  val_acc {logs['val_accuracy']:.4f}"
            if logs["val_accuracy"] > self.best:  # the rule ModelCheckpoint(save_best_only) applies
                self.best = logs["val_accuracy"]
                line += "  *"
        print(f"{line}  ({elapsed:.1f} s)", flush=True)


class StepSchedule(Callback):
    """Advance a gpunn.optim schedule after every batch (fit's LearningRateScheduler steps per
    epoch only, and a per-step cosine decay does better in the few epochs this job runs)."""

    def __init__(self, schedule: Any) -> None:
        super().__init__()
        self.schedule = schedule

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.schedule.optimizer = self.model.optimizer  # fit may rebuild the optimizer
        self.schedule.step()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["lr"] = float(self.model.optimizer.lr)


# -- the job ---------------------------------------------------------------------------------------------
#: what --out receives; an --out folder that already holds one of them needs --overwrite
OUTPUTS = ("best.safetensors", "metrics.json", "curves.png")


# argparse `type=` functions: a bad value becomes "argument --opt: must be ..., got ..." and exit status 2
def _int_at_least(lo: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be an int >= {lo}, got {value}")
        return value
    parse.__name__ = f"int >= {lo}"
    return parse


def _float_in(lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = True) -> Any:
    """A finite float in the interval; the message spells the interval ([0, 1), (0, inf), ...)."""
    want = "a positive number" if (lo, hi, lo_open) == (0.0, math.inf, True) else \
        "a number >= 0" if (lo, hi, lo_open) == (0.0, math.inf, False) else \
        f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {text!r}") from None
        ok = (math.isfinite(value) and (value > lo if lo_open else value >= lo)
              and (value < hi if hi_open else value <= hi))
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return value
    parse.__name__ = want
    return parse


def _folder(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a folder path, got an empty string")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gpunn train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, choices=sorted(MODELS),
                   help="zoo model (default: mlp on digits, lenet5 otherwise)")
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="default: digits without --data-dir, mnist with it")
    p.add_argument("--data-dir", default=None, help="folder holding the data set's files")
    p.add_argument("--download", action="store_true", help="fetch MNIST / Fashion-MNIST if missing (needs a network)")
    p.add_argument("--epochs", type=_int_at_least(1), default=None, help="default 40 on digits, 10 otherwise")
    p.add_argument("--batch-size", type=_int_at_least(1), default=None, help="default 32 on digits, 128 otherwise")
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    p.add_argument("--lr", type=_float_in(0.0, lo_open=True), default=None,
                   help="default 1e-3 (adam family), 0.05 (sgd), 0.01 otherwise")
    p.add_argument("--momentum", type=_float_in(0.0, 1.0), default=0.9, help="for sgd, in [0, 1)")
    p.add_argument("--weight-decay", type=_float_in(0.0), default=0.0, help="L2 weight decay, >= 0")
    p.add_argument("--schedule", default="cosine", choices=("none", "cosine", "step"),
                   help="per-batch learning-rate schedule (default cosine; step: /10 at 50%% and 75%%)")
    p.add_argument("--augment", action="store_true", help="random affine / crops / flips, per data set")
    p.add_argument("--batchnorm", action="store_true", help="BatchNorm in mlp / lenet5")
    p.add_argument("--dropout", type=_float_in(0.0, 1.0), default=None,
                   help="dropout rate in mlp / lenet5 hidden layers (default 0.2 for mlp on digits, else 0)")
    p.add_argument("--val-fraction", type=_float_in(0.0, 1.0), default=0.1,
                   help="training data held out for validation, in [0, 1)")
    p.add_argument("--max-train", type=_int_at_least(10), default=None,
                   help="use only this many training samples (quick runs; at least 10)")
    p.add_argument("--tta", action="store_true", help="also report test accuracy with test-time augmentation")
    p.add_argument("--out", type=_folder, default=None, help="folder for " + ", ".join(OUTPUTS))
    p.add_argument("--tensorboard", type=_folder, default=None, metavar="DIR",
                   help="write TensorBoard event files (scalars, histograms, diagnostics) to DIR; needs tensorboardX")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier run in --out (refused without it)")
    p.add_argument("--seed", type=_int_at_least(0), default=0)
    p.add_argument("--backend", type=backend_name, default=None,
                   help="numpy, cupy, emulated or auto (default: GPUNN_BACKEND or auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--cuda-graph", action="store_true",
                   help="capture the training step as a CUDA graph per batch shape and replay it (cupy; the "
                        "emulated backend records and replays it too; numpy runs the same step eagerly)")
    p.add_argument("--precision", choices=sorted(POLICIES), default="fp32",
                   help="fp32 (default), tf32 (TF32 matrix products), bf16-mixed or fp16-mixed (float32 master "
                        "weights, layers in bfloat16 / float16; fp16 with dynamic loss scaling)")
    return p


def _model_kwargs(args: argparse.Namespace, input_shape: tuple[int, ...]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"num_classes": 10, "input_shape": input_shape}
    if args.model in ("mlp", "lenet5"):
        kwargs.update(batchnorm=args.batchnorm, dropout=args.dropout)
    return kwargs


def _check_out(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--out must be a folder we can create or write, and must not hold an earlier run's outputs
    unless --overwrite: they would be replaced without a word."""
    if args.out is None:
        return
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        p.error(f"argument --out: {out} is an existing file, not a folder")
    if out.is_dir():
        clash = [name for name in OUTPUTS if (out / name).exists()]
        if clash and not args.overwrite:
            p.error(f"argument --out: {out} already holds {', '.join(clash)} from an earlier run; "
                    "pass --overwrite to replace them, or choose another folder")
        existing = out
    else:
        existing = next((a for a in out.absolute().parents if a.exists()), Path("/"))
        if not existing.is_dir():
            p.error(f"argument --out: cannot create the folder {out}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        p.error(f"argument --out: {existing} is not writable")


def _check_splits(p: argparse.ArgumentParser, args: argparse.Namespace, available: int, n_train: int,
                  n_val: int) -> None:
    """Both the training and the validation split must be non-empty (the stratified split holds out
    round(fraction x count) of each class, which is 0 for a class of a few samples)."""
    if n_train and (n_val or args.val_fraction == 0):
        return
    empty = "training" if not n_train else "validation"
    if args.max_train is not None and args.max_train < available:
        p.error(f"argument --max-train: {args.max_train} samples with --val-fraction {args.val_fraction:g} leave "
                f"an empty {empty} split; use a larger --max-train, or --val-fraction 0 for no validation")
    p.error(f"argument --val-fraction: {args.val_fraction:g} of {available} training samples leaves an empty "
            f"{empty} split; choose another --val-fraction, or 0 for no validation")


def _join_ranks() -> int:
    """Under `mpiexec -n N` join the N ranks (data-parallel training) and silence the standard
    output of every rank but 0, so the job prints once; alone, 1."""
    if launched_size() <= 1:
        return 1
    distributed.init()
    if not is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    return distributed.world_size()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.dataset = args.dataset or ("mnist" if args.data_dir else "digits")
    small = args.dataset == "digits"
    # defaults per data set: the 8x8 digits are too small for LeNet's 5x5 kernels to shine, and
    # 1,400 samples overfit an MLP quickly, hence dropout there
    args.model = args.model or ("mlp" if small else "lenet5")
    if args.dropout is None:
        args.dropout = 0.2 if small and args.model == "mlp" else 0.0
    args.epochs = args.epochs if args.epochs is not None else (40 if small else 10)
    args.batch_size = args.batch_size if args.batch_size is not None else (32 if small else 128)
    if args.lr is None:
        args.lr = 1e-3 if args.optimizer in ("adam", "adamw", "nadam") else 0.05 if args.optimizer == "sgd" else 0.01
    _check_out(parser, args)
    if args.tensorboard is not None and os.path.exists(args.tensorboard) and not os.path.isdir(args.tensorboard):
        parser.error(f"argument --tensorboard: {args.tensorboard} is an existing file, not a folder")
    tensorboard = None
    if args.tensorboard is not None:
        try:  # made before the data loads, so a missing tensorboardX stops the job at once
            tensorboard = TensorBoard(args.tensorboard, histogram_freq=1, write_diagnostics=True)
        except ImportError as exc:
            print(f"error: --tensorboard: {exc}", file=sys.stderr)
            return 1
    wall = time.perf_counter()
    try:
        ranks = _join_ranks()
    except DistributedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        backend = set_backend(args.backend) if args.backend else get_backend()
    except (BackendUnavailableError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    manual_seed(args.seed)

    try:
        (x_train, y_train), (x_test, y_test) = load_dataset(args.dataset, args.data_dir, args.download, args.seed)
    except (OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    available = len(x_train)
    if args.max_train is not None and args.max_train < len(x_train):
        (x_train, y_train), _ = train_test_split(x_train, y_train, 1 - args.max_train / len(x_train), args.seed)
    if args.val_fraction > 0 and len(x_train) >= 2:
        (x_train, y_train), (x_val, y_val) = train_test_split(x_train, y_train, args.val_fraction, args.seed)
    else:
        x_val = y_val = None
    _check_splits(parser, args, available, len(x_train), 0 if x_val is None else len(x_val))

    # standardize with the training set's per-channel statistics, after augmentation (so the
    # augmentation's zero fill is the black background), and once up front for evaluation
    norm = T.Normalize(x_train.mean(axis=(0, 2, 3)), x_train.std(axis=(0, 2, 3)) + 1e-7)
    x_eval_test = norm(x_test)
    x_eval_val = norm(x_val) if x_val is not None else None
    pipeline = T.Compose([*(augmentation(args.dataset) if args.augment else []), norm])

    model = get_model(args.model, **_model_kwargs(args, tuple(x_train.shape[1:])))
    opt_kwargs: dict[str, Any] = {"lr": args.lr, "weight_decay": args.weight_decay}
    if args.optimizer == "sgd":
        opt_kwargs["momentum"] = args.momentum
    if args.cuda_graph and ranks > 1:
        print("error: --cuda-graph does not run data-parallel yet; run one process or drop --cuda-graph",
              file=sys.stderr)
        return 2
    if args.precision != "fp32" and ranks > 1:
        print(f"error: --precision {args.precision} does not run data-parallel yet; run one process or use fp32",
              file=sys.stderr)
        return 2
    model.compile(loss="softmax_cross_entropy", optimizer=args.optimizer, metrics=["accuracy"], distributed=ranks > 1,
                  cuda_graph=args.cuda_graph, precision=args.precision, **opt_kwargs)
    loader = DataLoader(x_train, y_train, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                        transform=pipeline)
    # evaluation in large batches: fewer Python round trips than fit's training batch size
    val_loader = DataLoader(x_eval_val, y_val, batch_size=500) if x_eval_val is not None else None
    total_steps = args.epochs * len(loader)
    schedule = (CosineAnnealing(model.optimizer, T_max=total_steps) if args.schedule == "cosine" else
                MultiStep(model.optimizer, milestones=[total_steps // 2, (3 * total_steps) // 4], gamma=0.1)
                if args.schedule == "step" else None)

    print(f"backend: {backend.describe()}; {args.dataset}: {len(x_train)} train, "
          f"{0 if x_val is None else len(x_val)} val, {len(x_test)} test, input {tuple(x_train.shape[1:])}")
    print(f"model: {args.model} ({model.count_params():,} parameters); optimizer {args.optimizer} lr {args.lr:g}, "
          f"schedule {args.schedule}, batch {args.batch_size}, epochs {args.epochs}"
          f"{', augmented' if args.augment else ''}{', cuda graph' if args.cuda_graph else ''}"
          f"{'' if args.precision == 'fp32' else ', precision ' + args.precision}")
    if ranks > 1:
        print(f"data parallel: {ranks} ranks (MPI), batch {args.batch_size} per rank, {args.batch_size * ranks} in all")
    out = Path(args.out) if args.out and is_main() else None  # rank 0 writes the files
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"error: --out: cannot create the folder {out}: {exc.strerror or exc}", file=sys.stderr)
            return 1

    nan_guard = TerminateOnNaN()
    callbacks: list[Callback] = [nan_guard]
    if schedule is not None:
        callbacks.append(StepSchedule(schedule))
    keep_best = None
    if val_loader is not None:
        # never stops (patience > epochs); it only keeps the best weights in memory and restores them
        keep_best = EarlyStopping(monitor="val_accuracy", mode="max", patience=args.epochs + 1,
                                  restore_best_weights=True)
        callbacks.append(keep_best)
    if out is not None:
        # with no validation data, the last epoch's model is the one kept
        ckpt = str(out / "best.safetensors").replace("{", "{{").replace("}", "}}")  # a literal path, not a template
        callbacks.append(ModelCheckpoint(ckpt, monitor="val_accuracy", mode="max",
                                         save_best_only=val_loader is not None))
    if tensorboard is not None:
        callbacks.append(tensorboard)
    callbacks.append(EpochReport(args.epochs, progress=not args.quiet))

    train_start = time.perf_counter()
    history = model.fit(loader, epochs=args.epochs, validation_data=val_loader, verbose=0, callbacks=callbacks)
    train_time = time.perf_counter() - train_start
    if nan_guard.stopped_batch is not None:
        epoch, batch = nan_guard.stopped_batch
        print(f"error: the loss became NaN or inf in epoch {epoch + 1}, batch {batch + 1}; lower --lr", file=sys.stderr)
        return 1

    best_epoch = (keep_best.best_epoch + 1) if keep_best is not None and keep_best.best_epoch is not None \
        else len(history.epoch)
    test_loss, test_acc = model.evaluate(DataLoader(x_eval_test, y_test, batch_size=500))
    epoch_times = history.history.get("epoch_time", [0.0])
    results: dict[str, Any] = {"test_loss": float(test_loss), "test_acc": float(test_acc), "best_epoch": best_epoch,
                               "train_time_s": train_time, "mean_epoch_time_s": float(np.mean(epoch_times))}
    tta_note = ""
    if args.tta:
        size = x_test.shape[2:]
        tta = T.TenCrop(size, padding=1, flip="horizontal" if args.dataset in ("cifar10", "fashion-mnist") else None)
        probs = T.predict_tta(model, x_eval_test, tta)
        results["test_acc_tta"] = float((probs.argmax(axis=1) == y_test).mean())
        tta_note = f"  (with test-time augmentation: {results['test_acc_tta']:.4f})"
    results["wall_time_s"] = time.perf_counter() - wall
    where = f"weights from epoch {best_epoch}" + (" (best validation accuracy)" if x_val is not None else "")
    print(f"final test accuracy: {test_acc:.4f}{tta_note}  test loss {test_loss:.4f}  [{where}]")
    print(f"wall time: {results['wall_time_s']:.1f} s (training {train_time:.1f} s, "
          f"{results['mean_epoch_time_s']:.1f} s per epoch)")
    if out is not None:
        saved = [out / "best.safetensors", out / "metrics.json"]
        try:
            history.plot(out / "curves.png", metrics=["loss", "accuracy"],
                         title=f"{args.model} on {args.dataset}")
            saved.append(out / "curves.png")
        except ImportError:
            print("note: matplotlib is not installed, so curves.png was not drawn (pip install matplotlib)")
        normalize = {"mean": [float(v) for v in np.ravel(norm.mean)], "std": [float(v) for v in np.ravel(norm.std)]}
        (out / "metrics.json").write_text(json.dumps({"config": dict(vars(args)), "normalize": normalize,
                                                      "history": history.history, "results": results}, indent=2))
        print("saved: " + ", ".join(str(p) for p in saved))
    return 0
