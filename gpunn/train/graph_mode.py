"""compile(cuda_graph=True): fit, train_on_batch, test_on_batch and evaluate through CapturedSteps.

The model keeps one training and one evaluation CapturedStep (gpunn/train/captured.py), made on
first use from what compile set (each output's loss, weight and metrics), and made
again when the optimizer is rebuilt (layers frozen or unfrozen).

Logs. The host reads the device-side sums once per `log_every` batches and at the end of each
epoch, never inside the step. So `on_train_batch_end` gets the running means of the epoch so far
("loss", the metrics) every `log_every` batches and at the epoch's last batch, and only "size"
on the batches between (Keras does the same with steps_per_execution > 1). The epoch's logs, and
evaluate's, are the exact sample-weighted means, as eagerly. train_on_batch and test_on_batch
return the batch's values: one read each (an explicit per-batch API).

A non-finite loss is not checked inside the step (that would be a host read): the update is
applied, and TerminateOnNaN sees the NaN at the next logged batch.
"""
from __future__ import annotations

import contextlib
from typing import Any

from gpunn.train import data_adapter, outputs
from gpunn.train.captured import CapturedStep

DEFAULT_LOG_EVERY = 50


def check_log_every(log_every: Any, cuda_graph: bool, where: str) -> int:
    if log_every is None:
        return DEFAULT_LOG_EVERY
    if not cuda_graph:
        raise ValueError(f"{where}: argument 'log_every' only applies with cuda_graph=True (an eager step reads its "
                         "logs every batch)")
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"{where}: argument 'log_every' must be an int >= 1 (batches between host reads of the "
                         f"logs), got {log_every!r}")
    return log_every


class GraphMode:
    """A compiled model's captured steps (see the module docstring)."""

    def __init__(self, model: Any, log_every: int) -> None:
        self.model = model
        self.log_every = log_every
        self._train: CapturedStep | None = None
        self._eval: CapturedStep | None = None

    def _specs(self, where: str) -> list[Any]:
        n = self.model._output_count()
        return self.model._output_specs(1 if n is None else n, where)

    def step(self, training: bool, where: str) -> CapturedStep:
        """The training (or evaluation) CapturedStep, made again when the optimizer changed."""
        opt = self.model.optimizer
        current = self._train if training else self._eval
        if current is not None and (not training or current.optimizer is opt):
            return current
        made = CapturedStep.for_outputs(self.model, self._specs(where), opt if training else None, training)
        if training:
            self._train = made
        else:
            self._eval = made
        return made

    def _targets(self, y: Any, where: str) -> Any:
        """y as the step takes it: the array, or one entry per output (None where not given)."""
        specs = self._specs(where)
        return y if len(specs) == 1 else outputs.align(y, [s.name for s in specs], "y", where)

    def batch(self, x: Any, y: Any, sample_weight: Any, training: bool, where: str) -> dict[str, float]:
        """One batch for train_on_batch / test_on_batch: its values, read once."""
        step = self.step(training, where)
        step.step(x, self._targets(y, where), sample_weight)
        return step.last()

    def fit_epoch(self, data: Any, epoch: int, cbs: Any, again: bool) -> dict[str, float]:
        """One epoch of captured steps; the logs as the module docstring says."""
        model = self.model
        step = self.step(True, "fit")
        step.reset()
        with contextlib.closing(data.epoch(epoch)) as batches:
            for i, (xb, yb, swb) in enumerate(batches):
                cbs.on_train_batch_begin(i)
                model._last_batch_x = xb  # for TrainingMonitor's activation probe
                step.step(xb, self._targets(yb, "fit"), swb)
                n = data_adapter.batch_size_of(xb)
                logs: dict[str, float] = {"size": n}
                last = data.steps is not None and i + 1 >= data.steps
                if (i + 1) % self.log_every == 0 or last:
                    logs.update(step.results())
                cbs.on_train_batch_end(i, logs)
                if model.stop_training:
                    break
        data.end_epoch()
        if step.samples == 0:
            raise data_adapter.no_batches_error(getattr(data, "source", None), "training data", "fit", epoch, again)
        return step.results()

    def evaluate(self, data: Any, where: str, epoch: int) -> dict[str, float]:
        step = self.step(False, where)
        step.reset()
        with contextlib.closing(data.epoch(epoch)) as batches:
            for xb, yb, swb in batches:
                step.step(xb, self._targets(yb, where), swb)
        data.end_epoch()
        if step.samples == 0:
            raise data_adapter.no_batches_error(getattr(data, "source", None), "data", where)
        return step.results()
