"""TrainingMixin: the Keras-style model API that `gpunn.Sequential` inherits.

compile / fit / evaluate / predict / train_on_batch / test_on_batch, summary, moving a model
between backends, freezing for transfer learning, and save / load. The container (layers,
forward, backward) is gpunn.layers.container.Chain; gpunn/train/sequential.py
joins the two, and this file only drives the container.

Placement: the model holds a backend like any layer (`model.backend`: the one current when it was
built, see gpunn.layers.base), and `to(name)` moves it, its layers and its optimizer. The training
loop (fit, evaluate, predict, train_on_batch, test_on_batch, save/load) runs with the model's
backend current, so the loss, the regularization penalties and the metrics' inputs are computed
there; losses, regularizers and constraints themselves compute on whatever backend is current.

Reproducibility: the shuffle order of epoch e depends only on (shuffle_seed, e), and the seed is
saved in checkpoints, so a run resumed with fit(..., initial_epoch=model.epoch) sees the same
batches as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from gpunn._checks import check_finite, int_arg, real_arg
from gpunn.backend import get_backend, to_host, use_backend
from gpunn.backend.base import native_byte_order
from gpunn.callbacks.base import CallbackList
from gpunn.callbacks.builtin import ProgbarLogger
from gpunn.callbacks.history import History
from gpunn.io.checkpoint import load_weights, optimizer_config, save_model, save_weights
from gpunn.io.config import model_to_config
from gpunn.layers.base import backend_named
from gpunn.layers.normalization import BatchNorm
from gpunn.losses import Loss, get_loss
from gpunn.metrics import get_metric
from gpunn.optim import Optimizer, get_optimizer
from gpunn.random import host_rng
from gpunn.regularizers import regularization_loss

_NO_METRICS: tuple = ()


_int_arg = int_arg  # fit's epochs, batch sizes: "{where}: argument '{name}' must be an int >= {minimum}"


def _is_batch_iterable(x: Any) -> bool:
    """A DataLoader or any re-iterable of (x, y) batches, as opposed to an array."""
    if isinstance(x, list):  # a list of (x, y) pairs, not a nested list of numbers
        return bool(x) and all(isinstance(b, tuple) and len(b) == 2 and hasattr(b[0], "shape") for b in x)
    return hasattr(x, "__iter__") and not hasattr(x, "shape") and not isinstance(x, (tuple, dict, str))


def _is_one_shot(x: Any) -> bool:
    """An iterator (a generator, iter(loader), ...): exhausted after one pass. isinstance rather
    than `iter(x) is x`, because iter() on a DataLoader would start an epoch and its thread."""
    return isinstance(x, Iterator)


_REITERABLE = ("pass a DataLoader, or a re-iterable whose __iter__ starts a new pass (a list of (x, y) batches, "
               "or an object whose __iter__ is a generator function)")


def _one_shot_error(x: Any, name: str, where: str, passes: int) -> ValueError:
    return ValueError(f"{where}: argument '{name}' is a one-shot iterator ({type(x).__name__}), exhausted after one "
                      f"pass, but the fit needs {passes} passes over it; {_REITERABLE}, or fit one epoch at a time")


def _no_batches_error(data: Any, what: str, where: str, epoch: int | None = None, again: bool = False) -> ValueError:
    """`again`: an earlier epoch of this fit did get batches from `data`."""
    when = f" in epoch {epoch + 1}" if epoch is not None else ""
    if _is_one_shot(data):
        hint = (f"; it is a one-shot iterator ({type(data).__name__}), and an iterator is exhausted after one pass - "
                f"{_REITERABLE}")
    elif again:
        hint = "; its __iter__ returned an exhausted iterator instead of starting a new pass - " + _REITERABLE
    else:
        hint = ""
    return ValueError(f"{where}: the {what} yielded no batches{when}{hint}")


def _walk(layer: Any) -> Iterator[Any]:
    """`layer` and its sublayers at any depth."""
    yield layer
    for child in layer.children.values():
        yield from _walk(child)


def _batchnorms_on_single_values(model: Any) -> list[Any]:
    """The built BatchNorm layers that would see one value per channel in a training batch of one
    sample: (N, C) or (N, C, 1) inputs, normalized with batch statistics."""
    return [m for m in _walk(model) if isinstance(m, BatchNorm) and m.built
            and (m.trainable or not m.track_running_stats) and math.prod(m.input_shape[1:]) == 1]


def _nearest_batch_size(n: int, batch_size: int) -> int | None:
    """The batch size nearest `batch_size` that leaves no batch of one of `n` samples."""
    for delta in range(1, n):
        for b in (batch_size - delta, batch_size + delta):
            if 2 <= b <= n and n % b != 1:
                return b
    return None


def _as_array(a: Any, name: str, where: str) -> Any:
    if isinstance(a, (list, tuple)):
        a = np.asarray(a)
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{where}: argument '{name}' must be an array, got {type(a).__name__}")
    if len(a.shape) == 0 or a.shape[0] == 0:
        raise ValueError(f"{where}: argument '{name}' must hold at least one sample, got shape {tuple(a.shape)}")
    return a


def check_xy(x: Any, y: Any, where: str, need_y: bool = True) -> tuple[Any, Any]:
    """Arrays x (floating point, finite) and y with one entry per sample, in native byte order
    (swapped here once, not in every batch). A float x of another dtype than the model's is
    cast batch by batch (see Layer._as_input)."""
    x = native_byte_order(_as_array(x, "x", where))
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"{where}: argument 'x' must be a floating-point array, got dtype {x.dtype}; convert it, "
                        "e.g. x.astype('float32') / 255")
    check_finite(x, "x", where)  # on any backend's array: one Inf makes every loss after it Inf or NaN
    if y is None:
        if need_y:
            raise ValueError(f"{where}: argument 'y' is required when 'x' is an array")
        return x, None
    y = native_byte_order(_as_array(y, "y", where))
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{where}: arguments 'x' and 'y' must have the same number of samples, got "
                         f"{x.shape[0]} and {y.shape[0]}")
    return x, y


class TrainingMixin:
    """Model methods for a layer container with forward/backward/parameters (gpunn.Sequential)."""

    # class-level defaults: the container's __init__ need not know about training
    optimizer: Any = None
    loss: Any = None
    metric_fns: tuple = _NO_METRICS
    compiled: bool = False
    epoch: int = 0
    shuffle_seed: int | None = None
    stop_training: bool = False
    history: Any = None
    #: get_config() returns the whole architecture (for model_from_config), not constructor kwargs
    config_is_architecture = True

    # -- backend placement ----------------------------------------------------------------------
    def _backend_scope(self) -> contextlib.AbstractContextManager:
        """The model's backend made current, around the training loop (the loss runs there)."""
        backend = self.backend
        return contextlib.nullcontext() if get_backend() is backend else use_backend(backend)

    def to(self, backend_name: str) -> TrainingMixin:
        """Move parameters, buffers and the optimizer's state (moments and step count kept) to
        `backend_name` ("numpy", "cupy", "emulated"), and make that backend the owner of the model,
        of every sublayer and of the optimizer: every later call - fit, evaluate, predict, and a
        bare forward(), backward() or optimizer.step() too - runs there. A bad name (not a str,
        unknown, or a backend that cannot run here) raises an error naming the argument and
        changes nothing. Returns the model."""
        new = backend_named(backend_name, f"{self.name}.to")  # before any change
        opt = self.optimizer
        if opt is not None and callable(getattr(opt, "_move_to", None)):
            opt._move_to(new)  # first: the parameters it packed become views on `new`, which _place keeps
        self._place(new)
        return self

    def _rebuild_optimizer(self, opt: Any) -> Any:
        """A fresh optimizer of the same class and settings over this model (re-packed on first
        use), on the model's backend: an optimizer over a model takes the model's."""
        cfg = optimizer_config(opt)
        new = type(opt)(self, **cfg["config"])
        new.lr = opt.lr
        return new

    # -- compile --------------------------------------------------------------------------------
    def compile(self, loss: Any, optimizer: Any = "adam",
                metrics: Iterable[Any] | str | None = None, **optimizer_kwargs: Any) -> None:
        """Set the loss, the optimizer (a name such as "adam", with `optimizer_kwargs` like lr=1e-3,
        or an Optimizer built on this model's parameters) and the metrics ("accuracy", ...).

        The metrics read the model's output as the loss declares it (`Loss.from_logits`): with a
        loss on logits "binary_accuracy" thresholds at 0, otherwise at 0.5."""
        where = "compile"
        try:
            loss_obj = get_loss(loss)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if not isinstance(loss_obj, Loss):
            raise TypeError(f"{where}: argument 'loss' must be a name or a gpunn Loss, got {type(loss).__name__}")
        if isinstance(optimizer, Optimizer):
            if optimizer_kwargs:
                raise ValueError(f"{where}: optimizer settings {sorted(optimizer_kwargs)} given with an Optimizer "
                                 "instance; set them on the instance instead")
            opt = optimizer
        elif isinstance(optimizer, str):
            try:
                opt = get_optimizer(optimizer, self, **optimizer_kwargs)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        else:
            raise TypeError(f"{where}: argument 'optimizer' must be a name such as 'adam' or a gpunn Optimizer, "
                            f"got {type(optimizer).__name__}")
        if metrics is None:
            metrics = []
        elif isinstance(metrics, str) or callable(metrics):
            metrics = [metrics]
        # what the model outputs, as the loss declares it (Loss.from_logits): binary_accuracy
        # thresholds logits at 0 and other values at 0.5
        from_logits = bool(loss_obj.from_logits)
        fns = []
        for m in metrics:
            try:
                fns.append(get_metric(m, from_logits=from_logits))
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"{where}: {exc}") from None
        names = [n for n, _ in fns]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"{where}: argument 'metrics' has duplicate names {names}")
        self.loss, self.optimizer, self.metric_fns = loss_obj, opt, tuple(fns)
        if self.shuffle_seed is None:
            self.shuffle_seed = int(host_rng().integers(2**62))
        self.compiled = True

    def _require_compiled(self, where: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"{where}: the model is not compiled; call compile(loss=..., optimizer=..., "
                               "metrics=[...]) first")

    def _sync_optimizer(self) -> None:
        """Re-create the optimizer when layers were frozen or unfrozen after it packed its buffers
        (it only updates the parameters it packed): fresh moments, like Keras's re-compile."""
        opt = self.optimizer
        if isinstance(opt, Optimizer) and opt.backend is not self.backend:
            opt._move_to(self.backend)  # e.g. an Optimizer over a parameter list, built under another backend
        packed = getattr(opt, "params", None)
        if not packed:
            return
        now = [id(p) for p in self.parameters() if p.trainable]
        if now != [id(p) for p in packed]:
            self.optimizer = self._rebuild_optimizer(opt)

    # -- one batch ------------------------------------------------------------------------------
    def _objective(self, value: float) -> float:
        reg = getattr(self, "regularization_loss", None)
        if callable(reg):
            return value + float(reg())
        return value + float(regularization_loss(self))

    def _metric_values(self, y: Any, out: Any) -> dict[str, float]:
        if not self.metric_fns:
            return {}
        host_out, host_y = to_host(out), to_host(y)
        return {name: float(fn(host_y, host_out)) for name, fn in self.metric_fns}

    def _train_batch(self, xb: Any, yb: Any) -> dict[str, float]:
        self.zero_grad()  # every parameter, frozen ones too, so their grads never pile up
        out = self.forward(xb, training=True)
        loss = self._objective(self.loss.forward(out, yb))
        logs = {"loss": loss}
        if math.isfinite(loss):
            self.backward(self.loss.backward(), need_input_grad=False)  # nobody reads d(loss)/d(input)
            self.optimizer.step()
            logs.update(self._metric_values(yb, out))
        return logs

    def _test_batch(self, xb: Any, yb: Any) -> dict[str, float]:
        out = self.forward(xb, training=False)
        logs = {"loss": self._objective(self.loss.forward(out, yb))}
        logs.update(self._metric_values(yb, out))
        return logs

    def _result(self, logs: dict[str, float], return_dict: bool) -> Any:
        if return_dict:
            return dict(logs)
        if not self.metric_fns:
            return logs["loss"]
        return [logs["loss"], *(logs[n] for n, _ in self.metric_fns)]

    def train_on_batch(self, x: Any, y: Any, return_dict: bool = False) -> Any:
        """One update on (x, y); returns the loss, or [loss, *metrics] when metrics were compiled."""
        where = "train_on_batch"
        self._require_compiled(where)
        x, y = check_xy(x, y, where)
        with self._backend_scope():
            self._sync_optimizer()
            return self._result(self._train_batch(x, y), return_dict)

    def test_on_batch(self, x: Any, y: Any, return_dict: bool = False) -> Any:
        """Loss (and metrics) on (x, y) in inference mode, without an update."""
        where = "test_on_batch"
        self._require_compiled(where)
        x, y = check_xy(x, y, where)
        with self._backend_scope():
            return self._result(self._test_batch(x, y), return_dict)

    # -- batching -------------------------------------------------------------------------------
    @staticmethod
    def _batches(x: Any, y: Any, batch_size: int, order: np.ndarray | None) -> Iterator[tuple[Any, Any]]:
        n = x.shape[0]
        for start in range(0, n, batch_size):
            if order is None:
                sl = slice(start, start + batch_size)
                yield x[sl], (y[sl] if y is not None else None)
            else:
                idx = order[start:start + batch_size]
                yield x[idx], (y[idx] if y is not None else None)

    def _epoch_order(self, n: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([int(self.shuffle_seed or 0), int(epoch)]).permutation(n)

    def _run_eval(self, data: Any, batch_size: int, where: str = "evaluate") -> dict[str, float]:
        """Sample-weighted means of loss and metrics over arrays (x, y) or a batch iterable."""
        totals: dict[str, float] = {}
        seen = 0
        batches = data if _is_batch_iterable(data) else self._batches(data[0], data[1], batch_size, None)
        for xb, yb in batches:
            n = int(xb.shape[0])
            for k, v in self._test_batch(xb, yb).items():
                totals[k] = totals.get(k, 0.0) + v * n
            seen += n
        if seen == 0:
            raise _no_batches_error(data, "data", where)
        return {k: v / seen for k, v in totals.items()}

    # -- fit / evaluate / predict ---------------------------------------------------------------
    def fit(self, x: Any, y: Any = None, epochs: int = 1, batch_size: int = 32, validation_data: Any = None,
            validation_split: float = 0.0, shuffle: bool = True, verbose: int = 1, callbacks: Any = None,
            initial_epoch: int = 0) -> Any:
        """Train for epochs initial_epoch..epochs-1; returns a History whose .history maps
        "loss", each metric and their "val_" forms to per-epoch lists.

        `x` may also be a DataLoader (or any re-iterable of (x, y) batches) with y=None."""
        where = "fit"
        self._require_compiled(where)
        epochs = _int_arg(epochs, "epochs", where, 0)
        batch_size = _int_arg(batch_size, "batch_size", where, 1)
        initial_epoch = _int_arg(initial_epoch, "initial_epoch", where, 0)
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"{where}: argument 'verbose' must be 0 (silent), 1 (progress bar) or 2 (one line per "
                             f"epoch), got {verbose!r}")
        validation_split = real_arg(validation_split, "validation_split", where, 0.0, 1.0, hi_open=True,
                                    want="a float in [0, 1)", numpy=False)
        loader = _is_batch_iterable(x)
        if loader:
            if y is not None:
                raise ValueError(f"{where}: argument 'y' must be None when 'x' yields (x, y) batches")
            if validation_split:
                raise ValueError(f"{where}: argument 'validation_split' needs array data; pass validation_data")
            if _is_one_shot(x) and epochs - initial_epoch > 1:
                raise _one_shot_error(x, "x", where, epochs - initial_epoch)
            steps = len(x) if hasattr(x, "__len__") else None
            n_train = getattr(x, "num_samples", None)
        else:
            x, y = check_xy(x, y, where)
            if validation_split:
                n_val = int(x.shape[0] * validation_split)
                if n_val < 1 or n_val >= x.shape[0]:
                    raise ValueError(f"{where}: argument 'validation_split'={validation_split} leaves "
                                     f"{n_val} of {x.shape[0]} samples for validation; need at least one on each side")
                if validation_data is not None:
                    raise ValueError(f"{where}: give 'validation_data' or 'validation_split', not both")
                # the last samples, taken before shuffling, as Keras does
                validation_data = (x[-n_val:], y[-n_val:])
                x, y = x[:-n_val], y[:-n_val]
            n_train = int(x.shape[0])
            steps = -(-n_train // batch_size)
        if validation_data is not None and not _is_batch_iterable(validation_data):
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError(f"{where}: argument 'validation_data' must be a pair (x_val, y_val) or a batch "
                                 f"iterable, got {type(validation_data).__name__}")
            validation_data = check_xy(validation_data[0], validation_data[1], f"{where} (validation_data)")
        elif _is_one_shot(validation_data) and epochs - initial_epoch > 1:
            raise _one_shot_error(validation_data, "validation_data", where, epochs - initial_epoch)
        self._check_last_batch(x, loader, n_train, batch_size, where)
        if callbacks is None:
            callbacks = []
        elif not isinstance(callbacks, (list, tuple)):
            callbacks = [callbacks]
        history = History()
        # History after the user's callbacks, so it records what they add to the logs (e.g. "lr")
        cbs = CallbackList([*callbacks, history] + ([ProgbarLogger(verbose)] if verbose else []))
        cbs.set_model(self)
        cbs.set_params({"epochs": epochs, "steps": steps, "samples": n_train, "batch_size": batch_size,
                        "verbose": verbose, "do_validation": validation_data is not None,
                        "metrics": ["loss", *(n for n, _ in self.metric_fns)]})
        self.history = history
        self.stop_training = False
        logs: dict[str, float] = {}
        with self._backend_scope():
            self._sync_optimizer()
            cbs.on_train_begin()
            for epoch in range(initial_epoch, epochs):
                cbs.on_epoch_begin(epoch)
                logs = self._fit_epoch(x, y, epoch, batch_size, shuffle, loader, cbs, again=epoch > initial_epoch)
                if validation_data is not None and not self.stop_training:
                    val = self._run_eval(validation_data, batch_size, f"{where} (validation_data)")
                    logs.update({f"val_{k}": v for k, v in val.items()})
                self.epoch = epoch + 1
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
            cbs.on_train_end(logs)
        return history

    def _fit_epoch(self, x: Any, y: Any, epoch: int, batch_size: int, shuffle: bool, loader: bool,
                   cbs: Any, again: bool = False) -> dict[str, float]:
        if loader:
            if hasattr(x, "set_epoch"):
                x.set_epoch(epoch)
            batches = iter(x)
        else:
            order = self._epoch_order(x.shape[0], epoch) if shuffle else None
            batches = self._batches(x, y, batch_size, order)
        totals: dict[str, float] = {}
        seen = 0
        for step, (xb, yb) in enumerate(batches):
            cbs.on_train_batch_begin(step)
            self._last_batch_x = xb  # for TrainingMonitor's activation probe
            batch_logs = self._train_batch(xb, yb)
            n = int(xb.shape[0])
            for k, v in batch_logs.items():
                totals[k] = totals.get(k, 0.0) + v * n
            seen += n
            cbs.on_train_batch_end(step, {**batch_logs, "size": n})
            if self.stop_training:
                break
        if seen == 0:
            raise _no_batches_error(x, "training data", "fit", epoch, again)
        return {k: v / seen for k, v in totals.items()}

    def _check_last_batch(self, x: Any, loader: bool, n_train: int | None, batch_size: int, where: str) -> None:
        """Refuse, before any training, batches of one sample when a BatchNorm would then normalize
        one value per channel: such a batch has no variance. PyTorch raises "Expected more than 1
        value per channel when training" at that step; checking here loses no epoch's work to it.
        Checked where the batch sizes are known: arrays, and a DataLoader once the model is built."""
        if loader:
            if getattr(x, "drop_last", True) or not getattr(self, "built", False):
                return
            batch_size = getattr(x, "batch_size", None)
        if not isinstance(n_train, int) or not isinstance(batch_size, int):
            return
        if batch_size != 1 and n_train % batch_size != 1:
            return
        if not getattr(self, "built", False):
            if not any(isinstance(m, BatchNorm) for m in _walk(self)):
                return
            with self._backend_scope():  # build from one sample, as the first batch would (no state changes)
                self.forward(x[:1], training=False)
        found = _batchnorms_on_single_values(self)
        if not found:
            return
        names = ", ".join(repr(bn.name) for bn in found)
        which = "every batch" if batch_size == 1 else "the last batch of every epoch"
        b = _nearest_batch_size(n_train, batch_size)
        fix = (f"pass a batch_size that leaves no batch of one sample (n % batch_size != 1{f', e.g. {b}' if b else ''})"
               ", drop a sample, or use DataLoader(..., drop_last=True)") if n_train > 1 else "train on more samples"
        raise ValueError(f"{where}: {which} would hold 1 sample ({n_train} samples, batch_size={batch_size}), and "
                         f"BatchNorm {names} cannot estimate a variance from one value per channel in training; {fix}")

    def evaluate(self, x: Any, y: Any = None, batch_size: int = 32, verbose: int = 0,
                 return_dict: bool = False) -> Any:
        """Loss (plus compiled metrics, as [loss, *metrics]) in inference mode; sample-weighted means."""
        where = "evaluate"
        self._require_compiled(where)
        batch_size = _int_arg(batch_size, "batch_size", where, 1)
        data = x if _is_batch_iterable(x) and y is None else check_xy(x, y, where)
        with self._backend_scope():
            logs = self._run_eval(data, batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return self._result(logs, return_dict)

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """The model's outputs (inference mode) for every sample of `x`, as one host NumPy array."""
        where = "predict"
        batch_size = _int_arg(batch_size, "batch_size", where, 1)
        if _is_batch_iterable(x):
            parts = []
            with self._backend_scope():
                for batch in x:
                    xb = batch[0] if isinstance(batch, (tuple, list)) else batch
                    parts.append(to_host(self.forward(xb, training=False)))
        else:
            x, _ = check_xy(x, None, where, need_y=False)
            with self._backend_scope():
                parts = [to_host(self.forward(xb, training=False))
                         for xb, _ in self._batches(x, None, batch_size, None)]
        if not parts:
            raise ValueError(f"{where}: argument 'x' yielded no samples")
        return np.concatenate(parts, axis=0)

    # -- transfer learning ----------------------------------------------------------------------
    def _layer_index(self, ref: Any, name: str, where: str) -> int:
        layers = self.layers
        if isinstance(ref, str):
            matches = [i for i, layer in enumerate(layers) if layer.name == ref]
            if len(matches) != 1:
                raise ValueError(f"{where}: argument '{name}' names layer {ref!r}, which matches {len(matches)} "
                                 f"layers; names are {[layer.name for layer in layers]}")
            return matches[0]
        if isinstance(ref, bool) or not isinstance(ref, (int, np.integer)) or not -len(layers) <= ref <= len(layers):
            raise ValueError(f"{where}: argument '{name}' must be a layer name or an index in "
                             f"[{-len(layers)}, {len(layers)}], got {ref!r}")
        return int(ref) if ref >= 0 else len(layers) + int(ref)

    def freeze(self, until: int | str | None = None) -> TrainingMixin:
        """Freeze layers[:until] (all when None; `until` may be a layer name, itself left trainable):
        the optimizer skips their parameters and their BatchNorm layers use running statistics."""
        stop = len(self.layers) if until is None else self._layer_index(until, "until", "freeze")
        for layer in self.layers[:stop]:
            layer.trainable = False
        return self

    def unfreeze(self, start: int | str | None = None) -> TrainingMixin:
        """Make layers[start:] trainable again (all when None), e.g. the top block for fine-tuning."""
        begin = 0 if start is None else self._layer_index(start, "start", "unfreeze")
        for layer in self.layers[begin:]:
            layer.trainable = True
        return self

    def pop(self) -> Any:
        """Remove and return the last layer (to replace a head)."""
        if not self.layers:
            raise IndexError("pop: the model has no layers")
        layer = self.layers.pop()
        del self.children[str(len(self.layers))]
        self.built = False
        self.output_shape = None
        return layer

    # -- summary --------------------------------------------------------------------------------
    def summary(self, print_fn: Any = print) -> str:
        """A table of each layer's name, output shape and parameter count, with the totals."""
        if not self.built:
            if self.input_shape is None:
                raise RuntimeError("summary: the model is not built; give the first layer input_shape=..., "
                                   "or call it on data first")
            self.build(self.input_shape)
        rows = [(f"{layer.name} ({type(layer).__name__})", str(("N", *layer.output_shape)), layer.count_params())
                for layer in self.layers]
        trainable = sum(p.size for p in self.parameters() if p.trainable)
        total = self.count_params()
        w0 = max(len("Layer (type)"), *(len(r[0]) for r in rows)) + 2
        w1 = max(len("Output shape"), *(len(r[1]) for r in rows)) + 2
        rule = "=" * (w0 + w1 + 12)
        lines = [f"Model: {self.name}", rule, f"{'Layer (type)':<{w0}}{'Output shape':<{w1}}{'Params':>12}", rule]
        lines += [f"{a:<{w0}}{b:<{w1}}{c:>12,}" for a, b, c in rows]
        lines += [rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}", rule]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    # -- saving ---------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The architecture as a JSON-able dict (layers, input shape, dtype); no weights.

        `gpunn.io.model_from_config(config)` rebuilds the model from it, as load_model does."""
        return model_to_config(self)

    def save(self, path: str | os.PathLike, include_optimizer: bool = True) -> None:
        """Architecture, weights, compile settings and optimizer state in one safetensors file (atomic)."""
        with self._backend_scope():
            save_model(self, path, include_optimizer=include_optimizer)

    def save_weights(self, path: str | os.PathLike) -> None:
        with self._backend_scope():
            save_weights(self, path)

    def load_weights(self, path: str | os.PathLike, verify: bool = True) -> None:
        """Load weights saved by save or save_weights; a mismatch raises and leaves the model unchanged.

        `verify=False` skips the checksum, for a safetensors file written by another tool."""
        with self._backend_scope():
            load_weights(self, path, verify=verify)
