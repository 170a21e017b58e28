"""The callback protocol: Callback (the hooks fit() calls), CallbackList (how fit() calls a list
of them) and LambdaCallback (hooks from plain functions).

`logs` at epoch end hold "loss", each metric, and their "val_" forms; at batch end, the batch's
"loss" and metrics. A callback stops training by setting `model.stop_training = True`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Callback:
    #: data parallelism: a callback that writes (a file, the terminal) runs on rank 0 only; one that
    #: decides (early stopping, schedules) runs on every rank, on logs reduced across ranks, so
    #: every rank decides the same
    rank_zero_only = False

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None: ...
    def on_train_end(self, logs: dict[str, float] | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: dict[str, float] | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None: ...


class CallbackList:
    def __init__(self, callbacks: list[Callback], main_rank: bool = True) -> None:
        """`main_rank` False (ranks other than 0 of a data-parallel fit) leaves out the callbacks
        marked `rank_zero_only`."""
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: argument 'callbacks[{i}]' must be a gpunn Callback, got {type(cb).__name__}")
        self.callbacks = [cb for cb in callbacks if main_rank or not cb.rank_zero_only]

    def set_model(self, model: Any) -> None:
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.set_params(params)

    def on_train_begin(self, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_batch_end(batch, logs)


class LambdaCallback(Callback):
    """Callbacks from plain functions: on_epoch_end(epoch, logs), on_train_batch_end(batch, logs), ..."""

    def __init__(self, **hooks: Callable) -> None:
        super().__init__()
        allowed = {"on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
                   "on_train_batch_end"}
        for name, fn in hooks.items():
            if name not in allowed or not callable(fn):
                raise ValueError(f"LambdaCallback: argument {name!r} must be one of {sorted(allowed)} and callable")
            setattr(self, name, fn)
