"""What compile sets per model output - the loss, its weight, the metrics - and one batch's loss.

A model with one output (every Sequential) keeps the names it always had: logs "loss" and each
metric's own name. A model with several outputs (gpunn.Model) names each output
(`model.output_names`), and compile takes, as Keras does:
- `loss`: one loss for every output (a copy each), a list with one per output (None: that output
  is not trained), or a dict keyed by output name (outputs left out are not trained); at least
  one output has a loss;
- `loss_weights`: None (1 each), a list, or a dict keyed by output name (missing ones: 1); floats
  >= 0. The trained loss is the weighted sum, plus the layers' weight penalties;
- `metrics`: a list applies to every output, a dict keyed by output name gives each output its
  own (one metric or a list);
- logs: "loss" (the weighted total), "<output>_loss" per output (unweighted) and
  "<output>_<metric>" (Keras 2's names).

Each output's loss is matched to the activation the output ends in (gpunn.layers.output_activation
and gpunn.losses.match_output): a softmax output with a cross-entropy on logits trains with the
same cross-entropy on probabilities, never a silent double softmax. The metrics read the output
as that loss declares it (`from_logits`).

Sample weights (`batch_loss(..., sample_weight=w)`, one per sample): the loss is the weighted
mean sum_i w_i l_i / sum_i w_i of the per-sample losses l_i (a "sum" loss: sum_i w_i l_i), as
Keras computes it; with every w_i = 1 it is the unweighted loss. The metrics are unweighted.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from gpunn._checks import real_arg
from gpunn.backend import get_backend, to_host
from gpunn.layers.activations import output_activation
from gpunn.losses import Loss, get_loss, match_output
from gpunn.metrics import get_metric


class OutputSpec:
    """One output's compile settings: `loss` (None: not trained), `weight`, the metrics as given
    (`metric_specs`, for checkpoints) and as (log name, function) pairs."""

    __slots__ = ("name", "loss", "weight", "metric_specs", "metric_fns")

    def __init__(self, name: str, loss: Loss | None, weight: float, metric_specs: list[Any],
                 metric_fns: list[tuple[str, Any]]) -> None:
        self.name, self.loss, self.weight = name, loss, weight
        self.metric_specs, self.metric_fns = metric_specs, metric_fns


def _one_loss(spec: Any, where: str, label: str) -> Loss:
    try:
        loss = get_loss(spec)
    except ValueError as exc:
        raise ValueError(f"{where}: argument '{label}': {exc}") from None
    if not isinstance(loss, Loss):
        raise TypeError(f"{where}: argument '{label}' must be a name or a gpunn Loss, got {type(spec).__name__}")
    if loss.reduction == "none":
        raise ValueError(f"{where}: argument '{label}' has reduction='none'; a trained loss reduces to one number "
                         "(use 'mean' or 'sum'; per-sample weights go to fit(sample_weight=...))")
    return loss


def _check_output_keys(value: dict, names: list[str], what: str, where: str) -> None:
    """Every key of a per-output dict names an output."""
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ValueError(f"{where}: argument '{what}' has keys {unknown} that are not output names; the outputs "
                         f"are {names}")


def _per_output(value: Any, names: list[str], what: str, where: str, default: Any) -> list[Any]:
    """`value` spread over the outputs: a list (one per output) or a dict keyed by output name
    (missing names get `default`)."""
    n = len(names)
    if isinstance(value, dict):
        _check_output_keys(value, names, what, where)
        return [value.get(k, default) for k in names]
    if len(value) != n:
        raise ValueError(f"{where}: argument '{what}' must have one entry per output ({n}: {names}), got {len(value)}")
    return list(value)


def check_loss_spec(loss: Any, where: str) -> None:
    """Refuse, at compile, a loss argument that no model could take (before the outputs are known)."""
    if loss is None:
        raise ValueError(f"{where}: argument 'loss' is required: a name, a gpunn Loss, a list or a dict")
    if isinstance(loss, dict):
        for k, v in loss.items():
            if v is not None:
                _one_loss(v, where, f"loss[{k!r}]")
    elif isinstance(loss, (list, tuple)):
        for i, v in enumerate(loss):
            if v is not None:
                _one_loss(v, where, f"loss[{i}]")
    else:
        _one_loss(loss, where, "loss")


def resolve(names: list[str], layers: list[Any], loss: Any, metrics: Any, loss_weights: Any,
            where: str) -> list[OutputSpec]:
    """The per-output settings (see the module docstring) for outputs `names` produced by
    `layers` (None where an output is an input), validated with errors naming the argument."""
    n = len(names)
    check_loss_spec(loss, where)
    if isinstance(loss, (dict, list, tuple)):
        specs = _per_output(loss, names, "loss", where, None)
        labels = [f"loss[{k!r}]" if isinstance(loss, dict) else f"loss[{i}]" for i, k in enumerate(names)]
        losses = [None if s is None else _one_loss(s, where, lab) for s, lab in zip(specs, labels)]
        if all(v is None for v in losses):
            raise ValueError(f"{where}: argument 'loss' gives no output a loss; the outputs are {names}")
    else:
        first = _one_loss(loss, where, "loss")
        # one loss for every output: each its own object (a Loss keeps its last batch for backward)
        losses = [first] + [copy.deepcopy(first) if isinstance(loss, Loss) else _one_loss(loss, where, "loss")
                            for _ in range(n - 1)]
    losses = [None if v is None else match_output(v, output_activation(layer) if layer is not None else None)
              for v, layer in zip(losses, layers)]
    if loss_weights is None:
        weights = [1.0] * n
    else:
        if not isinstance(loss_weights, (dict, list, tuple)):
            raise TypeError(f"{where}: argument 'loss_weights' must be a list or a dict keyed by output name, got "
                            f"{type(loss_weights).__name__}")
        raw = _per_output(loss_weights, names, "loss_weights", where, 1.0)
        weights = [real_arg(w, f"loss_weights[{k!r}]", where, 0, want="a finite float >= 0", type_error=True)
                   for w, k in zip(raw, names)]
    if metrics is None:
        per = [[] for _ in names]
    elif isinstance(metrics, dict):
        unknown = [k for k in metrics if k not in names]
        if unknown:
            raise ValueError(f"{where}: argument 'metrics' has keys {unknown} that are not output names; the outputs "
                             f"are {names}")
        per = [_metric_list(metrics.get(k)) for k in names]
    else:
        per = [_metric_list(metrics) for _ in names]
    out = []
    for name, lo, w, ms in zip(names, losses, weights, per):
        from_logits = bool(lo.from_logits) if lo is not None else False
        fns = []
        for m in ms:
            try:
                mname, fn = get_metric(m, from_logits=from_logits)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"{where}: {exc}") from None
            fns.append((mname if n == 1 else f"{name}_{mname}", fn))
        shown = [k for k, _ in fns]
        if len(set(shown)) != len(shown) or "loss" in shown or (n > 1 and f"{name}_loss" in shown):
            raise ValueError(f"{where}: argument 'metrics' has duplicate names {shown}")
        out.append(OutputSpec(name, lo, w, list(ms), fns))
    return out


def _metric_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str) or callable(value):
        return [value]
    return list(value)


def loss_names(specs: list[OutputSpec]) -> list[str]:
    """The per-output loss log names ("<output>_loss"), for several outputs; none for one."""
    return [f"{s.name}_loss" for s in specs if s.loss is not None] if len(specs) > 1 else []


def metric_fns(specs: list[OutputSpec]) -> tuple[tuple[str, Any], ...]:
    """Every output's (log name, function) pairs, in output order."""
    return tuple(pair for s in specs for pair in s.metric_fns)


