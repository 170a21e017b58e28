"""TensorBoard: a callback that writes fit()'s logs as TensorBoard event files through tensorboardX.

The layout follows Keras's, so a TensorBoard pointed at `log_dir` shows the training and the
validation curves of one quantity on one chart:

- `log_dir/train`: per epoch (step = the epoch index) `epoch_<name>` for the loss and every metric
  in the logs, and `epoch_learning_rate` (`model.optimizer.lr` at the epoch's end, the value a
  LearningRateScheduler logs as "lr"); with `update_freq=N`, every N batches (step = the number of
  batches trained so far) `batch_<name>` for the batch's loss and metrics; with
  `histogram_freq=k`, every k epochs, `weights/<parameter>` and `gradients/<parameter>` histograms
  of every parameter (the gradients are the epoch's last batch's); with `write_diagnostics`, the
  TrainingMonitor's records as `diagnostics/grad_norm/<layer>`,
  `diagnostics/activation_p<percentile>/<layer>` and `diagnostics/dead_relu/<layer>` (step = the
  batches trained when the record was taken).
- `log_dir/validation`: per epoch `epoch_<name>` for each "val_<name>" of the logs (created only
  when there is validation data).

Parameter and layer names become tags with tensorboardX's rule: characters other than letters,
digits, "_", "-", "/" and "." become "_" (layer "0:dense" is tag ".../0_dense"). Non-finite values
are left out of a histogram (TensorBoard cannot bin them); a parameter with none left is skipped.

The writers are opened at on_train_begin and closed at on_train_end, which writes everything still
pending. In between, tensorboardX writes from a background thread and flushes the file every
`flush_secs` seconds (10 here, so a running TensorBoard follows the fit); its `flush()` does not
wait for that thread, so only a closed writer's file is known to be complete. fit() does not call
on_train_end when it raises: call `close()` then, or use the callback as a context manager.
"""
from __future__ import annotations

import os
import re
import uuid
from typing import Any

import numpy as np

from gpunn._checks import int_arg, is_real
from gpunn.backend import to_host
from gpunn.callbacks.base import Callback
from gpunn.callbacks.monitor import TrainingMonitor

#: tensorboardX replaces these characters in a tag by "_" (and logs it): we do it first, so the
#: documented tag is the written one
_INVALID_TAG_CHARACTERS = re.compile(r"[^-/\w\.]")
#: logged keys that are not curves of their own: the lr is written from the optimizer, "size" is
#: the batch's sample count
_SKIPPED_KEYS = frozenset({"lr", "learning_rate", "size"})


def _tag(name: str) -> str:
    return _INVALID_TAG_CHARACTERS.sub("_", name)


def _summary_writer_class() -> Any:
    try:
        from tensorboardX import SummaryWriter
    except ImportError as exc:
        raise ImportError("TensorBoard: the tensorboardX package is not installed; install gpunn's tensorboard "
                          "extra: pip install 'gpunn[tensorboard]'") from exc
    return SummaryWriter


