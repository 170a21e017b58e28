"""TrainingMonitor: a callback that measures the seeds' failure modes while a model trains.

Every `every` epochs (or every `every_n_steps` batches) it records, per top-level layer:
- the L2 norm of the layer's parameter gradients from the latest batch: vanishing gradients
  show as norms that shrink towards the input;
- the 15th, 50th and 85th percentiles of the layer's output on a fixed probe batch (the first
  training batch unless `probe` is given), the view of Figure 1 of the batch-norm paper;
- for ReLU outputs, the share of dead units: units that are zero for every probe sample.
It warns once per layer when a layer's gradient norm falls below `warn_ratio` times the last
layer's, and `plot(path)` draws the three records to a PNG.
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

from gpunn._checks import int_arg, real_arg
from gpunn.backend import to_host
from gpunn.callbacks.base import Callback
from gpunn.callbacks.history import _pyplot, _save
from gpunn.layers.activations import ReLU, ReLU6


def _is_relu_output(layer: Any) -> bool:
    if isinstance(layer, (ReLU, ReLU6)):
        return True
    act = getattr(layer, "children", {}).get("activation")
    return isinstance(act, (ReLU, ReLU6))


class TrainingMonitor(Callback):
    def __init__(self, every: int = 1, every_n_steps: int | None = None, probe: Any = None,
                 percentiles: tuple[float, ...] = (15.0, 50.0, 85.0), warn_ratio: float = 1e-3) -> None:
        super().__init__()
        where = "TrainingMonitor"
        int_arg(every, "every", where, 1, want="a positive int (epochs)", numpy=False)
        if every_n_steps is not None:
            int_arg(every_n_steps, "every_n_steps", where, 1, want="None or a positive int", numpy=False)
        pct = tuple(float(p) for p in percentiles)
        if not pct or any(not 0.0 <= p <= 100.0 for p in pct):
            raise ValueError(f"{where}: argument 'percentiles' must be values in [0, 100], got {percentiles!r}")
        real_arg(warn_ratio, "warn_ratio", where, 0, 1, hi_open=True, want="a float in [0, 1)", numpy=False)
        if probe is not None:
            probe = to_host(probe)
            if probe.ndim == 0 or probe.shape[0] == 0 or probe.dtype.kind != "f":
                raise ValueError(f"{where}: argument 'probe' must be a non-empty floating-point batch, got "
                                 f"shape {probe.shape} dtype {probe.dtype}")
        self.every = every
        self.every_n_steps = every_n_steps
        self.probe = probe
        self.percentiles = pct
        self.warn_ratio = float(warn_ratio)
        self.records: list[dict[str, Any]] = []
        self.warned: set[str] = set()
        self._step = 0
        self._epoch = 0

    # -- what is recorded -----------------------------------------------------------------------
    def layer_names(self) -> list[str]:
        return [f"{i}:{layer.name}" for i, layer in enumerate(self.model.layers)]

    def gradient_norms(self) -> dict[str, float]:
        """L2 norm of each parameterised layer's current gradients (float64 accumulation)."""
        out = {}
        for name, layer in zip(self.layer_names(), self.model.layers):
            params = layer.parameters()
            if params:
                out[name] = math.sqrt(sum(float(np.sum(to_host(p.grad).astype(np.float64) ** 2)) for p in params))
        return out

    def activations(self, x: Any) -> dict[str, np.ndarray]:
        """Each layer's output on `x` in inference mode, as host arrays."""
        out = {}
        h = x
        for name, layer in zip(self.layer_names(), self.model.layers):
            h = layer.forward(h, training=False)
            out[name] = to_host(h)
        return out

    def _record(self) -> None:
        if self.probe is None:
            last = getattr(self.model, "_last_batch_x", None)
            if last is None:
                return
            self.probe = np.array(to_host(last), copy=True)  # fixed from now on, so records are comparable
        grads = self.gradient_norms()
        acts = self.activations(self.probe)
        record = {
            "epoch": self._epoch, "step": self._step, "grad_norms": grads,
            "percentiles": {k: [float(v) for v in np.percentile(a, self.percentiles)] for k, a in acts.items()},
            "dead_relu": {k: float(np.mean(np.all(a.reshape(a.shape[0], -1) <= 0, axis=0)))
                          for (k, a), layer in zip(acts.items(), self.model.layers) if _is_relu_output(layer)},
        }
        self.records.append(record)
        self._check_vanishing(grads)

    def _check_vanishing(self, grads: dict[str, float]) -> None:
        if len(grads) < 2:
            return
        names = list(grads)
        last = grads[names[-1]]
        if not math.isfinite(last) or last <= 0:
            return
        for name in names[:-1]:
            if name not in self.warned and grads[name] < self.warn_ratio * last:
                self.warned.add(name)
                warnings.warn(f"TrainingMonitor: layer {name} has gradient norm {grads[name]:.3g}, below "
                              f"{self.warn_ratio:g} x the last layer's {last:.3g}: its gradients are vanishing",
                              stacklevel=2)

    # -- hooks ----------------------------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._step += 1
        if self.every_n_steps is not None and self._step % self.every_n_steps == 0:
            self._record()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.every_n_steps is None and (epoch + 1) % self.every == 0:
            self._record()

    # -- reading it back ------------------------------------------------------------------------
    def series(self, kind: str, layer: str) -> np.ndarray:
        """One layer's record over time: kind "grad_norms" (T,), "percentiles" (T, P) or "dead_relu" (T,)."""
        if kind not in ("grad_norms", "percentiles", "dead_relu"):
            raise ValueError(f"TrainingMonitor.series: argument 'kind' must be 'grad_norms', 'percentiles' or "
                             f"'dead_relu', got {kind!r}")
        rows = [r[kind][layer] for r in self.records if layer in r[kind]]
        if not rows:
            raise KeyError(f"TrainingMonitor.series: no {kind} recorded for layer {layer!r}")
        return np.asarray(rows, dtype=np.float64)

    def plot(self, path: str | os.PathLike) -> str:
        """Gradient norms (log scale), activation percentiles and dead-ReLU shares over time, to a PNG."""
        if not self.records:
            raise ValueError("TrainingMonitor.plot: nothing recorded yet; train with this callback first")
        plt = _pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        steps = [r["step"] for r in self.records]
        names = list(self.records[-1]["percentiles"])
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, name in enumerate(names):
            color = colors[i % len(colors)]
            if name in self.records[-1]["grad_norms"]:
                axes[0].plot(steps, [max(r["grad_norms"].get(name, np.nan), 1e-30) for r in self.records],
                             color=color, label=name)
            pct = np.array([r["percentiles"][name] for r in self.records])
            for j, style in zip(range(pct.shape[1]), ("--", "-", ":", "-.")):
                axes[1].plot(steps, pct[:, j], style, color=color,
                             label=f"{name} p{self.percentiles[j]:g}" if j == 0 or len(names) < 4 else None)
            if name in self.records[-1]["dead_relu"]:
                axes[2].plot(steps, [r["dead_relu"].get(name, np.nan) for r in self.records], color=color,
                             label=name)
        axes[0].set_yscale("log")
        axes[0].set_title("gradient norm per layer")
        axes[1].set_title("activation percentiles " + "/".join(f"{p:g}" for p in self.percentiles))
        axes[2].set_title("dead ReLU share")
        axes[2].set_ylim(-0.02, 1.02)
        for ax in axes:
            ax.set_xlabel("step")
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
        fig.tight_layout()
        return _save(fig, path, plt)