def align(value: Any, names: list[str], what: str, where: str) -> list[Any]:
    """Targets (or outputs) as one entry per output: one array for one output, a list or tuple
    with one per output, or a dict keyed by output name (missing ones: None)."""
    n = len(names)
    if isinstance(value, dict):
        _check_output_keys(value, names, what, where)
        return [value.get(k) for k in names]
    if n == 1:
        if isinstance(value, (list, tuple)) and len(value) == 1 and hasattr(value[0], "shape"):
            return [value[0]]
        return [value]
    if not isinstance(value, (list, tuple)) or len(value) != n:
        got = f"a {type(value).__name__} of {len(value)}" if isinstance(value, (list, tuple)) else type(value).__name__
        raise ValueError(f"{where}: argument '{what}' must hold one array per output ({n}: {names}) as a list or a "
                         f"dict keyed by output name, got {got}")
    return list(value)


def _per_sample(loss: Loss, reduction: str, out: Any, y: Any, n: int, where: str) -> tuple[Any, Any, int, Any]:
    """The unreduced loss (loss.reduction already "none"), as (per, per as (n, k), k, the float64
    per-sample values: summed over each sample's k values, averaged with a "mean" reduction)."""
    per = loss.forward(out, y)
    if per.ndim == 0 or int(per.shape[0]) != n:
        raise ValueError(f"{where}: the loss {loss.name} gives no per-sample values (unreduced shape "
                         f"{tuple(per.shape)}), so it cannot be weighted per sample")
    flat = per.reshape(n, -1)
    k = int(flat.shape[1])
    per_sample = flat.astype(np.float64).sum(axis=1)
    if reduction == "mean":
        per_sample = per_sample / k
    return per, flat, k, per_sample


