"""TrainingMixin: the Keras-style model API that `gpunn.Sequential` and `gpunn.Model` inherit.

compile / fit / evaluate / predict / train_on_batch / test_on_batch, summary, moving a model
between backends, freezing for transfer learning, and save / load. The container (layers,
forward, backward) is gpunn.layers.container.Chain for a Sequential (gpunn/train/sequential.py
joins the two) and a graph or a tape for a Model (gpunn/train/network.py); this file only
drives the container. A model with several inputs or outputs takes lists or dicts of arrays, and
compile's per-output losses, weights and metrics live in gpunn/train/outputs.py.

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
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from gpunn._checks import check_finite, class_weight_arg, int_arg, is_float_dtype, positive_int, real_arg, sample_weight_arg
from gpunn.backend import backend_named, get_backend, is_foreign_array, to_host, use_backend
from gpunn.backend.base import native_byte_order
from gpunn.callbacks.base import CallbackList
from gpunn.callbacks.builtin import ProgbarLogger
from gpunn.callbacks.history import History
from gpunn.io.checkpoint import load_weights, optimizer_config, save_model, save_weights
from gpunn.io.config import model_to_config
from gpunn.io.onnx import DEFAULT_OPSET, export_onnx
from gpunn.layers.normalization import BatchNorm
from gpunn.optim import Optimizer, get_optimizer
from gpunn.random import host_rng
from gpunn.regularizers import regularization_loss
from gpunn.precision import POLICIES, Policy, get_policy
from gpunn.train import data_adapter, outputs
from gpunn.train.mixed_precision import ensure_built, float32_outputs, for_model
from gpunn.train.data_parallel import DataParallel, shard_loader
from gpunn.train.graph_mode import GraphMode, check_log_every

_NO_METRICS: tuple = ()


_int_arg = int_arg  # fit's epochs, batch sizes: "{where}: argument '{name}' must be an int >= {minimum}"


def _is_batch_iterable(x: Any) -> bool:
    """A source of batches (a DataLoader, a re-iterable, a Sequence, a function returning an
    iterator, an iterator), as opposed to the data itself; see gpunn.train.data_adapter."""
    return data_adapter.is_batch_source(x)


def _is_one_shot(x: Any) -> bool:
    """An iterator (a generator, iter(loader), ...): exhausted after one pass."""
    return data_adapter.is_one_shot(x)


def _walk(layer: Any) -> Iterator[Any]:
    """`layer` and its sublayers at any depth."""
    yield layer
    for child in layer.children.values():
        yield from _walk(child)


def _values_per_channel(bn: BatchNorm) -> int:
    """The values a BatchNorm sees per channel in one sample: the product of its non-channel axes."""
    shape = list(bn.input_shape)
    del shape[bn._axis]
    return math.prod(shape)


def _batchnorms_on_single_values(model: Any) -> list[Any]:
    """The built BatchNorm layers that would see one value per channel in a training batch of one
    sample: (N, C) or (N, C, 1) inputs (or (N, 1, C) channels_last), normalized with batch statistics."""
    return [m for m in _walk(model) if isinstance(m, BatchNorm) and m.built
            and (m.trainable or not m.track_running_stats) and _values_per_channel(m) == 1]


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


def _is_structure(value: Any, count: int | None) -> bool:
    """Whether `value` holds several arrays - a dict, or a list/tuple of arrays - rather than one
    array written as a (nested) list. `count` is how many the model takes (None: unknown); for one,
    only [x] is a structure (a list of many per-sample arrays is stacked, as it always was)."""
    if isinstance(value, dict):
        return True
    if not isinstance(value, (list, tuple)) or not value:
        return False
    if not all(hasattr(a, "shape") and hasattr(a, "dtype") for a in value):
        return False
    return len(value) == 1 if count == 1 else True


def _checked_x(a: Any, name: str, where: str) -> Any:
    a = native_byte_order(_as_array(a, name, where))
    if not is_float_dtype(a.dtype):
        raise TypeError(f"{where}: argument '{name}' must be a floating-point array, got dtype {a.dtype}; convert it, "
                        f"e.g. {name}.astype('float32') / 255")
    check_finite(a, name, where)  # on any backend's array: one Inf makes every loss after it Inf or NaN
    return a


def _checked_y(a: Any, name: str, where: str) -> Any:
    return native_byte_order(_as_array(a, name, where))


def _imported(value: Any, backend: Any, label: str, where: str) -> Any:
    """`value` with every foreign array in it (a torch or JAX tensor, anything with `__dlpack__` or
    `__array__`: one array, or the arrays of a list/tuple/dict) imported into `backend`, the
    model's: in place when it lives on that backend's device (a torch CPU tensor into NumPy), one
    copy otherwise. Its dtype is kept, so the checks below word their errors as for NumPy input."""
    if is_foreign_array(value):
        return backend.asarray(value, where=f"{where}: argument '{label}'")
    if isinstance(value, dict):
        return {k: _imported(v, backend, f"{label}[{k!r}]", where) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and any(is_foreign_array(v) for v in value):
        return type(value)(_imported(v, backend, f"{label}[{i}]", where) for i, v in enumerate(value))
    return value


def _checked_tree(value: Any, label: str, count: int | None, check: Any, where: str) -> tuple[Any, list[tuple]]:
    """`value` (one array, a list/tuple of arrays or a dict of them) with each array checked, and
    (name, array) for each, in order."""
    if not _is_structure(value, count):
        a = check(value, label, where)
        return a, [(label, a)]
    if isinstance(value, dict):
        out = {}
        for k, a in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: argument '{label}' is a dict whose keys must be names (str), got {k!r}")
            out[k] = check(a, f"{label}[{k!r}]", where)
        return out, [(f"{label}[{k!r}]", a) for k, a in out.items()]
    items = [check(a, f"{label}[{i}]", where) for i, a in enumerate(value)]
    if count == 1:
        return items[0], [(f"{label}[0]", items[0])]
    return items, [(f"{label}[{i}]", a) for i, a in enumerate(items)]


def check_xy(x: Any, y: Any, where: str, need_y: bool = True, model: Any = None) -> tuple[Any, Any]:
    """Inputs x (floating point, finite) and targets y with one entry per sample, in native byte
    order (swapped here once, not in every batch). A float x of another dtype than the model's is
    cast batch by batch (see Layer._as_input).

    For a model with several inputs or outputs, x and y are each a list of arrays or a dict keyed
    by the input (output) names; every array must hold the same number of samples. `model`
    tells how many inputs and outputs there are (without it a dict or a list of arrays is read as
    several)."""
    n_in = model._input_count() if model is not None else None
    n_out = model._output_count() if model is not None else None
    backend = model.backend if model is not None else get_backend()
    x = _imported(x, backend, "x", where)
    y = _imported(y, backend, "y", where)
    x, leaves = _checked_tree(x, "x", n_in, _checked_x, where)
    if y is None:
        if need_y:
            raise ValueError(f"{where}: argument 'y' is required when 'x' is an array")
    else:
        y, y_leaves = _checked_tree(y, "y", n_out, _checked_y, where)
        leaves = leaves + y_leaves
    first_name, first = leaves[0]
    for name, a in leaves[1:]:
        if a.shape[0] != first.shape[0]:
            raise ValueError(f"{where}: arguments '{first_name}' and '{name}' must have the same number of samples, "
                             f"got {first.shape[0]} and {a.shape[0]}")
    return x, y


def _host_outputs(out: Any) -> Any:
    """A batch's outputs on the host: one array, or a list for several outputs."""
    return [to_host(o) for o in out] if isinstance(out, (list, tuple)) else to_host(out)


