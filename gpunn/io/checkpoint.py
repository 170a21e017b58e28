"""Saving and loading models: safetensors for arrays, JSON (in the safetensors metadata) for the rest.

One file holds everything, so one atomic rename publishes a checkpoint:
- tensors "model/<state key>" (parameters and buffers such as BatchNorm's running statistics) and,
  in a full save, "optimizer/<buffer>" (the optimizer's moment buffers);
- metadata "gpunn.format" ("model" or "weights"), "gpunn.architecture" (model.get_config(): the
  layer configs, input shape and dtype), "gpunn.layers" (the class owning each state key, to name
  mismatches), "gpunn.compile" (loss, metrics, optimizer class and settings; per output for
  several outputs; the precision policy and fp16's loss-scaler state when not fp32), "gpunn.optimizer" (its scalar state), "gpunn.training" (epochs done, the
  shuffle seed, the dropout generator's state) and "gpunn.sha256" (a checksum of the whole header
  and the tensor bytes, so a flipped bit or digit anywhere is caught, not loaded).

A checkpoint is hostile until validated. The `safetensors` package checks the file's structure
before any tensor is decoded, and gpunn.io.safetensors checks the checksum (see there).
Nothing is unpickled and nothing a file names is imported:
arrays are raw bytes with a declared dtype and shape, configs are JSON, and only registered gpunn
classes (or the caller's `custom_objects`) are constructed, through model_from_config. The model
is rebuilt under an allocation budget set by the file's own tensors, so a small file declaring a
huge layer fails in bounded memory. Every check runs before the first write into a model, so a bad
file leaves the model as it was.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import warnings
from typing import Any

import numpy as np

from gpunn.io.meta import CheckpointError, Meta
from gpunn.io.config import (ConfigError, build_as_configured, build_model, model_to_config, object_from_config,
                                object_to_config, optimizer_from_config)
from gpunn.io.registry import registered_name
from gpunn.io.safetensors import SafetensorsError, read_safetensors, write_safetensors
from gpunn.backend import get_backend
from gpunn.metrics import get_metric
from gpunn.precision import POLICIES as PRECISIONS

FORMAT_VERSION = "2"  # 2: the checksum covers the header (metadata) too
_READABLE_VERSIONS = ("1", "2")  # version 1 files carry a tensor-only checksum: read with verify=False
_MODEL_PREFIX = "model/"
_OPT_PREFIX = "optimizer/"
_CHECKSUM = "gpunn.sha256"  # of the header and the tensor bytes: safetensors has no checksum of its own
#: extra elements a rebuild may allocate beyond the file's tensors (derived copies such as WeightNorm's)
_BUDGET_SLACK = 1 << 20


# -- what a model holds -----------------------------------------------------------------------
def _owners(layer: Any, prefix: str = "") -> dict[str, str]:
    """State key -> "path (Class)" of the layer that owns it, for error messages and validation."""
    out = {prefix + k: f"{prefix.rstrip('.') or layer.name} ({type(layer).__name__})"
           for k in list(layer.params) + list(layer.buffers)}
    for cname, child in layer.children.items():
        out.update(_owners(child, f"{prefix}{cname}."))
    return out


def _model_tensors(model: Any) -> dict[str, np.ndarray]:
    return {_MODEL_PREFIX + k: v for k, v in model.state_dict().items()}


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    buffers = state.get("state", {})
    scalars = {k: v for k, v in state.items() if k != "state"}
    return scalars, {_OPT_PREFIX + k: np.asarray(v) for k, v in buffers.items()}


def _constructor_arguments(cls: type) -> set[str]:
    """The keyword arguments `cls(...)` takes, following **kwargs up the MRO (an optimizer passes
    clipnorm / clipvalue on to Optimizer.__init__ that way)."""
    accepted: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        accepted |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return accepted


def optimizer_config(opt: Any) -> dict[str, Any]:
    cls = type(opt)
    accepted = _constructor_arguments(cls)
    settings = dict(opt.hyperparams()) if hasattr(opt, "hyperparams") else {}
    for extra in ("clipnorm", "clipvalue"):
        if getattr(opt, extra, None) is not None:
            settings[extra] = getattr(opt, extra)
    return {"class": registered_name(cls) or cls.__name__,
            "config": {k: v for k, v in settings.items() if k in accepted}}


def _model_backend(model: Any) -> Any:
    """The backend `model` runs on (its own, see gpunn.layers.base), else the current one."""
    backend = getattr(model, "backend", None)
    return backend if backend is not None else get_backend()


def _rng_state(model: Any) -> dict[str, Any] | None:
    """The state of the random generator `model` draws from (its backend's: dropout masks), with,
    on the CUDA backends, the (seed, offset) of their Philox dropout stream under "philox"."""
    backend = _model_backend(model)
    bitgen = getattr(backend.rng, "bit_generator", None)
    state = getattr(bitgen, "state", None)
    if not isinstance(state, dict):
        return None
    get_philox = getattr(backend, "get_philox", None)
    if callable(get_philox):
        state = {**state, "philox": list(get_philox())}
    return state


def _checked_rng_state(state: dict[str, Any] | None, meta: Meta) -> dict[str, Any] | None:
    """`state` if the current backend's generator can take it (tried on a fresh generator of its
    type), else None: load_model rebuilds the model on the current backend. A "philox" entry must
    be two ints in [0, 2**64)."""
    bitgen = getattr(get_backend().rng, "bit_generator", None)
    if not state or bitgen is None or not isinstance(getattr(bitgen, "state", None), dict) \
            or bitgen.state.get("bit_generator") != state.get("bit_generator"):
        return None
    philox = state.get("philox")
    if philox is not None and not (isinstance(philox, list) and len(philox) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2 ** 64 for v in philox)):
        raise meta.error("has a corrupt random generator state in 'gpunn.training': 'philox' must be "
                         f"[seed, offset], two ints in [0, 2**64), got {str(philox)[:80]}")
    try:
        type(bitgen)().state = {k: v for k, v in state.items() if k != "philox"}
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise meta.error(f"has a corrupt random generator state in 'gpunn.training': {str(exc)[:200]}") from None
    return state


def _restore_rng(state: dict[str, Any] | None, model: Any) -> None:
    if state:
        backend = _model_backend(model)
        backend.rng.bit_generator.state = {k: v for k, v in state.items() if k != "philox"}
        set_philox = getattr(backend, "set_philox", None)
        if state.get("philox") is not None and callable(set_philox):
            set_philox(*state["philox"])


# -- saving -----------------------------------------------------------------------------------
def _check_built(model: Any, where: str) -> None:
    if not getattr(model, "built", False) or model.input_shape is None:
        raise RuntimeError(f"{where}: the model is not built yet; fit it, call it once, or build(input_shape) first")


def save_weights(model: Any, path: str | os.PathLike) -> None:
    """Parameters and buffers only (plus the architecture, to validate loads), written atomically."""
    _check_built(model, "save_weights")
    meta = {"gpunn.format": "weights", "gpunn.version": FORMAT_VERSION,
            "gpunn.architecture": json.dumps(model_to_config(model, weights_only=True)),
            "gpunn.layers": json.dumps(_owners(model))}
    write_safetensors(path, _model_tensors(model), meta, _CHECKSUM)


def compile_config(model: Any) -> dict[str, Any]:
    """The loss(es), metrics and optimizer compile set, as JSON-able data. A model with several
    outputs adds "outputs": per output (in output order) its name, loss (None: untrained), loss
    weight and metric names."""
    out = _loss_config(model)
    precision = getattr(model, "precision", "fp32")
    if precision != "fp32":  # absent: fp32 (what files written before policies existed mean)
        out["precision"] = precision
        scaler = getattr(model, "grad_scaler", None)
        if scaler is not None:
            out["scaler"] = scaler.state_dict()
    return out


def _loss_config(model: Any) -> dict[str, Any]:
    opt = model.optimizer
    specs = getattr(model, "_outputs", None)
    names = getattr(model, "output_names", None)
    if specs is None and names and callable(getattr(model, "_output_specs", None)):
        # compiled before a subclassed model's first forward: its outputs are known now
        specs = model._output_specs(len(names), "save")
    if specs is None or len(specs) == 1:
        out = {"loss": object_to_config(model.loss), "metrics": [name for name, _ in model.metric_fns],
               "optimizer": optimizer_config(opt)}
        if specs is not None and specs[0].weight != 1.0:
            out["loss_weights"] = [specs[0].weight]
        return out
    first = next(s.loss for s in specs if s.loss is not None)
    return {"loss": object_to_config(first), "metrics": [], "optimizer": optimizer_config(opt),
            "outputs": {"names": [s.name for s in specs],
                        "losses": [object_to_config(s.loss) if s.loss is not None else None for s in specs],
                        "loss_weights": [s.weight for s in specs],
                        "metrics": [[n[len(s.name) + 1:] for n, _ in s.metric_fns] for s in specs]}}


def save_model(model: Any, path: str | os.PathLike, include_optimizer: bool = True) -> None:
    """Architecture, weights, compile settings and optimizer state, so training can resume exactly."""
    _check_built(model, "save")
    tensors = _model_tensors(model)
    meta = {"gpunn.format": "model", "gpunn.version": FORMAT_VERSION,
            "gpunn.architecture": json.dumps(model_to_config(model)), "gpunn.layers": json.dumps(_owners(model))}
    if getattr(model, "compiled", False):
        opt = model.optimizer
        meta["gpunn.compile"] = json.dumps(compile_config(model))
        # an optimizer that has not stepped holds only its initial state, which compile recreates
        if include_optimizer and getattr(opt, "step_count", 0) > 0:
            scalars, opt_tensors = _split_optimizer_state(opt.state_dict())
            meta["gpunn.optimizer"] = json.dumps(scalars)
            tensors.update(opt_tensors)
    meta["gpunn.training"] = json.dumps({"epoch": int(getattr(model, "epoch", 0)),
                                         "shuffle_seed": getattr(model, "shuffle_seed", None),
                                         "rng": _rng_state(model)})
    write_safetensors(path, tensors, meta, _CHECKSUM)


# -- loading ----------------------------------------------------------------------------------
def _read(path: str | os.PathLike, where: str, verify: bool, foreign_ok: bool = False
          ) -> tuple[dict[str, np.ndarray], Meta]:
    """The tensors and metadata of a gpunn checkpoint, verified against its checksum when `verify`."""
    if not isinstance(verify, bool):
        raise TypeError(f"{where}: argument 'verify' must be a bool, got {type(verify).__name__}")
    try:
        tensors, raw = read_safetensors(path, _CHECKSUM if verify else None)
    except SafetensorsError as exc:
        raise CheckpointError(f"{where}: cannot read {os.fspath(path)!r}: {exc}") from None
    meta = Meta(raw, path, where)
    fmt = raw.get("gpunn.format")
    if fmt is None and foreign_ok and not verify:
        return tensors, meta
    if fmt not in ("model", "weights"):
        raise meta.error("is a safetensors file but not a gpunn checkpoint (no 'gpunn.format' metadata); "
                         "a file of another tool loads into a built model with load_weights(path, verify=False)")
    version = raw.get("gpunn.version")
    if version not in _READABLE_VERSIONS:
        raise meta.error(f"has checkpoint format version {str(version)[:20]!r}; this gpunn reads versions "
                         f"{list(_READABLE_VERSIONS)}")
    if version != FORMAT_VERSION and verify:
        raise meta.error(f"has format version {version!r}, whose checksum does not cover its metadata; load it "
                         "with verify=False if you trust it, then save it again")
    return tensors, meta


def _model_elements(tensors: dict[str, np.ndarray]) -> int:
    return sum(math.prod(v.shape) for k, v in tensors.items() if k.startswith(_MODEL_PREFIX))


def _rebuild(meta: Meta, tensors: dict[str, np.ndarray], custom_objects: dict[str, Any] | None) -> Any:
    """The model the file's architecture describes, allocating no more than its tensors can fill."""
    arch = meta.architecture()
    try:
        return build_model(arch, custom_objects, _model_elements(tensors) + _BUDGET_SLACK,
                           f"{meta.where} {meta.path!r}")
    except ConfigError as exc:
        raise meta.error(f"has an architecture this gpunn will not rebuild: {exc}") from None


