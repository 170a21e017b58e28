"""A whole training step as one CUDA graph, captured once per input shape and replayed per batch.

    step = gpunn.train.CapturedStep(model, "sparse_categorical_crossentropy", Adam(model), metrics=["accuracy"])
    for x, y in batches:
        step.step(x, y)              # no host read: the values stay on the device
    print(step.results())            # {"loss": ..., "accuracy": ...}: one read, the means so far

`model.compile(..., cuda_graph=True)` runs fit, train_on_batch and evaluate through this.

What one graph holds: zero_grad, forward, the loss, backward, gradient clipping, weight decay and
the optimizer update (`Optimizer.apply_step`, which reads the learning rate and the step count
from device memory), BatchNorm's running statistics, dropout's Philox counter, and the running
sums of the loss and the metrics. Outside it, on the host, per step: the batch is copied into the
graph's static input buffers, and `Optimizer.prepare_step` writes the current learning rate (a
schedule's) to the device.

Per input shape (and dtype): the first step runs eagerly (it compiles every kernel, packs the
optimizer and fills the memory pool), inside the backend's `graph_scope` (CuPy: the capture
stream and the graph's private pool); the step is then captured, which runs nothing, and every
later batch of that shape replays the graph. A short last batch gets its own graph the same way
(two shapes, two graphs); each graph keeps its own buffers alive.

On the NumPy backend, which has no graphs, the same step runs eagerly every time: the results are
the same, and a script written for the GPU runs in CPU-only CI.

Sample weights (fit's sample_weight and class_weight, or `step(x, y, sample_weight)`) weight the
loss on the device, as the eager step does. Inputs: one array, or a list or dict of them (a model with several inputs); targets: one array,
or one per output. Limits (clear errors, not silent fallbacks): no data parallelism; the metrics must have a device form
(gpunn.metrics.device_metric). Data-dependent checks of the targets (NaN, label range) run at the
eager first step of each shape only: a captured step cannot read the batch back.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Any

import numpy as np

from gpunn.backend import Backend, get_backend, to_host, use_backend
from gpunn.backend.values import device_values
from gpunn.losses import Loss, get_loss
from gpunn.metrics import device_metric, get_metric
from gpunn.optim.base import Optimizer
from gpunn.precision import get_policy
from gpunn.regularizers import regularization_loss
from gpunn.train.mixed_precision import MixedPrecision, ensure_built, float32_outputs, for_model
from gpunn.train.outputs import loss_names, weighted_loss_device


class _Shape:
    """One input signature's static buffers and, once captured, its graph."""

    __slots__ = ("x", "xs", "y", "w", "n", "graph", "runs")

    def __init__(self, kind: Any, xs: list[Any], y: tuple[Any, ...], w: Any) -> None:
        self.x = _rebuild(kind, xs)  # what forward gets: one array, or a list / dict of them
        self.xs = xs  # the input buffers, in order
        self.y, self.w = y, w  # y: one target buffer per output (None: no target for it)
        self.n = int(xs[0].shape[0])
        self.graph: Any = None
        self.runs = 0


def _leaves(x: Any) -> tuple[Any, list[tuple[str, Any]]]:
    """The model input as (structure, [(label, array)]): one array, a list or a dict by input name."""
    if isinstance(x, dict):
        return ("dict", tuple(x)), [(f"x[{k!r}]", v) for k, v in x.items()]
    if isinstance(x, (list, tuple)):
        return ("list", len(x)), [(f"x[{i}]", v) for i, v in enumerate(x)]
    return None, [("x", x)]


def _rebuild(kind: Any, arrays: list[Any]) -> Any:
    if kind is None:
        return arrays[0]
    return dict(zip(kind[1], arrays)) if kind[0] == "dict" else list(arrays)