class TensorBoard(Callback):
    """Write the losses, metrics, learning rate, histograms and diagnostics of a fit to `log_dir`.

    - `log_dir`: the folder (created if missing) that receives the `train` and `validation`
      subfolders.
    - `histogram_freq`: every this many epochs, weight and gradient histograms of every parameter;
      0 (the default) writes none.
    - `update_freq`: "epoch" (the default) writes only per-epoch values; "batch" or an int N >= 1
      also writes the batch losses and metrics every N batches ("batch" is 1).
    - `write_diagnostics`: False (the default); True composes a TrainingMonitor() (one record per
      epoch) that this callback drives; or a TrainingMonitor that is also in fit's callbacks, whose
      records this callback writes (configure its frequency and probe there).
    """

    rank_zero_only = True  # writes: on rank 0 only in data-parallel training

    def __init__(self, log_dir: str | os.PathLike, histogram_freq: int = 0, update_freq: str | int = "epoch",
                 write_diagnostics: bool | TrainingMonitor = False) -> None:
        super().__init__()
        where = "TensorBoard"
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"{where}: argument 'log_dir' must be a folder path (str or os.PathLike), got "
                            f"{type(log_dir).__name__}")
        log_dir = os.fspath(log_dir)
        if not isinstance(log_dir, str) or not log_dir.strip():
            raise ValueError(f"{where}: argument 'log_dir' must be a non-empty folder path, got {log_dir!r}")
        if os.path.exists(log_dir) and not os.path.isdir(log_dir):
            raise ValueError(f"{where}: argument 'log_dir' must be a folder, but {log_dir!r} is an existing file")
        int_arg(histogram_freq, "histogram_freq", where, 0, want="an int >= 0 (epochs; 0 for no histograms)",
                numpy=False)
        if update_freq == "epoch":
            batch_every = None
        elif update_freq == "batch":
            batch_every = 1
        elif isinstance(update_freq, str):
            raise ValueError(f"{where}: argument 'update_freq' must be 'epoch', 'batch' or a positive int "
                             f"(batches), got {update_freq!r}")
        else:
            batch_every = int_arg(update_freq, "update_freq", where, 1,
                                  want="'epoch', 'batch' or a positive int (batches)", numpy=False)
        if isinstance(write_diagnostics, TrainingMonitor):
            monitor, self._drives_monitor = write_diagnostics, False
        elif isinstance(write_diagnostics, bool):
            monitor, self._drives_monitor = (TrainingMonitor() if write_diagnostics else None), True
        else:
            raise TypeError(f"{where}: argument 'write_diagnostics' must be a bool or a gpunn TrainingMonitor, got "
                            f"{type(write_diagnostics).__name__}")
        self._writer_class = _summary_writer_class()  # refused here, before training, when tensorboardX is missing
        self.log_dir = log_dir
        self.histogram_freq = int(histogram_freq)
        self.update_freq = update_freq
        self.monitor = monitor
        self._batch_every = batch_every
        self._writers: dict[str, Any] = {}
        self._step = 0  # batches trained by fits with this callback: a second fit continues the curves
        self._written = 0  # how many of the monitor's records are written

    # -- the writers --------------------------------------------------------------------------------
    def _writer(self, name: str) -> Any:
        """The SummaryWriter of subfolder `name` ("train" or "validation"), opened on first use."""
        writer = self._writers.get(name)
        if writer is None:
            # tensorboardX names a file by the second and the host and opens it with "wb": a second
            # writer within the same second (a second fit, another run) would wipe the first one's
            # file, hence a unique suffix
            writer = self._writer_class(os.path.join(self.log_dir, name), flush_secs=10,
                                        filename_suffix=f".{os.getpid()}.{uuid.uuid4().hex[:12]}")
            self._writers[name] = writer
        return writer

    def close(self) -> None:
        """Flush and close the writers (on_train_end does it; call it when fit raised). Idempotent."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            writer.close()

    def __enter__(self) -> TensorBoard:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- what is written ----------------------------------------------------------------------------
    def _scalars(self, writer: str, prefix: str, logs: dict, step: int, strip: str = "") -> None:
        for key, value in logs.items():
            if key in _SKIPPED_KEYS or not key.startswith(strip) or isinstance(value, bool) or not is_real(value):
                continue
            self._writer(writer).add_scalar(_tag(f"{prefix}{key[len(strip):]}"), float(value), step)

    def _learning_rate(self) -> float | None:
        lr = getattr(getattr(self.model, "optimizer", None), "lr", None)
        return float(lr) if is_real(lr) and not isinstance(lr, bool) else None

    def _histograms(self, epoch: int) -> None:
        writer = self._writer("train")
        for name, param in self.model.named_parameters():
            for kind, array in (("weights", param.data), ("gradients", param.grad)):
                if array is None:
                    continue
                values = np.asarray(to_host(array), dtype=np.float64).ravel()
                values = values[np.isfinite(values)]
                if values.size:
                    writer.add_histogram(_tag(f"{kind}/{name}"), values, epoch)

    def _diagnostics(self) -> None:
        """Write the monitor's records taken since the last call, each at the step it was taken."""
        if self.monitor is None:
            return
        records = self.monitor.records
        pct_names = [f"activation_p{p:g}" for p in self.monitor.percentiles]
        writer = self._writer("train") if len(records) > self._written else None
        for record in records[self._written:]:
            step = int(record["step"])
            for layer, norm in record["grad_norms"].items():
                writer.add_scalar(_tag(f"diagnostics/grad_norm/{layer}"), norm, step)
            for layer, values in record["percentiles"].items():
                for pct, value in zip(pct_names, values):
                    writer.add_scalar(_tag(f"diagnostics/{pct}/{layer}"), value, step)
            for layer, share in record["dead_relu"].items():
                writer.add_scalar(_tag(f"diagnostics/dead_relu/{layer}"), share, step)
        self._written = len(records)

    # -- hooks --------------------------------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        super().set_model(model)
        if self.monitor is not None and self._drives_monitor:
            self.monitor.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        if self.monitor is not None and self._drives_monitor:
            self.monitor.set_params(params)

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.monitor is not None:
            if not self._drives_monitor and self.monitor.model is not self.model:
                raise ValueError("TensorBoard: the TrainingMonitor given as 'write_diagnostics' is not among fit's "
                                 "callbacks; pass it in callbacks=[...] too, or pass write_diagnostics=True")
            self._written = len(self.monitor.records)  # records of earlier fits are not this run's
            if self._drives_monitor:
                self.monitor.on_train_begin(logs)
        os.makedirs(self.log_dir, exist_ok=True)
        self._writer("train")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.monitor is not None and self._drives_monitor:
            self.monitor.on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._step += 1
        if self.monitor is not None and self._drives_monitor:
            self.monitor.on_train_batch_end(batch, logs)
        if self._batch_every is not None and self._step % self._batch_every == 0:
            self._scalars("train", "batch_", logs or {}, self._step)
        self._diagnostics()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.monitor is not None and self._drives_monitor:
            self.monitor.on_epoch_end(epoch, logs)
        logs = logs or {}
        self._scalars("train", "epoch_", {k: v for k, v in logs.items() if not k.startswith("val_")}, epoch)
        self._scalars("validation", "epoch_", logs, epoch, strip="val_")
        lr = self._learning_rate()
        if lr is not None:
            self._writer("train").add_scalar("epoch_learning_rate", lr, epoch)
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0:
            self._histograms(epoch)
        self._diagnostics()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.monitor is not None and self._drives_monitor:
            self.monitor.on_train_end(logs)
        self._diagnostics()  # a monitor after this callback in the list records after our epoch end
        self.close()