def _layer_classes(cfg: Any, path: str = "model") -> list[tuple[str, str]]:
    """(position, class name) of every layer in a config, depth first, activations included."""
    out: list[tuple[str, str]] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            if "__layer__" in value and isinstance(value["__layer__"], dict):
                out.extend(_layer_classes(value["__layer__"], where))
                return
            for k, v in value.items():
                walk(v, f"{where}.{k}" if not k.startswith("__") else where)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    if isinstance(cfg, dict):
        out.append((path, str(cfg.get("class"))))
        sub = cfg.get("subclassed")
        if isinstance(sub, dict):  # a subclassed model: its config holds constructor kwargs, not layers
            layers = sub.get("layers")
            if isinstance(layers, dict):
                out.extend((f"{path}.{k}", str(v)) for k, v in layers.items())
            return out
        walk(cfg.get("config"), path)
        graph = cfg.get("graph")
        if isinstance(graph, dict) and isinstance(graph.get("layers"), list):
            for entry in graph["layers"]:
                if isinstance(entry, dict):
                    out.extend(_layer_classes(entry.get("layer"), f"{path}.{str(entry.get('name'))[:80]}"))
    return out


def _check_same_architecture(model: Any, meta: Meta) -> None:
    """The file's layers must be the model's, class for class (a ReLU model's weights are no tanh model's)."""
    saved = _layer_classes(meta.architecture())
    ours = _layer_classes(model_to_config(model, weights_only=True))
    for (where, a), (_, b) in zip(saved, ours):
        if a != b:
            raise meta.error(f"holds weights of another architecture: layer {where} is {a} in the file but {b} "
                             "in the model (the model is unchanged)")
    if len(saved) != len(ours):
        raise meta.error(f"holds weights of another architecture: {len(saved)} layers in the file, {len(ours)} in "
                         "the model (the model is unchanged)")