def batch_loss(spec: OutputSpec, out: Any, y: Any, sample_weight: Any, need_grad: bool,
               where: str) -> tuple[float, Any]:
    """One output's loss on a batch (weighted by `sample_weight`, one weight per sample, when
    given) and, with `need_grad`, its gradient with respect to `out`, already scaled by the
    output's loss weight."""
    loss = spec.loss
    if y is None:
        raise ValueError(f"{where}: output {spec.name!r} has a loss but no target was given for it")
    if sample_weight is None:
        value = float(loss.forward(out, y))
        grad = loss.backward(spec.weight) if need_grad else None
        return value, grad
    be = get_backend()
    n = int(out.shape[0])
    w = be.asarray(np.asarray(to_host(sample_weight), dtype=np.float64))
    if tuple(w.shape) != (n,):
        raise ValueError(f"{where}: argument 'sample_weight' must have one weight per sample, shape ({n},), got "
                         f"{tuple(w.shape)}")
    reduction = loss.reduction
    loss.reduction = "none"  # per-element (or per-sample) values, weighted here
    try:
        per, flat, k, per_sample = _per_sample(loss, reduction, out, y, n, where)
        total = float(w.sum())
        # a batch whose weights are all 0 contributes nothing (Keras's divide_no_nan)
        denom = total if reduction == "mean" else 1.0
        value = float((w * per_sample).sum()) / denom if denom > 0 else 0.0
        grad = None
        if need_grad:
            scale = (spec.weight / denom if denom > 0 else 0.0) / (k if reduction == "mean" else 1)
            d = be.xp.broadcast_to((w * scale).reshape(n, 1), flat.shape).reshape(per.shape)
            grad = loss.backward(d.astype(per.dtype))
    finally:
        loss.reduction = reduction
    return value, grad


def weighted_loss_device(loss: Loss, loss_weight: float, out: Any, y: Any, w: Any, need_grad: bool,
                         where: str) -> tuple[Any, Any]:
    """batch_loss's sample-weighted branch with nothing read back to the host (a captured step,
    gpunn/train/captured.py): `w` is a float64 device array of one weight per sample. The same
    operations in the same order, so the same numbers as batch_loss; the value (not yet multiplied
    by `loss_weight`, as batch_loss's) is a 0-d float64 device array."""
    xp = get_backend().xp
    n = int(out.shape[0])
    if tuple(w.shape) != (n,):
        raise ValueError(f"{where}: argument 'sample_weight' must have one weight per sample, shape ({n},), got "
                         f"{tuple(w.shape)}")
    reduction = loss.reduction
    loss.reduction = "none"
    try:
        per, flat, k, per_sample = _per_sample(loss, reduction, out, y, n, where)
        denom = w.sum() if reduction == "mean" else 1.0
        positive = denom > 0  # all-zero weights contribute 0 (Keras's divide_no_nan), chosen on the device
        safe = xp.where(positive, denom, 1.0)
        value = xp.where(positive, (w * per_sample).sum() / safe, 0.0)
        grad = None
        if need_grad:
            scale = xp.where(positive, loss_weight / safe, 0.0) / (k if reduction == "mean" else 1)
            d = xp.broadcast_to((w * scale).reshape(n, 1), flat.shape).reshape(per.shape)
            grad = loss.backward(d.astype(per.dtype))
    finally:
        loss.reduction = reduction
    return value, grad

