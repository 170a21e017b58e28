"""Saving and loading models: safetensors for arrays, JSON (in the safetensors metadata) for the rest.

One file holds everything, so one atomic rename publishes a checkpoint:
- tensors "model/<state key>" (parameters and buffers such as BatchNorm's running statistics) and,
  in a full save, "optimizer/<buffer>" (the optimizer's moment buffers);
- metadata "gpunn.format" ("model" or "weights"), "gpunn.architecture" (the layer configs, input
  shape and dtype), "gpunn.layers" (the class owning each state key, to name mismatches),
  "gpunn.compile" (loss, metrics, optimizer class and settings), "gpunn.optimizer" (its scalar
  state), "gpunn.training" (epochs done, the shuffle seed, the dropout generator's state) and
  "gpunn.sha256" (a checksum of the tensor bytes, so flipped bits are caught, not loaded).

Nothing is unpickled: arrays are raw bytes with a declared dtype and shape, configs are JSON, and
only gpunn classes (or the caller's `custom_objects`) are instantiated. Every check runs before the
first write into a model, so a bad file leaves the model as it was.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np

from gpunn.train.config import ConfigError, layer_from_config, layer_to_config, object_from_config, object_to_config
from gpunn.train.safetensors import SafetensorsError, read_safetensors, write_safetensors

FORMAT_VERSION = "1"
_MODEL_PREFIX = "model/"
_OPT_PREFIX = "optimizer/"
_CHECKSUM = "gpunn.sha256"  # of the tensor bytes: safetensors has no checksum of its own


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into this model: a foreign, corrupt or mismatched file."""


# -- what a model holds -----------------------------------------------------------------------
def _owners(layer: Any, prefix: str = "") -> dict[str, str]:
    """State key -> "path (Class)" of the layer that owns it, for error messages and validation."""
    out = {prefix + k: f"{prefix.rstrip('.') or layer.name} ({type(layer).__name__})"
           for k in list(layer.params) + list(layer.buffers)}
    for cname, child in layer.children.items():
        out.update(_owners(child, f"{prefix}{cname}."))
    return out


def _architecture(model: Any) -> dict[str, Any]:
    return {"architecture": layer_to_config(model), "input_shape": list(model.input_shape),
            "dtype": str(np.dtype(model.dtype))}


def _model_tensors(model: Any) -> dict[str, np.ndarray]:
    return {_MODEL_PREFIX + k: v for k, v in model.state_dict().items()}


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    buffers = state.get("state", {})
    scalars = {k: v for k, v in state.items() if k != "state"}
    return scalars, {_OPT_PREFIX + k: np.asarray(v) for k, v in buffers.items()}


def _optimizer_config(opt: Any) -> dict[str, Any]:
    cls = type(opt)
    import inspect
    accepted = {p.name for p in list(inspect.signature(cls.__init__).parameters.values())[1:]}
    settings = dict(opt.hyperparams()) if hasattr(opt, "hyperparams") else {}
    for extra in ("clipnorm", "clipvalue"):
        if getattr(opt, extra, None) is not None:
            settings[extra] = getattr(opt, extra)
    return {"module": cls.__module__, "class": cls.__qualname__,
            "config": {k: v for k, v in settings.items() if k in accepted}}


def _rng_state() -> dict[str, Any] | None:
    from gpunn.backend import get_backend
    bitgen = getattr(get_backend().rng, "bit_generator", None)
    state = getattr(bitgen, "state", None)
    return state if isinstance(state, dict) else None


def _restore_rng(state: dict[str, Any] | None) -> None:
    from gpunn.backend import get_backend
    bitgen = getattr(get_backend().rng, "bit_generator", None)
    if state and bitgen is not None and isinstance(getattr(bitgen, "state", None), dict) \
            and bitgen.state.get("bit_generator") == state.get("bit_generator"):
        bitgen.state = state


# -- saving -----------------------------------------------------------------------------------
def _check_built(model: Any, where: str) -> None:
    if not getattr(model, "built", False) or model.input_shape is None:
        raise RuntimeError(f"{where}: the model is not built yet; fit it, call it once, or build(input_shape) first")


