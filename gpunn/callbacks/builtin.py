"""The standard callbacks: EarlyStopping, ModelCheckpoint, LearningRateScheduler,
ReduceLROnPlateau, TerminateOnNaN, CSVLogger and ProgbarLogger (what fit(verbose=...) uses).
"""
from __future__ import annotations

import csv
import math
import os
import sys
import warnings
from typing import Any

import numpy as np

from gpunn._checks import int_arg, real_arg
from gpunn.callbacks.base import Callback
from gpunn.optim.schedules import ReduceLROnPlateau as Plateau


def _resolve_mode(mode: str, monitor: str, where: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{where}: argument 'mode' must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    # accuracies and similar scores grow; losses and errors shrink
    return "max" if any(s in monitor for s in ("acc", "auc", "precision", "recall", "f1")) else "min"


def _check_monitor(monitor: Any, where: str) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"{where}: argument 'monitor' must be a logged name such as 'val_loss', got {monitor!r}")
    return monitor


class _Monitoring(Callback):
    """Shared by callbacks that track the best value of one logged quantity."""

    def __init__(self, monitor: str, mode: str, min_delta: float, where: str) -> None:
        super().__init__()
        self.monitor = _check_monitor(monitor, where)
        self.mode = _resolve_mode(mode, self.monitor, where)
        self.min_delta = real_arg(min_delta, "min_delta", where, 0, want="a finite float >= 0", numpy=False)
        self.best = math.inf if self.mode == "min" else -math.inf
        self._where = where
        self._warned = False

    def _current(self, logs: dict[str, float] | None) -> float | None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            if not self._warned:
                warnings.warn(f"{self._where}: monitored quantity {self.monitor!r} is not in the logs (available: "
                              f"{sorted(logs or {})}); pass validation data or monitor another name", stacklevel=3)
                self._warned = True
            return None
        return float(value)

    def _improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(_Monitoring):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    With `restore_best_weights`, the weights (and buffers) of the best epoch are put back when
    training stops, and at the end of training when the last epoch was not the best."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, mode: str = "auto",
                 restore_best_weights: bool = False, baseline: float | None = None, verbose: int = 0) -> None:
        super().__init__(monitor, mode, min_delta, "EarlyStopping")
        self.patience = int_arg(patience, "patience", "EarlyStopping", 0)
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = baseline
        self.verbose = verbose
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_epoch: int | None = None
        self.best_weights: dict[str, np.ndarray] | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = None
        self.best_epoch = None
        self.best_weights = None
        self.best = math.inf if self.mode == "min" else -math.inf
        if self.baseline is not None:
            self.best = float(self.baseline)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = self._current(logs)
        if value is None:
            return
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.verbose:
                print(f"EarlyStopping: stopped after epoch {epoch + 1}; best {self.monitor} {self.best:.4f} at "
                      f"epoch {(self.best_epoch or 0) + 1}")
            self._restore()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._restore()

    def _restore(self) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)


