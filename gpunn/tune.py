"""Random search over hyper-parameters (Bergstra and Bengio 2012), as the seeds run it: sample
the learning rate and the regularization strength in log space, train briefly, compare on
validation data.

Each trial draws its parameters and a weight-initialization seed from one generator seeded by
`seed`, and calls gpunn.manual_seed(trial seed) before building: the same seed gives the same
table on the NumPy backend.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpunn._checks import int_arg, positive_int, real_arg
from gpunn.random import manual_seed


def _finite(value: Any, name: str, where: str) -> float:
    return real_arg(value, name, where, want="a finite number")


class Distribution:
    def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError


class Uniform(Distribution):
    """A float uniform in [low, high)."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = _finite(low, "low", "Uniform"), _finite(high, "high", "Uniform")
        if not self.low < self.high:
            raise ValueError(f"Uniform: argument 'low' must be < 'high', got {low!r} and {high!r}")

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def __repr__(self) -> str:
        return f"Uniform({self.low:g}, {self.high:g})"


class LogUniform(Distribution):
    """A float whose logarithm is uniform: 10 ** uniform(log10 low, log10 high); low > 0."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = _finite(low, "low", "LogUniform"), _finite(high, "high", "LogUniform")
        if self.low <= 0:
            raise ValueError(f"LogUniform: argument 'low' must be > 0, got {low!r}")
        if not self.low < self.high:
            raise ValueError(f"LogUniform: argument 'low' must be < 'high', got {low!r} and {high!r}")

    def sample(self, rng: np.random.Generator) -> float:
        return float(10.0 ** rng.uniform(math.log10(self.low), math.log10(self.high)))

    def __repr__(self) -> str:
        return f"LogUniform({self.low:g}, {self.high:g})"


class Choice(Distribution):
    """One of the given options, each equally likely."""

    def __init__(self, options: Sequence[Any]) -> None:
        if isinstance(options, (str, bytes)) or not isinstance(options, Sequence) or len(options) == 0:
            raise ValueError(f"Choice: argument 'options' must be a non-empty list, got {options!r}")
        self.options = list(options)

    def sample(self, rng: np.random.Generator) -> Any:
        return self.options[int(rng.integers(len(self.options)))]

    def __repr__(self) -> str:
        return f"Choice({self.options!r})"


@dataclass
class Trial:
    index: int
    params: dict[str, Any]
    seed: int
    score: float
    metrics: dict[str, float]
    history: dict[str, list[float]] = field(repr=False, default_factory=dict)


@dataclass
class SearchResult:
    """The trials sorted best first by `monitor`; `print(result)` shows the table."""

    trials: list[Trial]
    monitor: str
    mode: str

    @property
    def best(self) -> Trial:
        return self.trials[0]

    def table(self) -> str:
        keys = sorted({k for t in self.trials for k in t.params})
        header = ["rank", "trial", *keys, self.monitor]
        rows = [[str(r + 1), str(t.index), *(_fmt(t.params.get(k)) for k in keys), _fmt(t.score)]
                for r, t in enumerate(self.trials)]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def print(self) -> None:
        print(self.table())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def random_search(build_fn: Callable[..., Any], space: dict[str, Any], trials: int = 10, epochs: int = 5,
                  x: Any = None, y: Any = None, validation_data: Any = None, seed: int = 0, batch_size: int = 32,
                  monitor: str = "auto", mode: str = "auto", verbose: int = 0) -> SearchResult:
    """Train `trials` models built by `build_fn(**params)` (compiled, returned) with params drawn
    from `space` (name -> Uniform/LogUniform/Choice or a fixed value); return them ranked by the
    validation `monitor` ("auto": val_accuracy when the model reports it, else val_loss)."""
    where = "random_search"
    if not callable(build_fn):
        raise TypeError(f"{where}: argument 'build_fn' must be callable, got {type(build_fn).__name__}")
    if not isinstance(space, dict) or not space or not all(isinstance(k, str) for k in space):
        raise ValueError(f"{where}: argument 'space' must be a non-empty dict of name -> distribution, got {space!r}")
    for name, arg in (("trials", trials), ("epochs", epochs), ("batch_size", batch_size)):
        positive_int(arg, name, where, numpy=False)
    int_arg(seed, "seed", where, 0, want="a non-negative int")
    if x is None or y is None:
        raise ValueError(f"{where}: arguments 'x' and 'y' (training data) are required")
    if validation_data is None:
        raise ValueError(f"{where}: argument 'validation_data' (x_val, y_val) is required to compare trials")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{where}: argument 'mode' must be 'auto', 'min' or 'max', got {mode!r}")
    rng = np.random.default_rng(int(seed))
    results: list[Trial] = []
    chosen_monitor = monitor
    for i in range(trials):
        params = {k: (v.sample(rng) if isinstance(v, Distribution) else v) for k, v in space.items()}
        trial_seed = int(rng.integers(2**31 - 1))
        manual_seed(trial_seed)
        model = build_fn(**params)
        if not getattr(model, "compiled", False):
            raise TypeError(f"{where}: argument 'build_fn' must return a compiled model, got "
                            f"{type(model).__name__} (call compile() inside build_fn)")
        history = model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                            verbose=0).history
        final = {k: v[-1] for k, v in history.items()}
        if chosen_monitor == "auto":
            chosen_monitor = "val_accuracy" if "val_accuracy" in final else "val_loss"
        if chosen_monitor not in final:
            raise ValueError(f"{where}: argument 'monitor' {chosen_monitor!r} is not logged; available: "
                             f"{sorted(final)}")
        results.append(Trial(i, params, trial_seed, float(final[chosen_monitor]), final, history))
        if verbose:
            print(f"trial {i + 1}/{trials}: {params} -> {chosen_monitor} {final[chosen_monitor]:.4f}")
    resolved = mode if mode != "auto" else ("max" if "acc" in chosen_monitor else "min")
    # NaN scores (diverged trials) rank last whatever the mode
    def key(t: Trial) -> tuple[bool, float]:
        bad = not math.isfinite(t.score)
        return bad, (-t.score if resolved == "max" else t.score) if not bad else 0.0
    results.sort(key=key)
    return SearchResult(results, chosen_monitor, resolved)