def save_weights(model: Any, path: str | os.PathLike) -> None:
    """Parameters and buffers only (plus the architecture, to validate loads), written atomically."""
    _check_built(model, "save_weights")
    meta = {"gpunn.format": "weights", "gpunn.version": FORMAT_VERSION,
            "gpunn.architecture": json.dumps(_architecture(model)), "gpunn.layers": json.dumps(_owners(model))}
    write_safetensors(path, _model_tensors(model), meta, _CHECKSUM)


def save_model(model: Any, path: str | os.PathLike, include_optimizer: bool = True) -> None:
    """Architecture, weights, compile settings and optimizer state, so training can resume exactly."""
    _check_built(model, "save")
    tensors = _model_tensors(model)
    meta = {"gpunn.format": "model", "gpunn.version": FORMAT_VERSION,
            "gpunn.architecture": json.dumps(_architecture(model)), "gpunn.layers": json.dumps(_owners(model))}
    if getattr(model, "compiled", False):
        opt = model.optimizer
        compile_cfg = {"loss": object_to_config(model.loss), "metrics": [name for name, _ in model.metric_fns],
                       "optimizer": _optimizer_config(opt)}
        meta["gpunn.compile"] = json.dumps(compile_cfg)
        # an optimizer that has not stepped holds only its initial state, which compile recreates
        if include_optimizer and getattr(opt, "step_count", 0) > 0:
            scalars, opt_tensors = _split_optimizer_state(opt.state_dict())
            meta["gpunn.optimizer"] = json.dumps(scalars)
            tensors.update(opt_tensors)
    meta["gpunn.training"] = json.dumps({"epoch": int(getattr(model, "epoch", 0)),
                                         "shuffle_seed": getattr(model, "shuffle_seed", None),
                                         "rng": _rng_state()})
    write_safetensors(path, tensors, meta, _CHECKSUM)