def validate_state(model: Any, tensors: dict[str, np.ndarray], saved_owners: dict[str, str] | None,
                   where: str, prefix: str = _MODEL_PREFIX) -> dict[str, np.ndarray]:
    """The model state from `tensors`, after checking names, owning layers, shapes, dtypes and values."""
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    targets = model._named_state()
    owners = {key: f"{key} (?)" for key in targets}  # a layer may add state keys of its own
    owners.update(_owners(model))
    problems: list[str] = []
    missing = sorted(set(targets) - set(state))
    unexpected = sorted(set(state) - set(targets))
    if missing:
        problems.append(f"missing from the file: {missing[:20]}")
    if unexpected:
        problems.append(f"not in the model: {unexpected[:20]}")
    for key in sorted(set(targets) & set(state)):
        if saved_owners and key in saved_owners and saved_owners[key].split(" ")[-1] != owners[key].split(" ")[-1]:
            problems.append(f"{key!r} belongs to {saved_owners[key][:80]} in the file but to {owners[key]} in the model")
        target, value = targets[key], state[key]
        if tuple(value.shape) != tuple(target.shape):
            problems.append(f"{key!r} of {owners[key]} has shape {tuple(value.shape)} in the file, "
                            f"{tuple(target.shape)} in the model")
        elif np.dtype(value.dtype) != np.dtype(target.dtype):
            problems.append(f"{key!r} of {owners[key]} has dtype {value.dtype} in the file, {target.dtype} "
                            "in the model")
        elif value.dtype.kind == "f" and not np.isfinite(value).all():
            problems.append(f"{key!r} of {owners[key]} holds NaN or inf")
    if problems:
        raise CheckpointError(f"{where}: the checkpoint does not match this model (the model is unchanged): "
                              + "; ".join(problems))
    return state


