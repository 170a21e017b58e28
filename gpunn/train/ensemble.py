"""Ensemble: average the predicted class probabilities of several models.

Each member's outputs are turned into probabilities first: softmax for models trained on logits
with a softmax cross-entropy, sigmoid for binary cross-entropy on logits, and as they are for
models that already end in a Softmax/Sigmoid layer or that regress (MSE).

Members may live on different backends: each predicts on its own (a model runs where it was
built or moved with to()), and the averaging runs on the host.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gpunn.backend import to_host
from gpunn.layers.activations import Sigmoid, Softmax
from gpunn.metrics import accuracy, mse


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))  # never overflows
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _output_kind(model: Any) -> str:
    last = model.layers[-1] if getattr(model, "layers", None) else None
    act = getattr(last, "children", {}).get("activation") if last is not None else None
    if isinstance(last, (Softmax, Sigmoid)) or isinstance(act, (Softmax, Sigmoid)):
        return "probabilities"
    kind = getattr(getattr(model, "loss", None), "output_kind", "values")  # the loss says what it takes
    return kind if kind in ("logits", "binary_logits", "probabilities") else "identity"


class Ensemble:
    """`predict` returns the mean member probability; `evaluate(x, y)` the ensemble's accuracy (and
    each member's), or for regression members the MSE of the mean prediction."""

    def __init__(self, models: Sequence[Any], weights: Sequence[float] | None = None) -> None:
        if isinstance(models, (str, bytes)) or not isinstance(models, Sequence) or len(models) == 0:
            raise ValueError(f"Ensemble: argument 'models' must be a non-empty list of models, got {models!r}")
        for i, m in enumerate(models):
            if not hasattr(m, "predict"):
                raise TypeError(f"Ensemble: argument 'models[{i}]' must be a model with predict(), got "
                                f"{type(m).__name__}")
        self.models = list(models)
        if weights is None:
            w = np.full(len(self.models), 1.0 / len(self.models))
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (len(self.models),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(f"Ensemble: argument 'weights' must be {len(self.models)} non-negative numbers with "
                                 f"a positive sum, got {weights!r}")
            w = w / w.sum()
        self.weights = w
        self.kinds = [_output_kind(m) for m in self.models]

    def member_probabilities(self, x: Any, batch_size: int = 256) -> list[np.ndarray]:
        out = []
        for model, kind in zip(self.models, self.kinds):
            z = np.asarray(to_host(model.predict(x, batch_size=batch_size)), dtype=np.float64)
            out.append(_softmax(z) if kind == "logits" else _sigmoid(z) if kind == "binary_logits" else z)
        shapes = {p.shape for p in out}
        if len(shapes) != 1:
            raise ValueError(f"Ensemble: the members' outputs have different shapes {sorted(shapes)}")
        return out

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Weighted mean of the members' probabilities (float64)."""
        probs = self.member_probabilities(x, batch_size)
        return np.tensordot(self.weights, np.stack(probs), axes=1)

    def evaluate(self, x: Any, y: Any, batch_size: int = 256) -> dict[str, Any]:
        probs = self.member_probabilities(x, batch_size)
        mean = np.tensordot(self.weights, np.stack(probs), axes=1)
        y = to_host(y)
        if len(y) != len(mean):
            raise ValueError(f"Ensemble.evaluate: arguments 'x' and 'y' must have the same number of samples, got "
                             f"{len(mean)} and {len(y)}")
        if all(k == "identity" for k in self.kinds):
            return {"mse": mse(y, mean), "member_mse": [mse(y, p) for p in probs]}
        return {"accuracy": accuracy(y, mean), "member_accuracy": [accuracy(y, p) for p in probs]}