def _joined(parts: list[Any]) -> Any:
    """The batches' outputs joined along the batch axis (per output for several)."""
    if isinstance(parts[0], list):
        return [np.concatenate([p[i] for p in parts], axis=0) for i in range(len(parts[0]))]
    return np.concatenate(parts, axis=0)


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
    #: compile(distributed=True): the data-parallel state (gpunn/train/data_parallel.py), else None
    _dp: DataParallel | None = None
    #: compile(cuda_graph=True): the captured steps (gpunn/train/graph_mode.py), else None
    _graphs: GraphMode | None = None
    #: compile(precision=...): the policy, and its MixedPrecision once a step made it
    _policy: Policy = POLICIES["fp32"]
    _mp: Any = None

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
        if isinstance(opt, Optimizer):
            opt.move_to(new)  # first: the parameters it packed become views on `new`, which _place keeps
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
    def compile(self, loss: Any, optimizer: Any = "adam", metrics: Iterable[Any] | str | dict | None = None,
                loss_weights: Any = None, distributed: bool = False, cuda_graph: bool = False,
                log_every: int | None = None, precision: str = "fp32", **optimizer_kwargs: Any) -> None:
        """Set the loss, the optimizer (a name such as "adam", with `optimizer_kwargs` like lr=1e-3,
        which starts from Keras's defaults for that name; a gpunn.optim instance, bound to this
        model here when built without parameters; or a class such as gpunn.optim.RMSprop, built on
        this model with its own defaults and `optimizer_kwargs`) and the metrics ("accuracy", ...).

        The loss is matched to the activation the model's output ends in (gpunn.losses.match_output:
        a softmax output with a cross-entropy on logits trains with the cross-entropy on
        probabilities), and the metrics read the output as that loss declares it
        (`Loss.from_logits`): with a loss on logits "binary_accuracy" thresholds at 0, otherwise at 0.5.

        A model with several outputs takes one loss for all, a list or a dict keyed by output name,
        with `loss_weights`, and metrics per output (see gpunn.train.outputs).

        `distributed=True`: data-parallel training when the script runs as several processes
        (`mpiexec -n N python ...`): gradients averaged across ranks, data sharded, logs reduced,
        output on rank 0 (see gpunn/train/data_parallel.py). In a single process it changes nothing.

        `cuda_graph=True`: fit, train_on_batch, test_on_batch and evaluate capture the whole step
        (forward, loss, backward, clipping, the update, BatchNorm statistics, the metrics' sums) as
        a CUDA graph once per input shape and replay it per batch (gpunn/train/captured.py); the
        host reads the logs every `log_every` batches (default 50) and at each epoch's end (see
        gpunn/train/graph_mode.py). On the NumPy backend the same step runs eagerly.

        `precision`: "fp32" (the default), "tf32" (float32 storage, TF32 matrix products),
        "bf16-mixed" or "fp16-mixed" (float32 master weights and optimizer state, layers computing
        in bfloat16 / float16; fp16 with dynamic loss scaling): see gpunn/precision.py for what
        each stores in what precision and gpunn/train/mixed_precision.py for the step. fit,
        train_on_batch, evaluate and predict run under it."""
        where = "compile"
        policy = get_policy(precision, where)
        if policy.mixed and self.dtype != np.float32:
            raise ValueError(f"{where}: argument 'precision' {policy.name!r} keeps float32 master weights; this model "
                             f"computes in {self.dtype}: build it in float32")
        if policy.name != "fp32" and distributed:
            raise ValueError(f"{where}: precision={policy.name!r} with distributed=True is not supported yet (the "
                             "gradient all-reduce runs on the float32 gradients); choose one")
        if not isinstance(distributed, bool):
            raise TypeError(f"{where}: argument 'distributed' must be True or False, got {distributed!r}")
        if not isinstance(cuda_graph, bool):
            raise TypeError(f"{where}: argument 'cuda_graph' must be True or False, got {cuda_graph!r}")
        if cuda_graph and distributed:
            raise ValueError(f"{where}: cuda_graph=True with distributed=True is not supported yet (a captured step "
                             "does not hold the gradient all-reduce); choose one")
        every = check_log_every(log_every, cuda_graph, where)
        outputs.check_loss_spec(loss, where)
        if isinstance(optimizer, Optimizer):
            if optimizer_kwargs:
                raise ValueError(f"{where}: optimizer settings {sorted(optimizer_kwargs)} given with an Optimizer "
                                 "instance; set them on the instance instead")
            opt = optimizer
        elif isinstance(optimizer, str):
            try:
                opt = get_optimizer(optimizer, self, keras_defaults=True, **optimizer_kwargs)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        elif isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
            opt = optimizer(self, **optimizer_kwargs)  # a class: its own (documented) defaults
        else:
            raise TypeError(f"{where}: argument 'optimizer' must be a name such as 'adam', a gpunn Optimizer or an "
                            f"Optimizer class, got {type(optimizer).__name__}")
        names = self._output_names_known()
        # a subclassed model learns its outputs at its first forward: resolved then (_output_specs)
        specs = self._resolve_outputs(names, loss, metrics, loss_weights, where) if names is not None else None
        if isinstance(opt, Optimizer) and getattr(opt, "bound", True) is False:
            opt.bind(self)
        self.optimizer = opt
        self._compile_args = (loss, metrics, loss_weights)
        self._set_outputs(specs)
        if self.shuffle_seed is None:
            self.shuffle_seed = int(host_rng().integers(2**62))
        self._dp = DataParallel(self) if distributed else None
        self._graphs = GraphMode(self, every) if cuda_graph else None
        self._policy, self._mp = policy, None
        self.compiled = True

    @property
    def precision(self) -> str:
        """The precision policy compile set ("fp32" until then): see compile."""
        return self._policy.name

    @property
    def grad_scaler(self) -> Any:
        """fp16-mixed's GradScaler (its scale, growth tracker; saved with the model), else None."""
        mp = for_model(self)
        return mp.scaler if mp is not None else None

    # -- outputs --------------------------------------------------------------------------------
    def _input_count(self) -> int | None:
        """How many inputs the model takes (None: any structure; a subclass's call decides)."""
        return 1

    def _output_count(self) -> int | None:
        names = self._output_names_known()
        return len(names) if names is not None else None

    def _output_names_known(self) -> list[str] | None:
        """The output names, or None while they are unknown (a subclass before its first forward)."""
        names = getattr(self, "output_names", None)
        if names is not None:
            return list(names)
        return None if getattr(self, "is_subclassed", False) else ["output"]

    def _output_layers(self) -> list[Any] | None:
        """The layer each output comes from, for the loss's output_activation: the model itself for
        a chain (whose last layer output_activation looks through)."""
        return [self]

    def _resolve_outputs(self, names: list[str], loss: Any, metrics: Any, loss_weights: Any,
                         where: str) -> list[outputs.OutputSpec]:
        layers = self._output_layers() or [None] * len(names)
        return outputs.resolve(names, layers, loss, metrics, loss_weights, where)

    def _set_outputs(self, specs: list[outputs.OutputSpec] | None) -> None:
        self._outputs = specs
        if specs is None:
            self.loss, self.metric_fns, self.loss_weights = None, _NO_METRICS, None
            return
        self.loss = specs[0].loss if len(specs) == 1 else [s.loss for s in specs]
        self.loss_weights = [s.weight for s in specs]
        self.metric_fns = outputs.metric_fns(specs)

    def _output_specs(self, n: int, where: str) -> list[outputs.OutputSpec]:
        """The per-output settings for a forward that returned `n` outputs (resolving a compile
        made before a subclassed model knew its outputs)."""
        specs = getattr(self, "_outputs", None)
        if specs is None:
            loss, metrics, loss_weights = self._compile_args
            specs = self._resolve_outputs(self._output_names_known() or [f"output_{i + 1}" for i in range(n)],
                                          loss, metrics, loss_weights, "compile")
            self._set_outputs(specs)
        if len(specs) != n:
            raise RuntimeError(f"{where}: the model returned {n} outputs but was compiled for {len(specs)}; "
                               "compile again")
        return specs

    def _require_compiled(self, where: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"{where}: the model is not compiled; call compile(loss=..., optimizer=..., "
                               "metrics=[...]) first")

    def _sync_optimizer(self) -> None:
        """Re-create the optimizer when layers were frozen or unfrozen after it packed its buffers
        (it only updates the parameters it packed): fresh moments, like Keras's re-compile."""
        opt = self.optimizer
        if isinstance(opt, Optimizer) and opt.backend is not self.backend:
            opt.move_to(self.backend)  # e.g. an Optimizer over a parameter list, built under another backend
        packed = getattr(opt, "params", None)
        if not packed:
            return
        now = [id(p) for p in self.parameters() if p.trainable]
        if now != [id(p) for p in packed]:
            self.optimizer = self._rebuild_optimizer(opt)

    def _on_main_rank(self) -> bool:
        """Whether this process prints and writes: always alone, rank 0 in a data-parallel run."""
        return self._dp is None or self._dp.rank == 0

    def _shard(self) -> tuple[int, int] | None:
        """(rank, world_size) for array data in a data-parallel run, else None."""
        return self._dp.shard if self._dp is not None else None

    # -- one batch ------------------------------------------------------------------------------
    def _objective(self, value: float) -> float:
        reg = getattr(self, "regularization_loss", None)
        if callable(reg):
            return value + float(reg())
        return value + float(regularization_loss(self))

    def _metric_values(self, ys: list[Any], outs: list[Any], specs: list[outputs.OutputSpec]) -> dict[str, float]:
        logs: dict[str, float] = {}
        for spec, y, out in zip(specs, ys, outs):
            if not spec.metric_fns or y is None:
                continue
            host_out, host_y = to_host(out), to_host(y)
            logs.update({name: float(fn(host_y, host_out)) for name, fn in spec.metric_fns})
        return logs

    def _step(self, xb: Any, yb: Any, sample_weight: Any, training: bool, where: str) -> dict[str, float]:
        """Forward, the losses per output, and with `training` backward and one optimizer step."""
        dp = self._dp if training else None
        if dp is not None:
            dp.prepare(xb)  # first step: same weights everywhere, gradients averaged across ranks
        mp = for_model(self)
        if mp is not None:
            ensure_built(self, xb)
        if training:
            self.zero_grad()  # every parameter, frozen ones too, so their grads never pile up
            if dp is not None:
                dp.begin_step()
        with mp.autocast(training) if mp is not None else contextlib.nullcontext():
            logs, outs, ys, specs, grads = self._forward_losses(xb, yb, sample_weight, training, where, mp)
            if training and grads is not None:
                self.backward(grads, need_input_grad=False)  # nobody reads d(loss)/d(input)
        if training and grads is not None:
            if mp is not None:
                mp.step()
            else:
                self.optimizer.step()
        logs.update(self._metric_values(ys, outs, specs))
        return logs

    def _forward_losses(self, xb: Any, yb: Any, sample_weight: Any, training: bool, where: str,
                        mp: Any) -> tuple[dict[str, float], list[Any], list[Any], list[Any], Any]:
        """_step's forward and losses: (logs, outputs, targets, specs, the loss gradient for
        backward, or None when the step must not be applied: not training, or a non-finite loss)."""
        dp = self._dp if training else None
        out = self.forward(xb, training=training)
        if mp is not None:
            out = float32_outputs(out)
        several = isinstance(out, (list, tuple))
        outs = list(out) if several else [out]
        specs = self._output_specs(len(outs), where)
        names = [s.name for s in specs]
        ys = outputs.align(yb, names, "y", where)
        total, grads, parts = 0.0, [], {}
        for spec, o, y in zip(specs, outs, ys):
            if spec.loss is None:
                grads.append(None)
                continue
            value, grad = outputs.batch_loss(spec, o, y, sample_weight, training, where)
            total += spec.weight * value
            grads.append(grad)
            parts[f"{spec.name}_loss"] = value
        loss = self._objective(total)
        logs = {"loss": loss}
        if len(specs) > 1:
            logs.update(parts)
        if not training:
            return logs, outs, ys, specs, None
        finite = dp.agree_finite(loss) if dp is not None else math.isfinite(loss)
        if not finite:
            return logs, [], [], [], None  # never applied: the weights stay as they were (TerminateOnNaN stops the fit)
        grad = grads if several else grads[0]
        return logs, outs, ys, specs, mp.scale(grad) if mp is not None else grad

    def _train_batch(self, xb: Any, yb: Any, sample_weight: Any = None) -> dict[str, float]:
        """One update on a batch: xb and yb are arrays, lists or dicts (several inputs/outputs);
        `sample_weight` None or one weight per sample (the loss is their weighted mean)."""
        if self._graphs is not None:
            return self._graphs.batch(xb, yb, sample_weight, True, "fit")
        return self._step(xb, yb, sample_weight, True, "fit")

    def _test_batch(self, xb: Any, yb: Any, sample_weight: Any = None) -> dict[str, float]:
        """The losses and metrics of a batch in inference mode (see _train_batch)."""
        if self._graphs is not None:
            return self._graphs.batch(xb, yb, sample_weight, False, "evaluate")
        return self._step(xb, yb, sample_weight, False, "evaluate")

    def _result(self, logs: dict[str, float], return_dict: bool) -> Any:
        """The logs as a dict, or (Keras's order) the loss alone, or [loss, *per-output losses, *metrics]."""
        if return_dict:
            return dict(logs)
        specs = getattr(self, "_outputs", None) or []
        extra = [*outputs.loss_names(specs), *(n for n, _ in self.metric_fns)]
        if not extra:
            return logs["loss"]
        return [logs["loss"], *(logs[n] for n in extra if n in logs)]

    def _weights_arg(self, sample_weight: Any, x: Any, where: str) -> Any:
        if sample_weight is None:
            return None
        first = x if hasattr(x, "shape") else (next(iter(x.values())) if isinstance(x, dict) else x[0])
        return sample_weight_arg(sample_weight, int(first.shape[0]), "sample_weight", where)

    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None, return_dict: bool = False) -> Any:
        """One update on (x, y); returns the loss, or [loss, *metrics] when metrics were compiled
        (with several outputs: [loss, *each output's loss, *metrics])."""
        where = "train_on_batch"
        self._require_compiled(where)
        x, y = check_xy(x, y, where, model=self)
        w = self._weights_arg(sample_weight, x, where)
        with self._backend_scope():
            self._sync_optimizer()
            return self._result(self._train_batch(x, y, sample_weight=w), return_dict)

    def test_on_batch(self, x: Any, y: Any, sample_weight: Any = None, return_dict: bool = False) -> Any:
        """Loss (and metrics) on (x, y) in inference mode, without an update."""
        where = "test_on_batch"
        self._require_compiled(where)
        x, y = check_xy(x, y, where, model=self)
        w = self._weights_arg(sample_weight, x, where)
        with self._backend_scope():
            return self._result(self._test_batch(x, y, sample_weight=w), return_dict)

    # -- batching -------------------------------------------------------------------------------
    @staticmethod
    def _batches(x: Any, y: Any, batch_size: int, order: np.ndarray | None) -> Iterator[tuple[Any, Any]]:
        """(xb, yb) slices of validated arrays (each an array, a list or a dict of them), in `order`
        when given; see gpunn.train.data_adapter for fit's and evaluate's batches."""
        n = data_adapter.num_samples(x)
        for start in range(0, n, batch_size):
            index = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            yield data_adapter.take(x, index), data_adapter.take(y, index)

    def _epoch_order(self, n: int, epoch: int) -> np.ndarray:
        return data_adapter.epoch_order(int(self.shuffle_seed or 0), n, epoch)

    def _run_eval(self, data: Any, where: str = "evaluate", epoch: int = 0) -> dict[str, float]:
        """Means of loss and metrics over the batches of `data` (an ArrayData or BatchData),
        each batch weighted by its number of samples (per-sample weights are inside its loss)."""
        if self._graphs is not None:
            return self._graphs.evaluate(data, where, epoch)
        totals: dict[str, float] = {}
        seen = 0
        with contextlib.closing(data.epoch(epoch)) as batches:
            for xb, yb, swb in batches:
                n = data_adapter.batch_size_of(xb)
                logs = self._test_batch(xb, yb) if swb is None else self._test_batch(xb, yb, sample_weight=swb)
                for k, v in logs.items():
                    totals[k] = totals.get(k, 0.0) + v * n
                seen += n
        data.end_epoch()
        if self._dp is not None:
            totals, seen = self._dp.reduce_totals(totals, seen)  # the mean over every rank's samples
        if seen == 0:
            raise data_adapter.no_batches_error(getattr(data, "source", None), "data", where)
        return {k: v / seen for k, v in totals.items()}

    def _adapt_validation(self, validation_data: Any, batch_size: int, steps: int | None, passes: int,
                          where: str) -> Any:
        """fit's validation_data as batches: (x, y), (x, y, sample_weight), or a batch source."""
        label = f"{where} (validation_data)"
        if _is_batch_iterable(validation_data):
            if _is_one_shot(validation_data) and passes > 1 and steps is None:
                raise data_adapter.one_shot_error(validation_data, "validation_data", where, passes,
                                                  "validation_steps")
            shard_loader(validation_data, self._dp)
            return data_adapter.BatchData(validation_data, "validation data", label, steps=steps)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            got = (f"a {type(validation_data).__name__} of {len(validation_data)}"
                   if isinstance(validation_data, (tuple, list)) else type(validation_data).__name__)
            raise ValueError(f"{where}: argument 'validation_data' must be a pair (x_val, y_val), a triple (x_val, "
                             f"y_val, sample_weight_val) or a batch source such as a DataLoader, got {got}")
        vx, vy = check_xy(validation_data[0], validation_data[1], label, model=self)
        sw = validation_data[2] if len(validation_data) == 3 else None
        vsw = data_adapter.array_weights(sw, None, vx, vy, label) if sw is not None else None
        return data_adapter.ArrayData(vx, vy, vsw, batch_size, steps=steps, shard=self._shard())

    # -- fit / evaluate / predict ---------------------------------------------------------------
    def fit(self, x: Any, y: Any = None, epochs: int = 1, batch_size: int = 32, validation_data: Any = None,
            validation_split: float = 0.0, shuffle: bool = True, verbose: int = 1, callbacks: Any = None,
            initial_epoch: int = 0, sample_weight: Any = None, class_weight: dict[int, float] | None = None,
            steps_per_epoch: int | None = None, validation_steps: int | None = None) -> Any:
        """Train for epochs initial_epoch..epochs-1; returns a History whose .history maps
        "loss", each metric and their "val_" forms to per-epoch lists.

        `x` (with `y`) is arrays - each an array, or a list or dict of them for several inputs
        (outputs) - or a source of (x, y) / (x, y, sample_weight) batches with y=None: a DataLoader,
        any re-iterable, a Sequence (__len__ / __getitem__, as Keras's), a function returning a
        fresh iterator per epoch, or an iterator (one pass, unless `steps_per_epoch` spreads it).
        `sample_weight` (one weight per sample, with arrays) or `class_weight` (class index ->
        weight) make the loss a weighted mean; `steps_per_epoch` / `validation_steps` set the
        batches per epoch (see gpunn.train.data_adapter). `validation_data` is (x, y),
        (x, y, sample_weight) or a batch source; `validation_split` holds out the last samples
        (and their sample weights)."""
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
        if steps_per_epoch is not None:
            steps_per_epoch = positive_int(steps_per_epoch, "steps_per_epoch", where)
        if validation_steps is not None:
            validation_steps = positive_int(validation_steps, "validation_steps", where)
        if class_weight is not None:
            class_weight = class_weight_arg(class_weight, "class_weight", where)
        passes = epochs - initial_epoch
        seed = int(self.shuffle_seed or 0)
        val = None
        if _is_batch_iterable(x):
            if y is not None:
                raise ValueError(f"{where}: argument 'y' must be None when 'x' yields (x, y) batches")
            if sample_weight is not None:
                raise ValueError(f"{where}: argument 'sample_weight' needs array data; a batch source gives its "
                                 "weights in (x, y, sample_weight) batches")
            if validation_split:
                raise ValueError(f"{where}: argument 'validation_split' needs array data; pass validation_data")
            if _is_one_shot(x) and passes > 1 and steps_per_epoch is None:
                raise data_adapter.one_shot_error(x, "x", where, passes, "steps_per_epoch")
            shard_loader(x, self._dp)
            train: Any = data_adapter.BatchData(x, "training data", where, steps=steps_per_epoch, shuffle=shuffle,
                                                seed=seed, class_weight=class_weight, replay_epochs=True)
        else:
            x, y = check_xy(x, y, where, model=self)
            if sample_weight is not None and class_weight is not None:
                data_adapter.array_weights(sample_weight, class_weight, x, y, where)  # refuses both
            sw = data_adapter.array_weights(sample_weight, None, x, y, where)
            if validation_split:
                if validation_data is not None:
                    raise ValueError(f"{where}: give 'validation_data' or 'validation_split', not both")
                (x, y, sw), (vx, vy, vsw) = data_adapter.split_arrays(x, y, sw, validation_split, where)
                val = data_adapter.ArrayData(vx, vy, vsw, batch_size, steps=validation_steps, shard=self._shard())
            if class_weight is not None:  # the training samples only, as in Keras
                sw = data_adapter.array_weights(None, class_weight, x, y, where)
            train = data_adapter.ArrayData(x, y, sw, batch_size, shuffle=shuffle, seed=seed, steps=steps_per_epoch,
                                           shard=self._shard())
        if validation_data is not None:
            val = self._adapt_validation(validation_data, batch_size, validation_steps, passes, where)
        self._check_last_batch(train, where)
        if callbacks is None:
            callbacks = []
        elif not isinstance(callbacks, (list, tuple)):
            callbacks = [callbacks]
        history = History()
        # History after the user's callbacks, so it records what they add to the logs (e.g. "lr")
        cbs = CallbackList([*callbacks, history] + ([ProgbarLogger(verbose)] if verbose else []),
                           main_rank=self._on_main_rank())
        cbs.set_model(self)
        cbs.set_params({"epochs": epochs, "steps": train.steps, "samples": train.num_samples,
                        "batch_size": batch_size, "verbose": verbose, "do_validation": val is not None,
                        "metrics": ["loss", *(n for n, _ in self.metric_fns)]})
        self.history = history
        self.stop_training = False
        logs: dict[str, float] = {}
        with self._backend_scope():
            self._sync_optimizer()
            cbs.on_train_begin()
            try:
                for epoch in range(initial_epoch, epochs):
                    if epoch > initial_epoch and not train.has_more():
                        self._ran_out("training data", train, epoch, epochs, "steps_per_epoch")
                        break
                    cbs.on_epoch_begin(epoch)
                    logs = self._fit_epoch(train, epoch, cbs, again=epoch > initial_epoch)
                    val_dry = val is not None and not self.stop_training and not val.has_more()
                    if val is not None and not self.stop_training and not val_dry:
                        logs.update({f"val_{k}": v for k, v in
                                     self._run_eval(val, f"{where} (validation_data)", epoch).items()})
                    self.epoch = epoch + 1
                    cbs.on_epoch_end(epoch, logs)
                    if self._dp is not None:
                        self.stop_training = self._dp.agree_stop(self.stop_training)
                    if train.ran_out or val_dry or (val is not None and val.ran_out):
                        dry = (train, "training data", "steps_per_epoch") if train.ran_out else \
                            (val, "validation data", "validation_steps")
                        self._ran_out(dry[1], dry[0], epoch, epochs, dry[2])
                        break
                    if self.stop_training:
                        break
            finally:
                train.close()
                if val is not None:
                    val.close()
            cbs.on_train_end(logs)
        return history

    @staticmethod
    def _ran_out(what: str, data: Any, epoch: int, epochs: int, steps_name: str) -> None:
        """Warn that a one-shot iterator ran out before `epochs` epochs of its steps: the fit stops
        there, with what it trained, as Keras's "Your input ran out of data" does."""
        warnings.warn(f"fit: the {what} ran out in epoch {epoch + 1} of {epochs}; training stopped there. A one-shot "
                      f"iterator must yield {steps_name}={data.steps} batches for every epoch ({data.steps} x "
                      f"{epochs}); {data_adapter.REITERABLE} to train longer", data_adapter.DataRanOutWarning,
                      stacklevel=3)

    def _fit_epoch(self, data: Any, epoch: int, cbs: Any, again: bool = False) -> dict[str, float]:
        """One epoch of training over the batches `data` (an ArrayData or BatchData) gives it."""
        if self._graphs is not None:
            return self._graphs.fit_epoch(data, epoch, cbs, again)
        totals: dict[str, float] = {}
        seen = 0
        with contextlib.closing(data.epoch(epoch)) as batches:
            for step, (xb, yb, swb) in enumerate(batches):
                cbs.on_train_batch_begin(step)
                self._last_batch_x = xb  # for TrainingMonitor's activation probe
                # sample_weight only when there are weights: the step's signature without them is the old one
                batch_logs = self._train_batch(xb, yb) if swb is None else self._train_batch(xb, yb, sample_weight=swb)
                n = data_adapter.batch_size_of(xb)
                for k, v in batch_logs.items():
                    totals[k] = totals.get(k, 0.0) + v * n
                seen += n
                cbs.on_train_batch_end(step, {**batch_logs, "size": n})
                if self._dp is not None:
                    self.stop_training = self._dp.agree_stop(self.stop_training)  # every rank stops at once
                if self.stop_training:
                    break
        data.end_epoch()
        if self._dp is not None:
            totals, seen = self._dp.reduce_totals(totals, seen)
        if seen == 0:
            raise data_adapter.no_batches_error(getattr(data, "source", None), "training data", "fit", epoch, again)
        return {k: v / seen for k, v in totals.items()}

    def _check_last_batch(self, data: Any, where: str) -> None:
        """Refuse, before any training, batches of one sample when a BatchNorm would then normalize
        one value per channel: such a batch has no variance. PyTorch raises "Expected more than 1
        value per channel when training" at that step; checking here loses no epoch's work to it.
        Checked where the batch sizes are known: arrays, and a DataLoader once the model is built."""
        if isinstance(data, data_adapter.BatchData):
            loader = data.source
            if data.stream or getattr(loader, "drop_last", True) or not getattr(self, "built", False):
                return
            n_train, batch_size = getattr(loader, "num_samples", None), getattr(loader, "batch_size", None)
            if not isinstance(n_train, int) or not isinstance(batch_size, int):
                return
        else:
            n_train, batch_size = data.samples, data.batch_size
            # the last batch of an epoch: a full one when steps_per_epoch stops before the data's end
            n_train = min(n_train, data.steps * batch_size)
        if batch_size != 1 and n_train % batch_size != 1:
            return
        if not getattr(self, "built", False):
            if not any(isinstance(m, BatchNorm) for m in _walk(self)):
                return
            with self._backend_scope():  # build from one sample, as the first batch would (no state changes)
                self.forward(data_adapter.take(data.x, slice(0, 1)), training=False)
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
                 return_dict: bool = False, sample_weight: Any = None, steps: int | None = None) -> Any:
        """Loss (plus compiled metrics, as [loss, *metrics]) in inference mode, averaged over the
        batches weighted by their sizes. `x` and `y` as in fit (arrays, or a batch source with
        y=None); `sample_weight` weights each sample's loss (as the batches' third entry does);
        `steps` stops after that many batches."""
        where = "evaluate"
        self._require_compiled(where)
        batch_size = _int_arg(batch_size, "batch_size", where, 1)
        if steps is not None:
            steps = positive_int(steps, "steps", where)
        if _is_batch_iterable(x) and y is None:
            if sample_weight is not None:
                raise ValueError(f"{where}: argument 'sample_weight' needs array data; a batch source gives its "
                                 "weights in (x, y, sample_weight) batches")
            shard_loader(x, self._dp)
            data: Any = data_adapter.BatchData(x, "data", where, steps=steps)
        else:
            x, y = check_xy(x, y, where, model=self)
            sw = data_adapter.array_weights(sample_weight, None, x, y, where)
            data = data_adapter.ArrayData(x, y, sw, batch_size, steps=steps, shard=self._shard())
        with self._backend_scope():
            try:
                logs = self._run_eval(data, where)
            finally:
                data.close()
        if verbose and self._on_main_rank():
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return self._result(logs, return_dict)

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0) -> Any:
        """The model's outputs (inference mode) for every sample of `x`, as one host NumPy array;
        for a model with several outputs, a list of them (in output order)."""
        where = "predict"
        batch_size = _int_arg(batch_size, "batch_size", where, 1)
        if _is_batch_iterable(x):
            parts = []
            source = data_adapter.BatchData(x, "data", where, need_y=False)  # a Sequence or a function too
            with self._backend_scope(), contextlib.closing(source.epoch(0)) as batches:
                for xb, _, _ in batches:
                    parts.append(_host_outputs(self._infer(xb)))
        else:
            x, _ = check_xy(x, None, where, need_y=False, model=self)
            with self._backend_scope():
                parts = [_host_outputs(self._infer(xb)) for xb, _ in self._batches(x, None, batch_size, None)]
        if not parts:
            raise ValueError(f"{where}: argument 'x' yielded no samples")
        return _joined(parts)

    def _infer(self, xb: Any) -> Any:
        """One batch's outputs in inference mode, under the compiled precision policy (float32 out)."""
        mp = for_model(self)
        if mp is None:
            return self.forward(xb, training=False)
        ensure_built(self, xb)
        with mp.autocast(training=False):
            return float32_outputs(self.forward(xb, training=False))

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
        rows = [(f"{layer.name} ({type(layer).__name__})", str(("N", *layer.output_shape)), f"{layer.count_params():,}")
                for layer in self.layers]
        return summary_table(self, ("Layer (type)", "Output shape", "Params"), rows, print_fn)

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

    def export_onnx(self, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> None:
        """The built model, in inference mode, as an ONNX file with a dynamic batch axis (atomic);
        ONNX Runtime reproduces predict on it. Needs the `onnx` extra; see gpunn.io.onnx."""
        with self._backend_scope():
            export_onnx(self, path, opset=opset)

    def load_weights(self, path: str | os.PathLike, verify: bool = True) -> None:
        """Load weights saved by save or save_weights; a mismatch raises and leaves the model unchanged.

        `verify=False` skips the checksum, for a safetensors file written by another tool."""
        with self._backend_scope():
            load_weights(self, path, verify=verify)


def summary_table(model: Any, heads: tuple[str, ...], rows: list[tuple[str, ...]], print_fn: Any = print) -> str:
    """model.summary()'s text: a column per head (the third, the parameter count, right-aligned; a
    fourth, the connections, as it comes), one row per layer, then the parameter totals."""
    widths = [max(len(heads[i]), *(len(r[i]) for r in rows)) + 2 for i in range(min(3, len(heads)))]
    last = max(len(heads[3]), *(len(r[3]) for r in rows)) if len(heads) > 3 else 0
    rule = "=" * (sum(widths) + last)

    def line(cells: tuple[str, ...]) -> str:
        text = f"{cells[0]:<{widths[0]}}{cells[1]:<{widths[1]}}{cells[2]:>{widths[2] - 2}}"
        return (text + (f"  {cells[3]}" if len(cells) > 3 else "")).rstrip()
    trainable = sum(p.size for p in model.parameters() if p.trainable)
    total = model.count_params()
    lines = [f"Model: {model.name}", rule, line(heads), rule, *(line(r) for r in rows),
             rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
             f"Non-trainable params: {total - trainable:,}", rule]
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