def load_weights(model: Any, path: str | os.PathLike, verify: bool = True) -> None:
    """Load parameters and buffers saved by save_weights or save into `model`, all or nothing.

    The file's architecture must match the model's layer for layer. With `verify=False` the
    checksum is not required, so a safetensors file written by another tool (tensors named by
    the model's state keys, optionally prefixed "model/") loads into a built model."""
    where = "load_weights"
    tensors, meta = _read(path, where, verify, foreign_ok=True)
    if not meta.has("gpunn.format"):
        if not getattr(model, "built", False):
            raise meta.error("has no gpunn architecture, so the model must be built before loading it")
        prefix = _MODEL_PREFIX if any(k.startswith(_MODEL_PREFIX) for k in tensors) else ""
        model.load_state_dict(validate_state(model, tensors, None, where, prefix))
        return
    if getattr(model, "built", False):
        state = validate_state(model, tensors, meta.owners(), where)  # names the tensors that differ, if any
        _check_same_architecture(model, meta)  # then the stateless layers: activations, pools, dropout
    else:
        _check_same_architecture(model, meta)  # before building: a wrong architecture allocates nothing
        try:
            build_as_configured(model, meta.architecture(), _model_elements(tensors) + _BUDGET_SLACK,
                                f"{where} {meta.path!r}")
        except ConfigError as exc:
            raise meta.error(f"has an architecture this model will not build for: {exc}") from None
        state = validate_state(model, tensors, meta.owners(), where)
    model.load_state_dict(state)


