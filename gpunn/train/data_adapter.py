"""What fit / evaluate / predict were given, turned into batches: one place, as Keras's data adapters.

Each source gives, per epoch, an iterator of batches (xb, yb, swb): xb and yb an array, a
list/tuple of arrays or a dict name -> array (a model with several inputs or outputs), swb None or
one weight per sample. The sources:

- arrays (`ArrayData`): x, y and sample_weight, already validated (model.check_xy); every leaf is
  sliced along axis 0, in an order shuffled per epoch from (seed, epoch) alone, so a resumed fit
  sees the batches an uninterrupted one would;
- batch sources (`BatchData`), each batch (x, y) or (x, y, sample_weight) (x alone for predict):
  - a re-iterable: a DataLoader, a list of batches, any object whose __iter__ starts a new pass;
  - a Sequence: an object with __len__ and __getitem__ (keras.utils.Sequence, PyDataset), batch i
    being source[i], its batch order shuffled per epoch when `shuffle`, its on_epoch_end() (and
    on_epoch_begin()) called around every epoch, as Keras does;
  - a callable returning a fresh iterator (or iterable) of batches, called once per pass;
  - a one-shot iterator (a generator): one pass in all.

`steps` (fit's steps_per_epoch, validation_steps, evaluate's steps): with arrays, at most that many
batches per epoch. With a batch source, exactly that many per epoch, drawn from one stream
continued across epochs, as Keras does: an infinite generator works, and a finite re-iterable
starts a new pass where one ends. A one-shot iterator that runs out ends the epoch there
(`ran_out`; fit warns and stops, as Keras does).

`class_weight` (a dict class index -> weight) becomes per-sample weights from the integer labels
or the argmax of one-hot rows (Keras's class_weight_to_sample_weights: classes it does not name
weigh 1); it needs one output and cannot be combined with sample weights (Keras refuses both too).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from gpunn._checks import sample_weight_arg
from gpunn.backend import get_backend, is_foreign_array, to_host
from gpunn.distributed.sharding import shard_length, shard_order

Batch = tuple[Any, Any, Any]


class DataRanOutWarning(UserWarning):
    """A one-shot iterator ran out before fit's epochs of steps_per_epoch batches: fit stopped."""

REITERABLE = ("pass a DataLoader, or a re-iterable whose __iter__ starts a new pass (a list of (x, y) batches, "
              "or an object whose __iter__ is a generator function), a Sequence (__len__ and __getitem__), or a "
              "function that returns a fresh iterator")


# -- structures -----------------------------------------------------------------------------------
def is_array(a: Any) -> bool:
    """An array of any backend (something with a shape and a dtype)."""
    return hasattr(a, "shape") and hasattr(a, "dtype")


def leaves(a: Any) -> list[Any]:
    """The arrays of an array, a list/tuple of them or a dict of them (None: none)."""
    if a is None:
        return []
    if isinstance(a, dict):
        return list(a.values())
    if isinstance(a, (list, tuple)):
        return list(a)
    return [a]


def take(a: Any, index: Any) -> Any:
    """Every leaf of `a` indexed along axis 0 by `index` (a slice or an index array), in `a`'s structure."""
    if a is None:
        return None
    if isinstance(a, dict):
        return {k: v[index] for k, v in a.items()}
    if isinstance(a, (list, tuple)):
        return type(a)(v[index] for v in a)
    return a[index]


def num_samples(a: Any) -> int:
    """The length of axis 0 of the first array of `a`."""
    return int(leaves(a)[0].shape[0])


def imported(a: Any, where: str) -> Any:
    """`a` (an array, or a list/tuple/dict of them) with each foreign array (a torch or JAX tensor,
    anything with `__dlpack__` or `__array__`) imported into the current backend: in place when it
    is on that backend's device (DLPack), one copy otherwise. Batch sources run with the model's
    backend current, so this is the model's."""
    if is_foreign_array(a):
        return get_backend().asarray(a, where=where)
    if isinstance(a, dict):
        return {k: imported(v, where) for k, v in a.items()} if any(map(is_foreign_array, a.values())) else a
    if isinstance(a, (list, tuple)) and any(is_foreign_array(v) for v in a):
        return type(a)(imported(v, where) for v in a)
    return a