def _metric_pairs(metrics: Any, from_logits: bool, where: str) -> list[tuple[str, Any]]:
    """[(log name, host function)] from names (read as compile reads them next to a loss with
    `from_logits`: binary_accuracy thresholds logits at 0), functions or (name, function) pairs."""
    if metrics is None:
        return []
    if isinstance(metrics, (str, tuple)) or callable(metrics):
        metrics = [metrics]
    pairs = []
    for i, m in enumerate(metrics):
        if isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str) and callable(m[1]):
            pairs.append(m)
        elif isinstance(m, str):
            try:
                pairs.append(get_metric(m, from_logits=from_logits))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{where}: argument 'metrics[{i}]': {exc}") from None
        elif callable(m):
            pairs.append((getattr(m, "__name__", f"metric_{i}"), m))
        else:
            raise TypeError(f"{where}: argument 'metrics[{i}]' must be a metric name, a function or a (name, "
                            f"function) pair, got {type(m).__name__}")
    return pairs


class _Head:
    """One model output's part of the step: its loss (None: not trained), weight and device metrics."""

    __slots__ = ("name", "loss", "weight", "metrics")

    def __init__(self, name: str, loss: Loss | None, weight: float, metrics: list[tuple[str, Any]]) -> None:
        self.name, self.loss, self.weight, self.metrics = name, loss, weight, metrics


def _device_metrics(pairs: list[tuple[str, Any]], where: str) -> list[tuple[str, Any]]:
    out = []
    for name, fn in pairs:
        dev = device_metric(fn)
        if dev is None:
            raise ValueError(f"{where}: metric {name!r} has no device form, so a captured step cannot compute "
                             "it; use a built-in metric (accuracy, top_k_accuracy, binary_accuracy, mse, mae) "
                             "or train without cuda_graph")
        out.append((name, dev))
    return out


