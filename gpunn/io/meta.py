"""The metadata of a gpunn checkpoint, parsed as hostile input.

Each entry is JSON inside the safetensors header. Every reader here checks the JSON types and
ranges of the keys it knows before anything uses them, and turns every defect (invalid JSON,
nesting deep enough to exhaust the stack, integers of thousands of digits, a list where an
object belongs, a missing key) into CheckpointError naming the file and the entry.
"""
from __future__ import annotations

import json
import os
from typing import Any

MAX_EPOCH = 2 ** 31


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into this model: a foreign, corrupt or mismatched file."""


class Meta:
    """The metadata of one file, for one loading call (`where`), read entry by entry."""

    def __init__(self, meta: dict[str, str], path: str | os.PathLike, where: str) -> None:
        self.raw, self.path, self.where = meta, os.fspath(path), where

    def error(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.where}: {self.path!r} {message}")

    def has(self, key: str) -> bool:
        return key in self.raw

    def json(self, key: str) -> Any:
        if key not in self.raw:
            raise self.error(f"lacks the {key!r} metadata")
        try:
            return json.loads(self.raw[key])
        except (ValueError, RecursionError) as exc:  # ValueError covers JSONDecodeError and huge ints
            raise self.error(f"has corrupt {key!r} metadata ({type(exc).__name__}: {str(exc)[:200]})") from None

    def obj(self, key: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
        value = self.json(key)
        if not isinstance(value, dict):
            raise self.error(f"has corrupt {key!r} metadata: expected a JSON object, got {type(value).__name__}")
        missing = [k for k in required if k not in value]
        if missing:
            raise self.error(f"has corrupt {key!r} metadata: missing keys {missing}")
        return value

    def field(self, key: str, value: Any, name: str, kind: type | tuple[type, ...], what: str) -> Any:
        """`value` (the entry `name` of metadata `key`) if it is of `kind`, else CheckpointError."""
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):  # True is an int
            raise self.error(f"has corrupt {key!r} metadata: {name!r} must be {what}, got {str(value)[:80]}")
        return value

    # -- the known entries ------------------------------------------------------------------
    def owners(self) -> dict[str, str] | None:
        if "gpunn.layers" not in self.raw:
            return None
        owners = self.obj("gpunn.layers")
        if not all(isinstance(v, str) for v in owners.values()):
            raise self.error("has corrupt 'gpunn.layers' metadata: expected a map from state key to layer")
        return owners

    def architecture(self) -> dict[str, Any]:
        arch = self.obj("gpunn.architecture")
        if "architecture" in arch:  # format 1 nested the layer config under "architecture"
            inner = self.field("gpunn.architecture", arch["architecture"], "architecture", dict, "an object")
            arch = {**inner, "input_shape": arch.get("input_shape"), "dtype": arch.get("dtype", "float32")}
        return arch

    def compile_settings(self) -> dict[str, Any]:
        cfg = self.obj("gpunn.compile", ("loss", "metrics", "optimizer"))
        self.field("gpunn.compile", cfg["loss"], "loss", dict, "an object")
        self.field("gpunn.compile", cfg["optimizer"], "optimizer", dict, "an object")
        metrics = self.field("gpunn.compile", cfg["metrics"], "metrics", list, "a list of metric names")
        for m in metrics:
            self.field("gpunn.compile", m, "metrics", str, "a list of metric names")
        return cfg

    def optimizer_scalars(self) -> dict[str, Any]:
        scalars = self.obj("gpunn.optimizer", ("optimizer", "step", "hyperparams", "scalars"))
        self.field("gpunn.optimizer", scalars["optimizer"], "optimizer", str, "a class name")
        step = self.field("gpunn.optimizer", scalars["step"], "step", int, "an int >= 0")
        if not 0 <= step <= 2 ** 62:
            raise self.error(f"has corrupt 'gpunn.optimizer' metadata: 'step' must be an int >= 0, got {step}")
        for name in ("hyperparams", "scalars"):
            self.field("gpunn.optimizer", scalars[name], name, dict, "an object")
        return scalars

    def training(self) -> dict[str, Any]:
        if "gpunn.training" not in self.raw:
            return {"epoch": 0, "shuffle_seed": None, "rng": None}
        training = self.obj("gpunn.training")
        epoch = self.field("gpunn.training", training.get("epoch", 0), "epoch", int, "an int >= 0")
        if not 0 <= epoch <= MAX_EPOCH:
            raise self.error(f"has corrupt 'gpunn.training' metadata: 'epoch' must be in [0, {MAX_EPOCH}], "
                             f"got {str(epoch)[:40]}")
        seed = training.get("shuffle_seed")
        if seed is not None and (self.field("gpunn.training", seed, "shuffle_seed", int, "an int or null") < 0
                                 or seed >= 2 ** 64):
            raise self.error(f"has corrupt 'gpunn.training' metadata: 'shuffle_seed' must be in [0, 2**64), "
                             f"got {str(seed)[:40]}")
        rng = training.get("rng")
        if rng is not None:
            self.field("gpunn.training", rng, "rng", dict, "an object or null")
        return {"epoch": epoch, "shuffle_seed": seed, "rng": rng}
