"""History: the per-epoch logs of a fit() call, and their plot."""
from __future__ import annotations

import os
from typing import Any

from gpunn.callbacks.base import Callback


class History(Callback):
    """`.history` maps each logged quantity ("loss", "accuracy", "val_loss", ...) to a list with one
    value per epoch; `.epoch` lists the epoch indices."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))

    def plot(self, path: str | os.PathLike, metrics: list[str] | None = None, title: str | None = None) -> str:
        """Write the loss and metric curves, train against validation, one panel each, to a PNG.

        Needs matplotlib (the `plot` extra); returns the path written."""
        if not self.history:
            raise ValueError("History.plot: nothing to plot; the history is empty (fit for at least one epoch)")
        keys = [k for k in self.history if not k.startswith("val_") and k != "lr"]
        if metrics is not None:
            unknown = [m for m in metrics if m not in self.history]
            if unknown:
                raise ValueError(f"History.plot: argument 'metrics' names {unknown}, which are not in the history "
                                 f"{sorted(self.history)}")
            keys = list(metrics)
        plt = _pyplot()
        fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
        epochs = [e + 1 for e in self.epoch]
        for ax, key in zip(axes[0], keys):
            ax.plot(epochs, self.history[key], marker="o", label=f"train {key}")
            if f"val_{key}" in self.history:
                ax.plot(epochs, self.history[f"val_{key}"], marker="s", label=f"validation {key}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
            ax.grid(True, alpha=0.3)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return _save(fig, path, plt)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'gpunn[plot]'") from exc
    if not os.environ.get("DISPLAY") and matplotlib.get_backend().lower() not in ("agg", "pdf", "svg"):
        matplotlib.use("Agg")  # headless: draw to files only
    import matplotlib.pyplot as plt
    return plt


def _save(fig: Any, path: str | os.PathLike, plt: Any) -> str:
    try:
        fig.savefig(os.fspath(path), dpi=100)
    finally:
        plt.close(fig)
    return os.fspath(path)