def _finite_optimizer_state(tensors: dict[str, np.ndarray], meta: Meta) -> dict[str, np.ndarray]:
    buffers = {k[len(_OPT_PREFIX):]: v for k, v in tensors.items() if k.startswith(_OPT_PREFIX)}
    bad = sorted(k for k, v in buffers.items() if v.dtype.kind != "f" or not np.isfinite(v).all())
    if bad:
        raise meta.error(f"has optimizer state {bad[:8]} that is not finite floating point (NaN, inf or "
                         "another dtype); it would turn the weights to NaN on the first step")
    return buffers


def _weight_ok(w: Any) -> bool:
    return isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0


def _output_settings(cfg: dict[str, Any], model: Any, meta: Meta) -> dict[str, Any]:
    """The per-output compile settings of a model with several outputs, checked: names that are
    the model's outputs, one loss config (or null), weight and metric list per output."""
    outs = cfg["outputs"]
    bad = meta.error
    if not isinstance(outs, dict) or set(outs) != {"names", "losses", "loss_weights", "metrics"}:
        raise bad("has corrupt 'gpunn.compile' metadata: 'outputs' must be an object with keys names, losses, "
                  "loss_weights, metrics")
    names = outs["names"]
    if not isinstance(names, list) or not 1 <= len(names) <= 1024 or not all(isinstance(n, str) for n in names):
        raise bad("has corrupt 'gpunn.compile' metadata: 'outputs.names' must be a list of output names")
    ours = getattr(model, "output_names", None)
    if ours is not None and list(ours) != names:
        raise bad(f"has compile settings for outputs {names[:8]}, but the model's outputs are {list(ours)[:8]}")
    n = len(names)
    for key in ("losses", "loss_weights", "metrics"):
        if not isinstance(outs[key], list) or len(outs[key]) != n:
            raise bad(f"has corrupt 'gpunn.compile' metadata: 'outputs.{key}' must be a list of {n} entries")
    if not all(c is None or isinstance(c, dict) for c in outs["losses"]) or all(c is None for c in outs["losses"]):
        raise bad("has corrupt 'gpunn.compile' metadata: 'outputs.losses' must hold loss configs or null, "
                  "at least one a loss")
    if not all(_weight_ok(w) for w in outs["loss_weights"]):
        raise bad("has corrupt 'gpunn.compile' metadata: 'outputs.loss_weights' must be finite floats >= 0")
    if not all(isinstance(m, list) and all(isinstance(v, str) for v in m) for m in outs["metrics"]):
        raise bad("has corrupt 'gpunn.compile' metadata: 'outputs.metrics' must be lists of metric names")
    return outs


def _metric_specs(names: list[str], custom_objects: dict[str, Any] | None, meta: Meta) -> list[Any]:
    """The metrics saved by name: built-in names, or functions the caller passes in custom_objects."""
    metrics = []
    for name in names:
        if custom_objects and name in custom_objects:
            metrics.append(custom_objects[name])
            continue
        try:
            get_metric(name)
            metrics.append(name)
        except ValueError:
            warnings.warn(f"{meta.where}: metric {name[:80]!r} is not built in; pass it in custom_objects to keep it",
                          stacklevel=4)
    return metrics