# -- arrays ---------------------------------------------------------------------------------------
def epoch_order(seed: int, n: int, epoch: int) -> np.ndarray:
    """The shuffled sample order of `epoch`: a function of (seed, epoch) only."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def class_weights_for(y: Any, class_weight: dict[int, float], where: str) -> np.ndarray:
    """Per-sample weights (host float64) from the targets `y` of one output: integer labels (N,) or
    (N, 1), or one-hot / probability rows (N, classes), whose argmax is the class."""
    parts = leaves(y)
    if len(parts) != 1:
        raise ValueError(f"{where}: argument 'class_weight' needs a model with one output, got targets for "
                         f"{len(parts)}; weight the samples with sample_weight instead")
    labels = np.asarray(to_host(parts[0]))
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    elif labels.ndim == 2:
        labels = labels.argmax(axis=1)
    elif labels.ndim != 1:
        raise ValueError(f"{where}: argument 'class_weight' needs integer labels (N,) or one-hot rows (N, classes), "
                         f"got targets of shape {labels.shape}")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise ValueError(f"{where}: argument 'class_weight' needs finite class labels in 'y'")
        labels = np.round(labels)  # 0.0 / 1.0 targets of a binary output, as Keras rounds them
    elif labels.dtype.kind not in "iub":
        raise TypeError(f"{where}: argument 'class_weight' needs integer class labels, got 'y' of dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"{where}: argument 'class_weight' needs class labels >= 0, got {int(labels.min())}")
    size = max(int(labels.max(initial=0)), max(class_weight)) + 1
    table = np.ones(size, dtype=np.float64)  # classes the dict does not name weigh 1, as in Keras
    for k, w in class_weight.items():
        table[k] = w
    return table[labels]


def split_arrays(x: Any, y: Any, sample_weight: Any, fraction: float, where: str) -> tuple[tuple, tuple]:
    """((x, y, sw) for training, (x, y, sw) for validation): the last `fraction` of the samples
    held out, before any shuffling, as Keras does."""
    n = num_samples(x)
    n_val = int(n * fraction)
    if n_val < 1 or n_val >= n:
        raise ValueError(f"{where}: argument 'validation_split'={fraction} leaves {n_val} of {n} samples for "
                         "validation; need at least one on each side")
    head, tail = slice(0, n - n_val), slice(n - n_val, n)
    return ((take(x, head), take(y, head), take(sample_weight, head)),
            (take(x, tail), take(y, tail), take(sample_weight, tail)))


class ArrayData:
    """Batches of validated arrays x, y (None for predict) and sample weights (None, or host (N,))."""

    one_shot = False
    ran_out = False

    def __init__(self, x: Any, y: Any, sample_weight: Any, batch_size: int, shuffle: bool = False, seed: int = 0,
                 steps: int | None = None, shard: tuple[int, int] | None = None) -> None:
        """`shard` (rank, world_size): this rank's equal part of each epoch's order (data parallelism,
        see gpunn.distributed.sharding); `samples` is then the part's size."""
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.batch_size = int(batch_size)
        self.shuffle, self.seed = bool(shuffle), int(seed)
        self.shard = shard
        self.total_samples = num_samples(x)
        self.samples = self.total_samples if shard is None else shard_length(self.total_samples, shard[1], False)
        full = -(-self.samples // self.batch_size)
        self.steps = full if steps is None else min(full, int(steps))
        # the samples an epoch sees: all, unless steps cuts it short
        self.num_samples = min(self.samples, self.steps * self.batch_size)

    def has_more(self) -> bool:
        """Arrays never run out: every epoch is a fresh pass."""
        return True

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of `epoch`, in its shuffled order when `shuffle`."""
        order = epoch_order(self.seed, self.total_samples, epoch) if self.shuffle else None
        if self.shard is not None:
            base = order if order is not None else np.arange(self.total_samples)
            order = shard_order(base, self.shard[0], self.shard[1])
        b = self.batch_size
        for i in range(self.steps):
            index = slice(i * b, (i + 1) * b) if order is None else order[i * b:(i + 1) * b]
            yield take(self.x, index), take(self.y, index), take(self.sample_weight, index)

    def end_epoch(self) -> None:
        """Nothing to tell arrays (BatchData tells a Sequence)."""

    def close(self) -> None:
        """Nothing to stop (BatchData stops a pass it left open)."""


# -- batch sources --------------------------------------------------------------------------------
def is_one_shot(source: Any) -> bool:
    """An iterator (a generator, iter(loader), ...): exhausted after one pass. isinstance rather
    than `iter(x) is x`, because iter() on a DataLoader would start an epoch and its thread."""
    return isinstance(source, Iterator)


def is_sequence(source: Any) -> bool:
    """A Keras-style Sequence: __len__ and __getitem__ (batch i is source[i]), not a built-in
    container or an array."""
    return (hasattr(source, "__getitem__") and hasattr(source, "__len__") and not is_array(source)
            and not isinstance(source, (list, tuple, dict, str, bytes)))


def _looks_like_batch(b: Any) -> bool:
    if not isinstance(b, tuple) or len(b) not in (2, 3):
        return False
    first = b[0]
    return is_array(first) or (isinstance(first, (list, tuple, dict)) and bool(first)
                               and all(is_array(v) for v in leaves(first)))


def is_batch_source(x: Any) -> bool:
    """Whether `x` yields batches (a DataLoader, a re-iterable, a Sequence, a function returning
    an iterator, an iterator) rather than being the data itself (an array, a list or dict of
    arrays, a nested list of numbers)."""
    if isinstance(x, list):  # a list of (x, y) batches, not a list of arrays or a nested list of numbers
        return bool(x) and all(_looks_like_batch(b) for b in x)
    if hasattr(x, "shape") or isinstance(x, (tuple, dict, str, bytes)) or x is None:
        return False  # anything with a shape is data (a DataFrame included), refused or not by check_xy
    return hasattr(x, "__iter__") or is_sequence(x) or callable(x)


def _kind(source: Any) -> str:
    if is_one_shot(source):
        return "one-shot"
    if isinstance(source, list):
        return "re-iterable"
    if is_sequence(source):
        return "sequence"
    if hasattr(source, "__iter__"):
        return "re-iterable"
    return "function"


def one_shot_error(source: Any, name: str, where: str, passes: int, steps_name: str) -> ValueError:
    return ValueError(f"{where}: argument '{name}' is a one-shot iterator ({type(source).__name__}), exhausted after "
                      f"one pass, but the fit needs {passes} passes over it; {REITERABLE}; or give {steps_name} "
                      "(batches per epoch, drawn from the one iterator), or fit one epoch at a time")


def no_batches_error(source: Any, what: str, where: str, epoch: int | None = None, again: bool = False) -> ValueError:
    """`again`: an earlier pass over `source` did get batches."""
    when = f" in epoch {epoch + 1}" if epoch is not None else ""
    if is_one_shot(source):
        hint = (f"; it is a one-shot iterator ({type(source).__name__}), and an iterator is exhausted after one pass "
                f"- {REITERABLE}")
    elif again and callable(source) and not hasattr(source, "__iter__"):
        hint = "; the function returned an exhausted iterator instead of a fresh one"
    elif again:
        hint = "; its __iter__ returned an exhausted iterator instead of starting a new pass - " + REITERABLE
    else:
        hint = ""
    return ValueError(f"{where}: the {what} yielded no batches{when}{hint}")


class BatchData:
    """Batches from a batch source (see the module docstring), validated one by one: (x, y) or
    (x, y, sample_weight) (x alone when `need_y` is False), every array of a batch with the same
    number of samples."""

    def __init__(self, source: Any, what: str, where: str, *, need_y: bool = True, steps: int | None = None,
                 shuffle: bool = False, seed: int = 0, class_weight: dict[int, float] | None = None,
                 replay_epochs: bool = False) -> None:
        """`replay_epochs`: a DataLoader's set_epoch(epoch) before each pass, so that a resumed
        fit replays its shuffles (training data; a validation loader keeps its own count)."""
        self.source, self.what, self.where = source, what, where
        self.replay_epochs = bool(replay_epochs)
        self.kind = _kind(source)
        self.one_shot = self.kind == "one-shot"
        self.need_y = need_y
        self.shuffle, self.seed = bool(shuffle), int(seed)
        self.class_weight = class_weight
        self.stream = steps is not None  # one stream continued across epochs
        if steps is not None:
            self.steps: int | None = int(steps)
        else:
            self.steps = len(source) if hasattr(source, "__len__") and self.kind != "function" else None
        samples = getattr(source, "num_samples", None)
        self.num_samples = samples if isinstance(samples, int) and not self.stream else None
        self.ran_out = False
        self._current: Iterator | None = None  # the stream's pass in progress
        self._pending: Any = None  # a batch has_more() drew ahead
        self._passes = 0  # passes started that yielded a batch
        self._batch = 0  # batches delivered in the current epoch

    # -- passes ---------------------------------------------------------------------------------
    def _new_pass(self, epoch: int) -> Iterator:
        source = self.source
        if self.kind == "one-shot":
            return source
        if self.kind == "sequence":
            n = len(source)
            order = epoch_order(self.seed, n, epoch) if self.shuffle else range(n)
            return (source[int(i)] for i in order)
        if self.kind == "function":
            made = source()
            try:
                return iter(made)
            except TypeError:
                raise TypeError(f"{self.where}: the {self.what} is a function, which must return an iterator or an "
                                f"iterable of batches, but it returned {type(made).__name__}") from None
        if hasattr(source, "set_epoch") and self.replay_epochs and not self.stream:
            source.set_epoch(epoch)  # a DataLoader replays epoch `epoch` (a resumed fit)
        return iter(source)

    def _close(self, it: Iterator | None) -> None:
        """Stop a pass this object started (a DataLoader's prefetch thread); a one-shot iterator is
        the caller's and stays open."""
        if it is not None and it is not self.source and callable(getattr(it, "close", None)):
            it.close()

    # -- epochs ---------------------------------------------------------------------------------
    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of `epoch`: one whole pass, or `steps` batches of the stream."""
        self._batch = 0
        if callable(getattr(self.source, "on_epoch_begin", None)) and self.kind == "sequence":
            self.source.on_epoch_begin()
        if not self.stream:
            it = self._new_pass(epoch)
            try:
                for batch in it:
                    yield self._standardize(batch)
            finally:
                self._close(it)
            return
        for _ in range(self.steps or 0):
            batch = self._next(epoch)
            if batch is None:
                self.ran_out = True
                return
            yield self._standardize(batch)

    def has_more(self) -> bool:
        """Whether another epoch can draw a batch: False only for a one-shot stream that is
        exhausted (found by drawing its next batch ahead, which the next epoch then takes)."""
        if not (self.stream and self.one_shot) or self._pending is not None:
            return True
        self._pending = self._next(0)
        return self._pending is not None

    def _next(self, epoch: int) -> Any:
        """The stream's next batch, starting a new pass where one ends; None when a one-shot
        iterator is exhausted."""
        if self._pending is not None:
            batch, self._pending = self._pending, None
            return batch
        fresh = self._current is None
        if fresh:
            self._current = self._new_pass(epoch)
        try:
            batch = next(self._current)
        except StopIteration:
            if self.one_shot:
                return None
            if fresh:
                raise no_batches_error(self.source, self.what, self.where, epoch, again=self._passes > 0) from None
            self._close(self._current)
            self._current = None
            return self._next(epoch)
        if fresh:
            self._passes += 1
        return batch

    def end_epoch(self) -> None:
        """After each epoch (and each evaluation): a Sequence's on_epoch_end(), as Keras calls it."""
        if self.kind == "sequence" and callable(getattr(self.source, "on_epoch_end", None)):
            self.source.on_epoch_end()

    def close(self) -> None:
        """End the stream (after the fit), stopping a pass it left open."""
        self._close(self._current)
        self._current = None

    # -- one batch ------------------------------------------------------------------------------
    def _standardize(self, batch: Any) -> Batch:
        self._batch += 1
        if not self.need_y:
            xb = batch[0] if isinstance(batch, (tuple, list)) and 1 <= len(batch) <= 3 else batch
            return imported(xb, f"{self.where}: batch {self._batch} of the {self.what}"), None, None
        if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
            batch = tuple(imported(part, f"{self.where}: batch {self._batch} of the {self.what}") for part in batch)
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            got = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) else \
                type(batch).__name__
            raise ValueError(f"{self.where}: batch {self._batch} of the {self.what} must be (x, y) or (x, y, "
                             f"sample_weight), got {got}")
        xb, yb = batch[0], batch[1]
        swb = batch[2] if len(batch) == 3 else None
        lengths = [("x", a) for a in leaves(xb)] + [("y", a) for a in leaves(yb)]
        if swb is not None:
            if not is_array(swb) or len(swb.shape) != 1:
                raise ValueError(f"{self.where}: batch {self._batch} of the {self.what} has a sample_weight of shape "
                                 f"{getattr(swb, 'shape', None)}; expected one weight per sample, (N,)")
            lengths.append(("sample_weight", swb))
        sizes = {(label, int(a.shape[0])) for label, a in lengths if is_array(a) and len(a.shape)}
        if len({s for _, s in sizes}) > 1:
            parts = ", ".join(f"{label}: {s}" for label, s in sorted(sizes))
            raise ValueError(f"{self.where}: batch {self._batch} of the {self.what} holds arrays of different lengths "
                             f"({parts}); every array of a batch needs one entry per sample on axis 0")
        if self.class_weight is not None:
            if swb is not None:
                raise ValueError(f"{self.where}: argument 'class_weight' cannot be combined with sample weights, but "
                                 f"batch {self._batch} of the {self.what} is (x, y, sample_weight); give one of them")
            swb = class_weights_for(yb, self.class_weight, self.where)
        return xb, yb, swb


# -- the entry point ------------------------------------------------------------------------------
def array_weights(sample_weight: Any, class_weight: dict[int, float] | None, x: Any, y: Any,
                  where: str) -> np.ndarray | None:
    """The per-sample weights of array data: `sample_weight` validated, or those `class_weight`
    gives y's labels, or None."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError(f"{where}: give 'sample_weight' or 'class_weight', not both (Keras refuses both too); fold "
                         "the class weights into the sample weights instead")
    if sample_weight is not None:
        host = to_host(sample_weight) if is_array(sample_weight) else sample_weight
        return sample_weight_arg(host, num_samples(x), "sample_weight", where)
    if class_weight is not None:
        if y is None:
            raise ValueError(f"{where}: argument 'class_weight' needs targets 'y'")
        return class_weights_for(y, class_weight, where)
    return None


def batch_size_of(xb: Any) -> int:
    """The number of samples in a batch (the first array's axis 0)."""
    first = leaves(xb)
    return int(first[0].shape[0]) if first and is_array(first[0]) and len(first[0].shape) else 1


__all__ = ["ArrayData", "Batch", "BatchData", "DataRanOutWarning", "REITERABLE", "array_weights", "batch_size_of",
           "class_weights_for", "epoch_order", "imported", "is_batch_source", "is_one_shot", "is_sequence", "leaves",
           "no_batches_error", "num_samples", "one_shot_error", "split_arrays", "take"]