class ModelCheckpoint(_Monitoring):
    """Save the model (or only its weights) after each epoch, or only when `monitor` improves.

    `filepath` may hold format fields: {epoch} (1-based) and any logged name, e.g.
    "ckpt-{epoch:02d}-{val_loss:.3f}.safetensors". Writes are atomic, and an epoch whose logs hold
    NaN or inf is never saved, so a diverged run cannot overwrite the last good checkpoint."""

    rank_zero_only = True  # writes: on rank 0 only in data-parallel training

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto", verbose: int = 0) -> None:
        super().__init__(monitor, mode, 0.0, "ModelCheckpoint")
        if not isinstance(filepath, (str, os.PathLike)) or not os.fspath(filepath):
            raise ValueError(f"ModelCheckpoint: argument 'filepath' must be a non-empty path, got {filepath!r}")
        self.filepath = os.fspath(filepath)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.verbose = verbose
        self.saved: list[str] = []  # paths written, in order

    def _path(self, epoch: int, logs: dict) -> str:
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint: argument 'filepath' {self.filepath!r} has a format field that the "
                             f"logs cannot fill ({exc}); available: epoch, {sorted(logs)}") from None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        if any(isinstance(v, float) and not math.isfinite(v) for v in logs.values()):
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1} logged NaN or inf; not saving", stacklevel=2)
            return
        if self.save_best_only:
            value = self._current(logs)
            if value is None or not self._improved(value):
                return
            self.best = value
        path = self._path(epoch, logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        self.saved.append(path)
        if self.verbose:
            print(f"ModelCheckpoint: epoch {epoch + 1}: saved {path}")


class LearningRateScheduler(Callback):
    """Set the optimizer's lr at the start of each epoch from `schedule`:
    a gpunn.optim.schedules object (its lr for the epoch index), or a function of (epoch) or
    (epoch, current_lr) returning the new lr. The lr is logged as "lr"."""

    def __init__(self, schedule: Any, verbose: int = 0) -> None:
        super().__init__()
        if not (callable(schedule) or hasattr(schedule, "lr_at")):
            raise TypeError(f"LearningRateScheduler: argument 'schedule' must be a schedule or a function, got "
                            f"{type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose
        self._arity = self._count_args(schedule)

    @staticmethod
    def _count_args(fn: Any) -> int:
        if hasattr(fn, "lr_at"):
            return 0
        import inspect
        try:
            params = [p for p in inspect.signature(fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            return 1
        return 2 if len(params) >= 2 else 1

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        opt = self.model.optimizer
        if hasattr(self.schedule, "lr_at"):
            self.schedule.optimizer = opt  # follow the model's optimizer (it may have been rebuilt)
            lr = self.schedule(epoch)
        else:
            lr = self.schedule(epoch, opt.lr) if self._arity == 2 else self.schedule(epoch)
            if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) or not math.isfinite(lr) \
                    or lr < 0:
                raise ValueError(f"LearningRateScheduler: the schedule returned {lr!r} for epoch {epoch}; expected a "
                                 "finite float >= 0")
            opt.lr = float(lr)
        if self.verbose:
            print(f"LearningRateScheduler: epoch {epoch + 1}: lr = {opt.lr:.6g}")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["lr"] = float(self.model.optimizer.lr)


class ReduceLROnPlateau(_Monitoring):
    """Multiply the lr by `factor` when `monitor` has not improved by `min_delta` for more than
    `patience` epochs (gpunn.optim.schedules.ReduceLROnPlateau's rule), then wait `cooldown`
    epochs; never below `min_lr`. The lr is logged as "lr"."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, mode: str = "auto",
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0, verbose: int = 0) -> None:
        super().__init__(monitor, mode, min_delta, "ReduceLROnPlateau")
        where = "ReduceLROnPlateau"
        self.factor = real_arg(factor, "factor", where, 0, 1, lo_open=True, hi_open=True, want="a float in (0, 1)",
                               numpy=False)
        self.patience = int_arg(patience, "patience", where, 0)
        self.cooldown = int_arg(cooldown, "cooldown", where, 0)
        self.min_lr = real_arg(min_lr, "min_lr", where, 0, want="a finite float >= 0", numpy=False)
        self.verbose = verbose
        self._impl: Any = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._impl = Plateau(self.model.optimizer, mode=self.mode, factor=self.factor, patience=self.patience,
                             min_lr=self.min_lr, threshold=self.min_delta, threshold_mode="abs",
                             cooldown=self.cooldown)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = self._current(logs)
        if value is not None and math.isfinite(value):
            self._impl.optimizer = self.model.optimizer
            old = float(self.model.optimizer.lr)
            new = self._impl.step(value)
            if self.verbose and new < old:
                print(f"ReduceLROnPlateau: epoch {epoch + 1}: lr {old:.6g} -> {new:.6g}")
        if logs is not None:
            logs["lr"] = float(self.model.optimizer.lr)


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or inf (the update of that batch is skipped)."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped_batch: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.stopped_batch = (self._epoch, batch)
            print(f"TerminateOnNaN: loss is {loss} at epoch {self._epoch + 1}, batch {batch}; stopping",
                  file=sys.stderr)
            self.model.stop_training = True


class CSVLogger(Callback):
    """Append one row per epoch (epoch plus every logged value) to a CSV file."""

    rank_zero_only = True  # writes: on rank 0 only in data-parallel training

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)) or not os.fspath(filename):
            raise ValueError(f"CSVLogger: argument 'filename' must be a non-empty path, got {filename!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: argument 'separator' must be one character, got {separator!r}")
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self._keys: list[str] | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        exists = os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._keys = None
        if self.append and exists:
            with open(self.filename, newline="") as fh:
                header = next(csv.reader(fh, delimiter=self.separator), None)
            self._keys = header[1:] if header else None
        if not self.append:
            with open(self.filename, "w", newline=""):
                pass  # start the file afresh, as the run starts

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # The file is opened per row, not held for the whole run: a fit that raises (or a Ctrl-C)
        # never reaches on_train_end, and a held handle would leak with the last rows unflushed.
        logs = logs or {}
        with open(self.filename, "a", newline="") as fh:
            writer = csv.writer(fh, delimiter=self.separator)
            if self._keys is None:
                self._keys = sorted(logs)
                writer.writerow(["epoch", *self._keys])
            writer.writerow([epoch, *(logs.get(k, "") for k in self._keys)])


class ProgbarLogger(Callback):
    """verbose=1: a tqdm progress bar per epoch (a line per epoch when tqdm is missing);
    verbose=2: one line per epoch."""

    rank_zero_only = True  # writes: on rank 0 only in data-parallel training

    def __init__(self, verbose: int = 1, file: Any = None) -> None:
        super().__init__()
        self.verbose = verbose
        self.file = file
        self._bar: Any = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        if self.verbose == 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=self.params.get("steps"), desc=f"Epoch {epoch + 1}/{self.params.get('epochs')}",
                             unit="batch", leave=True, file=self.file or sys.stderr, dynamic_ncols=True)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if logs and "loss" in logs:
                self._bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        text = " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items())
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)
            self._bar.close()
            self._bar = None
        else:
            print(f"Epoch {epoch + 1}/{self.params.get('epochs')} - {text}", file=self.file or sys.stdout)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
