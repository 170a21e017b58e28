"""DataLoader: mini-batches on the current backend's device, prepared one step ahead in a thread.

Why a thread: gathering a batch, augmenting it on the host and copying it to the device take
time that the training step (mostly BLAS or a GPU kernel, both of which release the GIL) can
overlap. The queue is bounded, so at most `prefetch` batches wait in memory.

Reproducibility: epoch e of a loader with seed s shuffles with `default_rng([s, e])` and feeds
its transforms `default_rng([s, e, 1])`, so a run replays exactly whatever the thread timing.
"""
from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from gpunn._checks import int_arg, positive_int, sample_weight_arg
from gpunn.backend import Backend, foreign_to_host, get_backend, is_foreign_array
from gpunn.backend.base import native_byte_order
from gpunn.distributed.collectives import broadcast_int
from gpunn.distributed.sharding import check_shard, shard_length, shard_order
from gpunn.random import host_rng

_END = object()


class _Failure:
    """An exception raised in the producer thread, carried to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _call_transform(transform: Callable, xb: np.ndarray, rng: np.random.Generator) -> Any:
    from gpunn.data.transforms import Transform  # late: transforms does not need the loader

    return transform(xb, rng=rng) if isinstance(transform, Transform) else transform(xb)


class DataLoader:
    """Iterate over (x, y) in mini-batches; each `for` loop over the loader is one epoch.

    - `x`, `y`: host arrays with the samples on axis 0 (`y` may be None: batches are then x only).
    - `sample_weight`: one weight per sample (finite, >= 0); batches are then (x, y, sample_weight),
      which fit and evaluate read as Keras does (the loss is the weighted mean).
    - `shuffle`, `seed`: a fresh permutation per epoch, reproducible from the seed (seed None draws
      one from gpunn's host generator, so `gpunn.manual_seed` makes it reproducible too).
    - `drop_last`: skip a final batch smaller than `batch_size`.
    - `shard`: (rank, world_size) to iterate only that rank's equal part of each epoch, for data
      parallelism (gpunn.distributed.sharding; as PyTorch's DistributedSampler does).
    - `transform`: applied on the host to each x batch (a `gpunn.data.transforms.Transform` gets
      the epoch's generator; any other callable is called as `transform(xb)`).
    - `prefetch`: batches prepared ahead in a background thread; 0 prepares them inline.
    - `to_device`: move batches to the current backend with `asarray` (the backend current in the
      thread that starts the epoch).
    """

    def __init__(self, x: Any, y: Any = None, batch_size: int = 32, shuffle: bool = False, seed: int | None = None,
                 drop_last: bool = False, transform: Callable | None = None, prefetch: int = 2,
                 to_device: bool = True, sample_weight: Any = None, shard: tuple[int, int] | None = None) -> None:
        where = "DataLoader"
        # torch/JAX tensors become host arrays once: in place for CPU ones, one copy for a device
        # tensor (batches are gathered and transformed on the host, then moved by to_device)
        x = foreign_to_host(x, where) if is_foreign_array(x) else x
        y = foreign_to_host(y, where) if is_foreign_array(y) else y
        if sample_weight is not None and is_foreign_array(sample_weight):
            sample_weight = foreign_to_host(sample_weight, where)
        if isinstance(x, (list, tuple)):
            x = np.asarray(x)
        if not hasattr(x, "shape") or len(x.shape) == 0:
            raise TypeError(f"{where}: argument 'x' must be an array with samples on axis 0, got {type(x).__name__}")
        if x.shape[0] == 0:
            raise ValueError(f"{where}: argument 'x' is empty (shape {tuple(x.shape)}); expected at least one sample")
        if y is not None:
            if isinstance(y, (list, tuple)):
                y = np.asarray(y)
            if not hasattr(y, "shape") or len(y.shape) == 0 or y.shape[0] != x.shape[0]:
                raise ValueError(f"{where}: argument 'y' must have {x.shape[0]} samples on axis 0 to match x, "
                                 f"got shape {getattr(y, 'shape', None)}")
        if sample_weight is not None:
            if y is None:
                raise ValueError(f"{where}: argument 'sample_weight' needs targets 'y' (batches are (x, y, "
                                 "sample_weight))")
            sample_weight = sample_weight_arg(sample_weight, int(x.shape[0]), "sample_weight", where)
        positive_int(batch_size, "batch_size", where)
        if seed is not None:
            int_arg(seed, "seed", where, 0, want="a non-negative int or None")
        if transform is not None and not callable(transform):
            raise TypeError(f"{where}: argument 'transform' must be callable or None, got {type(transform).__name__}")
        int_arg(prefetch, "prefetch", where, 0)
        if shard is not None:
            shard = check_shard(shard, where)
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed) if seed is not None else int(host_rng().integers(2**62))
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.prefetch = int(prefetch)
        self.to_device = bool(to_device)
        self.epoch = 0  # the epoch the next iteration runs; advanced by each __iter__
        self.shard: tuple[int, int] | None = None
        if shard is not None:
            self.set_shard(*shard, seed_given=seed is not None)

    def set_shard(self, rank: int, world_size: int, seed_given: bool = True) -> None:
        """Iterate only rank `rank`'s equal part of each epoch (data parallelism; see
        gpunn.distributed.sharding: the order is padded to a multiple of `world_size`). Every rank
        must shuffle alike: without a given seed, rank 0's is broadcast (a collective: every rank
        calls this). compile(distributed=True) shards an unsharded DataLoader this way in fit."""
        self.shard = check_shard((rank, world_size), "DataLoader.set_shard")
        if not seed_given and world_size > 1:
            self.seed = broadcast_int(self.seed)

    @property
    def total_samples(self) -> int:
        """Samples in `x`, across every shard."""
        return int(self.x.shape[0])

    @property
    def num_samples(self) -> int:
        """Samples one epoch iterates: all of `x`, or this rank's shard."""
        n = int(self.x.shape[0])
        return n if self.shard is None else shard_length(n, self.shard[1], False)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration replay epoch `epoch` (for resuming)."""
        self.epoch = int(epoch)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """The sample indices of each batch of `epoch`."""
        total = self.total_samples
        order = np.random.default_rng([self.seed, epoch]).permutation(total) if self.shuffle else np.arange(total)
        if self.shard is not None:
            order = shard_order(order, *self.shard)
        n = int(order.shape[0])
        stop = len(self) * self.batch_size if self.drop_last else n
        return [order[i:i + self.batch_size] for i in range(0, stop, self.batch_size)]

    def make_batch(self, idx: np.ndarray, rng: np.random.Generator, backend: Backend | None) -> Any:
        xb = self.x[idx]
        if self.transform is not None:
            xb = _call_transform(self.transform, xb, rng)
        yb = self.y[idx] if self.y is not None else None
        wb = self.sample_weight[idx] if self.sample_weight is not None else None
        if backend is not None:
            # byte-swapped per batch, not up front: `x` may be a big-endian memmap larger than memory
            xb = backend.asarray(native_byte_order(xb))
            yb = backend.asarray(native_byte_order(yb)) if yb is not None else None
            wb = backend.asarray(wb) if wb is not None else None
        if yb is None:
            return xb
        return (xb, yb) if wb is None else (xb, yb, wb)

    def __iter__(self) -> _BatchIterator:
        epoch = self.epoch
        self.epoch += 1
        rng = np.random.default_rng([self.seed, epoch, 1])
        backend = get_backend() if self.to_device else None  # captured here: backends are per thread
        return _BatchIterator(self, self.batch_indices(epoch), rng, backend)

    def __repr__(self) -> str:
        return (f"DataLoader(num_samples={self.num_samples}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, batches={len(self)}, prefetch={self.prefetch})")


_POLL = 0.05  # seconds between checks of the stop flag while blocked on the queue


def _put(q: queue.Queue, stop: threading.Event, item: Any) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _produce(loader: DataLoader, batches: list[np.ndarray], rng: np.random.Generator, backend: Backend | None,
             q: queue.Queue, stop: threading.Event) -> None:
    """The prefetch thread. It holds no reference to the iterator, so an abandoned iterator is
    collected and its finalizer stops this thread."""
    try:
        for idx in batches:
            if stop.is_set() or not _put(q, stop, loader.make_batch(idx, rng, backend)):
                return
        _put(q, stop, _END)
    except BaseException as exc:  # carried to the consumer, which re-raises it
        _put(q, stop, _Failure(exc))


def _shutdown(q: queue.Queue, stop: threading.Event, thread: threading.Thread) -> None:
    stop.set()
    while True:  # unblock a producer waiting on a full queue
        try:
            q.get_nowait()
        except queue.Empty:
            break
    if thread is not threading.current_thread():
        thread.join()


class _BatchIterator(Iterator):
    """One epoch. Stops its thread on exhaustion, on error, on close()/`with`, or when collected."""

    def __init__(self, loader: DataLoader, batches: list[np.ndarray], rng: np.random.Generator,
                 backend: Backend | None) -> None:
        self._loader, self._batches, self._rng, self._backend = loader, batches, rng, backend
        self._next = 0
        self._done = False
        self._thread: threading.Thread | None = None
        self._finalizer: weakref.finalize | None = None
        if loader.prefetch > 0 and batches:
            self._queue: queue.Queue = queue.Queue(maxsize=loader.prefetch)
            stop = threading.Event()
            self._thread = threading.Thread(target=_produce, args=(loader, batches, rng, backend, self._queue, stop),
                                            name="gpunn-DataLoader-prefetch", daemon=True)
            self._thread.start()
            self._finalizer = weakref.finalize(self, _shutdown, self._queue, stop, self._thread)

    def __len__(self) -> int:
        return len(self._batches)

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        if self._thread is None:  # inline mode
            if self._next >= len(self._batches):
                self._done = True
                raise StopIteration
            idx = self._batches[self._next]
            self._next += 1
            return self._loader.make_batch(idx, self._rng, self._backend)
        while True:
            try:
                item = self._queue.get(timeout=_POLL)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self.close()
                    raise RuntimeError("DataLoader: the prefetch thread ended without delivering the epoch") from None
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            exc = item.exc
            if hasattr(exc, "add_note"):
                exc.add_note("(raised while preparing a batch in the DataLoader's prefetch thread)")
            raise exc
        self._next += 1
        return item

    def close(self) -> None:
        """Stop the prefetch thread and wait for it; safe to call more than once."""
        self._done = True
        self._thread = None
        if self._finalizer is not None:
            self._finalizer()  # runs _shutdown once

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def __enter__(self) -> _BatchIterator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