def _compile_from(model: Any, meta: Meta, tensors: dict[str, np.ndarray],
                  custom_objects: dict[str, Any] | None) -> None:
    """Rebuild the loss, metrics and optimizer (with its state) saved with the model, or raise."""
    cfg = meta.compile_settings()
    outputs = _output_settings(cfg, model, meta) if "outputs" in cfg else None
    weights = cfg.get("loss_weights")
    if weights is not None and (not isinstance(weights, list) or len(weights) != 1 or not _weight_ok(weights[0])):
        raise meta.error("has corrupt 'gpunn.compile' metadata: 'loss_weights' must be a list of one finite float >= 0")
    try:
        if outputs is None:
            loss: Any = object_from_config(cfg["loss"], custom_objects, kind="loss")
        else:
            loss = {n: object_from_config(c, custom_objects, kind="loss") if c is not None else None
                    for n, c in zip(outputs["names"], outputs["losses"])}
            weights = {n: w for n, w in zip(outputs["names"], outputs["loss_weights"])}
        optimizer = optimizer_from_config(cfg["optimizer"], model, custom_objects)
    except ConfigError as exc:
        raise meta.error(f"has compile settings this gpunn will not rebuild: {exc}") from None
    if outputs is None:
        metrics: Any = _metric_specs(cfg["metrics"], custom_objects, meta)
    else:
        metrics = {n: _metric_specs(m, custom_objects, meta) for n, m in zip(outputs["names"], outputs["metrics"])}
    buffers = _finite_optimizer_state(tensors, meta)
    scalars = meta.optimizer_scalars() if meta.has("gpunn.optimizer") else None
    if buffers and scalars is None:
        raise meta.error("has optimizer buffers but no 'gpunn.optimizer' metadata")
    precision = cfg.get("precision", "fp32")
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise meta.error(f"has corrupt 'gpunn.compile' metadata: 'precision' must be one of {sorted(PRECISIONS)}, got "
                         f"{str(precision)[:40]!r}")
    model.compile(loss=loss, optimizer=optimizer, metrics=metrics, loss_weights=weights, precision=precision)
    if "scaler" in cfg:
        scaler = model.grad_scaler
        if scaler is None:
            raise meta.error(f"has a loss scaler's state under precision={precision!r}, which scales no loss")
        try:
            scaler.load_state_dict(cfg["scaler"])
        except (KeyError, ValueError, TypeError, OverflowError) as exc:
            raise meta.error(f"has a loss scaler state that does not fit: {str(exc)[:300]}") from None
    if scalars is not None:
        try:
            model.optimizer.load_state_dict({**scalars, "state": buffers})
        except (KeyError, ValueError, TypeError, OverflowError) as exc:
            raise meta.error(f"has optimizer state that does not fit: {str(exc)[:300]}") from None


def load_model(path: str | os.PathLike, custom_objects: dict[str, Any] | None = None, compile: bool = True,
               restore_rng: bool = True, verify: bool = True) -> Any:
    """The model saved by `model.save(path)`: architecture, weights and, with `compile`, the loss,
    metrics and optimizer with its state, ready to resume with fit(..., initial_epoch=model.epoch).

    The architecture is rebuilt through model_from_config: only registered gpunn classes and the
    caller's `custom_objects` are constructed. `restore_rng` also restores the current backend's
    random generator (dropout masks) to its state at save time, which makes a resumed run
    bit-identical on the NumPy backend. `verify=False` accepts a file without a valid checksum
    (such as one written by gpunn's format version 1); every other check still runs."""
    where = "load_model"
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise TypeError(f"{where}: argument 'custom_objects' must be a dict from name to class, got "
                        f"{type(custom_objects).__name__}")
    tensors, meta = _read(path, where, verify)
    if meta.raw["gpunn.format"] != "model":
        raise meta.error("holds weights only (save_weights); build the model and call model.load_weights(path)")
    training = meta.training()
    rng_state = _checked_rng_state(training["rng"], meta) if restore_rng else None
    model = _rebuild(meta, tensors, custom_objects)
    if model.input_shape is None or not model.built:
        raise meta.error("has an architecture without an input shape")
    model.load_state_dict(validate_state(model, tensors, meta.owners(), where))
    if compile and meta.has("gpunn.compile") and hasattr(model, "compile"):
        _compile_from(model, meta, tensors, custom_objects)
    model.epoch = training["epoch"]
    if training["shuffle_seed"] is not None:
        model.shuffle_seed = training["shuffle_seed"]
    _restore_rng(rng_state, model)  # last: the only effect outside the new model, after every check passed
    return model