class CapturedStep:
    """One step of `model` on (x, y), as a CUDA graph replayed per batch (see the module docstring).

    - `loss`: a gpunn Loss or its name; `loss_weight` scales it (compile's loss_weights).
    - `optimizer`: a gpunn Optimizer over the model (one built without parameters is bound to the
      model); None with `training=False`, an evaluation step (forward, loss, metrics).
    - `metrics`: names ("accuracy", ...), metric functions or (name, function) pairs, each with a
      device form (gpunn.metrics.device_metric); accumulated on the device per batch.
    - `warmup`: eager runs per input shape before the capture (at least 1: it compiles the kernels).

    `step(x, y)` returns the device array [loss, *metrics] of that batch (overwritten by the next
    step: copy it to keep it); `results()` reads the means since the last `reset()` (one host read);
    `graphs` says how many shapes have been captured."""

    def __init__(self, model: Any, loss: Any, optimizer: Optimizer | None = None, metrics: Any = None, *,
                 training: bool = True, loss_weight: float = 1.0, warmup: int = 1, precision: Any = "fp32") -> None:
        where = "CapturedStep"
        if not (callable(getattr(model, "forward", None)) and callable(getattr(model, "parameters", None))):
            raise TypeError(f"{where}: argument 'model' must be a gpunn model or layer, got {type(model).__name__}")
        if not isinstance(training, bool):
            raise TypeError(f"{where}: argument 'training' must be True or False, got {training!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 1:
            raise ValueError(f"{where}: argument 'warmup' must be an int >= 1 (the first run compiles the kernels), "
                             f"got {warmup!r}")
        if isinstance(loss_weight, bool) or not isinstance(loss_weight, (int, float)) or not loss_weight >= 0:
            raise ValueError(f"{where}: argument 'loss_weight' must be a float >= 0, got {loss_weight!r}")
        loss = get_loss(loss) if isinstance(loss, str) else loss
        if not isinstance(loss, Loss):
            raise TypeError(f"{where}: argument 'loss' must be a gpunn Loss or its name, got {type(loss).__name__}")
        if loss.reduction == "none":
            raise ValueError(f"{where}: argument 'loss' has reduction='none'; a step reduces the loss to one number")
        if training:
            if not isinstance(optimizer, Optimizer):
                raise TypeError(f"{where}: argument 'optimizer' must be a gpunn Optimizer for a training step, got "
                                f"{type(optimizer).__name__}")
            if not optimizer.bound:
                optimizer.bind(model)
            if optimizer.grad_sync is not None:
                raise ValueError(f"{where}: argument 'optimizer' is data-parallel (DistributedOptimizer); a captured "
                                 "step does not hold the gradient all-reduce yet: train eagerly with distributed=True")
        elif optimizer is not None:
            raise ValueError(f"{where}: argument 'optimizer' must be None for an evaluation step (training=False)")
        self.model, self.optimizer = model, optimizer
        policy = get_policy(precision, where)
        self.mixed = MixedPrecision(model, optimizer, policy) if policy.name != "fp32" else None
        try:
            self._backward_takes_flag = "need_input_grad" in inspect.signature(model.backward).parameters
        except (TypeError, ValueError):
            self._backward_takes_flag = False
        self.training, self.warmup = training, int(warmup)
        self._set_heads([_Head("output", loss, float(loss_weight), _device_metrics(
            _metric_pairs(metrics, loss.from_logits, where), where))])
        self._shapes: dict[tuple, _Shape] = {}
        self._backend: Backend | None = None
        self._vals: Any = None  # this batch's [loss, *metrics], float64, on the device
        self._sums: Any = None  # their sums weighted by batch size since reset()
        self._scaled: Any = None  # scratch: vals * n
        self._seen = 0
        self._baked: Any = None  # what the graphs baked in besides the lr (the optimizer's other settings)

    @classmethod
    def for_outputs(cls, model: Any, specs: list[Any], optimizer: Optimizer | None, training: bool) -> CapturedStep:
        """The step compile(cuda_graph=True) runs: one head per model output, from compile's
        OutputSpecs (loss or None, weight, metrics), logged with eager fit's names ("loss", then
        "<output>_loss" per trained output when there are several, then the metrics)."""
        trained = [s for s in specs if s.loss is not None]
        if not trained:
            raise ValueError("compile(cuda_graph=True): no output has a loss")
        step = cls(model, trained[0].loss, optimizer, None, training=training, loss_weight=trained[0].weight)
        step.mixed = for_model(model)  # the compiled policy's, shared with the eager steps (one scaler)
        step._set_heads([_Head(s.name, s.loss, float(s.weight), _device_metrics(list(s.metric_fns), "compile"))
                         for s in specs])
        return step

    def _set_heads(self, heads: list[_Head]) -> None:
        self._heads = heads
        self.names = ["loss", *loss_names(heads), *(name for h in heads for name, _ in h.metrics)]

    # -- the step -------------------------------------------------------------------------------
    @property
    def graphs(self) -> int:
        """How many input shapes have a captured graph."""
        return sum(s.graph is not None for s in self._shapes.values())

    def step(self, x: Any, y: Any, sample_weight: Any = None) -> Any:
        """One step on the batch (x, y), the loss weighted per sample by `sample_weight` (one weight
        per sample, as fit's) when given: see the class docstring."""
        where = "CapturedStep.step"
        several = len(self._heads) > 1
        ys = list(y) if several and isinstance(y, (list, tuple)) else [y]
        if len(ys) != len(self._heads):
            raise ValueError(f"{where}: argument 'y' must hold one target per output ({len(self._heads)}), got "
                             f"{len(ys)}")
        kind, xitems = _leaves(x)
        if not xitems:
            raise ValueError(f"{where}: argument 'x' holds no input array")
        named = xitems + [(f"y[{i}]" if several else "y", t) for i, t in enumerate(ys) if t is not None or not several]
        first, n0 = named[0][0], None
        for name, a in named:
            if isinstance(a, (list, tuple, dict)) or not hasattr(a, "shape") or not hasattr(a, "dtype"):
                raise TypeError(f"{where}: argument '{name}' must be an array (inputs: an array, a list or a dict of "
                                f"them; targets: {'a list with one per output' if several else 'one array'}), got "
                                f"{type(a).__name__}")
            if len(a.shape) == 0 or int(a.shape[0]) == 0:
                raise ValueError(f"{where}: argument '{name}' must hold at least one sample, got shape {tuple(a.shape)}")
            n0 = int(a.shape[0]) if n0 is None else n0
            if int(a.shape[0]) != n0:
                raise ValueError(f"{where}: arguments '{first}' and '{name}' must have the same number of samples, "
                                 f"got {n0} and {int(a.shape[0])}")
        for h, t in zip(self._heads, ys):
            if h.loss is not None and t is None:
                raise ValueError(f"{where}: output {h.name!r} has a loss but no target was given for it")
        if sample_weight is not None and tuple(getattr(sample_weight, "shape", ())) != (n0,):
            raise ValueError(f"{where}: argument 'sample_weight' must have one weight per sample, shape ({n0},), "
                             f"got {getattr(sample_weight, 'shape', type(sample_weight).__name__)}")
        backend = getattr(self.model, "backend", None)
        backend = backend if isinstance(backend, Backend) else get_backend()
        if backend is not self._backend:
            self._place(backend)
        self._check_baked()
        with use_backend(backend), device_values():
            shape = self._shape_for(kind, [a for _, a in xitems], ys, sample_weight is not None)
            self._fill(shape, [a for _, a in xitems], ys, sample_weight)
            if shape.graph is not None:
                if self.training:
                    self.optimizer.prepare_step()  # the lr of this step onto the device, the host's count
                shape.graph.replay()
            else:
                if self.mixed is not None:
                    ensure_built(self.model, shape.x)  # the half copy needs the weights
                with backend.graph_scope():
                    self._body(shape, eager=True)
                shape.runs += 1
                if backend.supports_graphs and shape.runs >= self.warmup:
                    shape.graph, _ = backend.capture_graph(lambda: self._body(shape))
        self._seen += shape.n
        return self._vals

    def _body(self, shape: _Shape, eager: bool = False) -> Any:
        """The step itself: device work only (it is what the graph records). Run eagerly, it also
        does the optimizer's host half where the eager step does (after backward: the first
        forward may be what builds the model)."""
        model, mp = self.model, self.mixed
        if self.training:
            model.zero_grad()  # every parameter, frozen ones too, as the eager step does
        with mp.autocast(self.training) if mp is not None else contextlib.nullcontext():
            out, total, parts = self._forward_backward(shape, mp)
        if self.training:
            if eager:
                self.optimizer.prepare_step()
            if mp is not None:
                mp.apply()
            else:
                self.optimizer.apply_step()
        several = len(self._heads) > 1
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        vals = self._vals
        vals[0] = total
        i = 1
        for value in (parts if several else []):
            vals[i] = value
            i += 1
        for head, o, t in zip(self._heads, outs, shape.y):
            for _, metric in head.metrics if t is not None else ():
                vals[i] = metric(t, o)
                i += 1
        xp = self._backend.xp
        xp.multiply(vals, float(shape.n), out=self._scaled)
        self._sums += self._scaled
        return out

    def _forward_backward(self, shape: _Shape, mp: MixedPrecision | None) -> tuple[Any, Any, list[Any]]:
        """_body's forward, losses and backward: (the outputs, float32 under a mixed policy; the
        logged loss; the per-output losses)."""
        model = self.model
        out = model.forward(shape.x, training=self.training)
        if mp is not None:
            out = float32_outputs(out)
        several = len(self._heads) > 1
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        if len(outs) != len(self._heads):
            raise ValueError(f"CapturedStep: the model gives {len(outs)} outputs, the step was made for "
                             f"{len(self._heads)}")
        total: Any = 0.0
        grads: list[Any] = []
        parts: list[Any] = []
        for head, o, t in zip(self._heads, outs, shape.y):
            if head.loss is None:
                grads.append(None)
                continue
            if shape.w is not None:
                value, grad = weighted_loss_device(head.loss, head.weight, o, t, shape.w, self.training,
                                                   "CapturedStep.step")
            else:
                value = head.loss.forward(o, t)
                grad = head.loss.backward(head.weight) if self.training else None
            total = total + head.weight * value  # the eager step's sum, from 0.0, in output order
            grads.append(grad)
            parts.append(value)
        # the logged loss with the weight penalties of the weights this step started from, as eagerly
        reg = getattr(model, "regularization_loss", None)
        penalty = reg() if callable(reg) else regularization_loss(model)
        if not (isinstance(penalty, float) and penalty == 0.0):
            total = total + penalty
        grad = grads if several else grads[0]
        if self.training:
            if mp is not None:
                grad = mp.scale(grad)
            if self._backward_takes_flag:
                model.backward(grad, need_input_grad=False)  # nobody reads d(loss)/d(input)
            else:
                model.backward(grad)
        return out, total, parts

    # -- buffers --------------------------------------------------------------------------------
    def _place(self, backend: Backend) -> None:
        """(Re)make the value buffers on `backend`; graphs made elsewhere are dropped."""
        self._backend = backend
        self._shapes.clear()
        k = len(self.names)
        xp = backend.xp
        self._vals = xp.zeros(k, dtype=np.float64)
        self._sums = xp.zeros(k, dtype=np.float64)
        self._scaled = xp.zeros(k, dtype=np.float64)
        self._seen = 0

    def _check_baked(self) -> None:
        """A graph bakes in the optimizer's settings other than the lr (betas, momentum, clipping):
        when one changed, the graphs are captured again."""
        opt = self.optimizer
        baked = None
        if opt is not None:
            settings = {k: v for k, v in opt.hyperparams().items() if k not in ("lr", "learning_rate")}
            baked = (id(opt), tuple(sorted((k, repr(v)) for k, v in settings.items())), opt.clipnorm, opt.clipvalue,
                     id(self.mixed))
        if baked != self._baked:
            self._baked = baked
            for shape in self._shapes.values():
                shape.graph, shape.runs = None, 0

    def _shape_for(self, kind: Any, xs: list[Any], ys: list[Any], weighted: bool) -> _Shape:
        def sig(a: Any) -> Any:
            return None if a is None else (tuple(int(s) for s in a.shape), np.dtype(a.dtype).str)
        key = (kind, tuple(sig(a) for a in xs), tuple(sig(t) for t in ys), weighted)
        shape = self._shapes.get(key)
        if shape is None:
            xp = self._backend.xp
            w = xp.empty(xs[0].shape[:1], dtype=np.float64) if weighted else None  # float64, as batch_loss weighs
            targets = tuple(None if t is None else xp.empty(t.shape, dtype=t.dtype) for t in ys)
            inputs = [xp.empty(a.shape, dtype=a.dtype) for a in xs]
            shape = self._shapes[key] = _Shape(kind, inputs, targets, w)
        return shape

    def _fill(self, shape: _Shape, xs: list[Any], ys: list[Any], w: Any) -> None:
        """Copy the batch into the static buffers the graph reads."""
        backend = self._backend
        pairs = [*zip(shape.xs, xs), *((b, t) for b, t in zip(shape.y, ys) if b is not None)]
        if w is not None:
            pairs.append((shape.w, w))
        for dst, src in pairs:
            if backend.is_native(src):
                dst[...] = src  # a device-to-device copy (cast to the buffer's dtype)
            else:
                backend.host_to_device(dst, to_host(src))

    # -- results --------------------------------------------------------------------------------
    @property
    def samples(self) -> int:
        """Samples stepped since the last reset()."""
        return self._seen

    def results(self) -> dict[str, float]:
        """The loss and metrics averaged over the samples since the last reset() (weighted by batch
        size): one read of device memory. Empty before the first step."""
        if self._sums is None or self._seen == 0:
            return {}
        sums = to_host(self._sums)
        return {name: float(s) / self._seen for name, s in zip(self.names, sums)}

    def last(self) -> dict[str, float]:
        """The last batch's loss and metrics (one read of device memory)."""
        if self._vals is None:
            return {}
        return {name: float(v) for name, v in zip(self.names, to_host(self._vals))}

    def reset(self) -> None:
        """Start the running sums again (one fill on the device, outside any graph)."""
        if self._sums is not None:
            with use_backend(self._backend) if self._backend is not None else contextlib.nullcontext():
                self._sums.fill(0)
        self._seen = 0

    def __repr__(self) -> str:
        kind = "training" if self.training else "evaluation"
        return f"<gpunn CapturedStep ({kind}): {self.graphs} graph(s), values {self.names}>"