# -- loading ----------------------------------------------------------------------------------
def _read(path: str | os.PathLike, where: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        tensors, meta = read_safetensors(path, _CHECKSUM)
    except SafetensorsError as exc:
        raise CheckpointError(f"{where}: cannot read {os.fspath(path)!r}: {exc}") from None
    fmt = meta.get("gpunn.format")
    if fmt not in ("model", "weights"):
        raise CheckpointError(f"{where}: {os.fspath(path)!r} is a safetensors file but not a gpunn checkpoint "
                              "(no 'gpunn.format' metadata)")
    if meta.get("gpunn.version") != FORMAT_VERSION:
        raise CheckpointError(f"{where}: {os.fspath(path)!r} has checkpoint format version "
                              f"{meta.get('gpunn.version')!r}; this gpunn reads version {FORMAT_VERSION!r}")
    return tensors, meta


def _json(meta: dict[str, str], key: str, where: str, path: Any) -> Any:
    try:
        return json.loads(meta[key])
    except KeyError:
        raise CheckpointError(f"{where}: {os.fspath(path)!r} lacks the {key!r} metadata") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{where}: {os.fspath(path)!r} has corrupt {key!r} metadata ({exc})") from None


def validate_state(model: Any, tensors: dict[str, np.ndarray], saved_owners: dict[str, str] | None,
                   where: str) -> dict[str, np.ndarray]:
    """The model state from `tensors`, after checking names, owning layers, shapes and dtypes."""
    state = {k[len(_MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
    targets = model._named_state()
    owners = {key: f"{key} (?)" for key in targets}  # a layer may add state keys of its own
    owners.update(_owners(model))
    problems: list[str] = []
    missing = sorted(set(targets) - set(state))
    unexpected = sorted(set(state) - set(targets))
    if missing:
        problems.append(f"missing from the file: {missing}")
    if unexpected:
        problems.append(f"not in the model: {unexpected}")
    for key in sorted(set(targets) & set(state)):
        if saved_owners and key in saved_owners and saved_owners[key].split(" ")[-1] != owners[key].split(" ")[-1]:
            problems.append(f"{key!r} belongs to {saved_owners[key]} in the file but to {owners[key]} in the model")
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


def load_weights(model: Any, path: str | os.PathLike) -> None:
    """Load parameters and buffers saved by save_weights or save into `model`, all or nothing."""
    where = "load_weights"
    tensors, meta = _read(path, where)
    saved_owners = _json(meta, "gpunn.layers", where, path) if "gpunn.layers" in meta else None
    if not getattr(model, "built", False):
        arch = _json(meta, "gpunn.architecture", where, path)
        model._dtype = np.dtype(arch["dtype"])
        model.build(tuple(arch["input_shape"]))
    state = validate_state(model, tensors, saved_owners, where)
    model.load_state_dict(state)


def _build_optimizer(model: Any, cfg: dict[str, Any], custom_objects: dict[str, Any] | None) -> Any:
    from gpunn.train.config import _resolve_class
    cls = _resolve_class(cfg["module"], cfg["class"], custom_objects, "load optimizer")
    try:
        return cls(model, **cfg["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"load_model: the saved optimizer settings do not construct {cls.__name__}: {exc}") \
            from exc


def load_model(path: str | os.PathLike, custom_objects: dict[str, Any] | None = None, compile: bool = True,
               restore_rng: bool = True) -> Any:
    """The model saved by `model.save(path)`: architecture, weights and, with `compile`, the loss,
    metrics and optimizer with its state, ready to resume with fit(..., initial_epoch=model.epoch).

    `restore_rng` also restores the current backend's random generator (dropout masks) to its
    state at save time, which makes a resumed run bit-identical on the NumPy backend."""
    where = "load_model"
    tensors, meta = _read(path, where)
    if meta["gpunn.format"] != "model":
        raise CheckpointError(f"{where}: {os.fspath(path)!r} holds weights only (save_weights); build the model "
                              "and call model.load_weights(path)")
    arch = _json(meta, "gpunn.architecture", where, path)
    try:
        model = layer_from_config(arch["architecture"], custom_objects)
        model._dtype = np.dtype(arch["dtype"])
        model.build(tuple(arch["input_shape"]))
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: {os.fspath(path)!r} has an architecture this gpunn cannot rebuild: "
                              f"{exc}") from None
    saved_owners = _json(meta, "gpunn.layers", where, path)
    model.load_state_dict(validate_state(model, tensors, saved_owners, where))
    if compile and "gpunn.compile" in meta and hasattr(model, "compile"):
        cfg = _json(meta, "gpunn.compile", where, path)
        try:
            loss = object_from_config(cfg["loss"], custom_objects)
        except ConfigError as exc:
            raise CheckpointError(f"{where}: cannot rebuild the loss: {exc}") from None
        metrics = []
        for name in cfg["metrics"]:
            if custom_objects and name in custom_objects:
                metrics.append(custom_objects[name])
                continue
            from gpunn.train.metrics import get_metric
            try:
                get_metric(name)
                metrics.append(name)
            except ValueError:
                warnings.warn(f"{where}: metric {name!r} is not built in; pass it in custom_objects to keep it",
                              stacklevel=2)
        model.compile(loss=loss, optimizer=_build_optimizer(model, cfg["optimizer"], custom_objects),
                      metrics=metrics)
        if "gpunn.optimizer" in meta:
            scalars = _json(meta, "gpunn.optimizer", where, path)
            buffers = {k[len(_OPT_PREFIX):]: v for k, v in tensors.items() if k.startswith(_OPT_PREFIX)}
            try:
                model.optimizer.load_state_dict({**scalars, "state": buffers})
            except (KeyError, ValueError, TypeError) as exc:
                raise CheckpointError(f"{where}: the optimizer state in {os.fspath(path)!r} does not fit: {exc}") \
                    from None
    training = _json(meta, "gpunn.training", where, path) if "gpunn.training" in meta else {}
    model.epoch = int(training.get("epoch", 0))
    if training.get("shuffle_seed") is not None:
        model.shuffle_seed = int(training["shuffle_seed"])
    if restore_rng:
        _restore_rng(training.get("rng"))
    return model
