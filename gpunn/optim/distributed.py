"""Data-parallel gradient averaging: DistributedOptimizer, and the bucketed all-reduce behind it.

`DistributedOptimizer(opt)` installs a `GradientSync` on any gpunn optimizer and returns the same
optimizer (still an Adam, an SGD, ...), the way Horovod's DistributedOptimizer wraps one:

- **At the start** (`setup`, run by the wrapper once the model is built and by compile(distributed=True)
  before the first step): the model's structure is compared across ranks (a differing model is a
  DistributedError naming the ranks), then parameters, buffers, the optimizer's moments and step
  count are broadcast from rank 0, and each rank's dropout generator is seeded differently.
- **Buckets** are slices of the optimizer's flat gradient buffer, made once: parameters are packed
  in forward order and backward writes them last-to-first, so the buckets are cut from the end - a
  small first one (`first_bucket_mb`, 1 MB) so the first reduction starts early, then about
  `bucket_mb` (25 MB) each, at parameter boundaries. No per-step allocation: a bucket is reduced in
  place, in its slice.
- **Overlap:** a forward hook counts each layer's forwards and a backward hook its backwards; when a
  layer's last backward of the step has returned, its parameters' gradients are complete, and a
  bucket whose parameters are all complete starts its all-reduce at once (non-blocking MPI; NCCL on a
  side stream) while backward goes on with earlier layers. Each hook also tests the requests in
  flight, which is what makes MPI progress them.
- **In the step:** `optimizer.step()` first starts whatever bucket is not started yet (all of them
  when no hook saw the backward: a custom backward, a parameter list without a model), waits for
  every bucket and scales it by 1 / world_size - the average - then clips and updates as usual.
  Correctness never rests on the hooks: they only make reductions start earlier.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from gpunn import _checks
from gpunn.distributed import collectives as distributed
from gpunn.distributed.world import rank, world_size
from gpunn.errors import DistributedError

MB = 1 << 20


def model_fingerprint(model: Any) -> list[int]:
    """[hash of every parameter's and buffer's name, shape and dtype, parameter count, elements]."""
    h = hashlib.sha256()
    count = total = 0
    for name, p in model.named_parameters():
        h.update(f"p {name} {tuple(p.data.shape)} {np.dtype(p.data.dtype).str}\n".encode())
        count += 1
        total += int(p.data.size)
    for layer in model.sublayers():
        for name, b in layer.buffers.items():
            h.update(f"b {layer.name}.{name} {tuple(b.shape)} {np.dtype(b.dtype).str}\n".encode())
    return [int.from_bytes(h.digest()[:7], "little"), count, total]


def check_same_model(model: Any, where: str) -> None:
    """DistributedError on every rank when the ranks' models differ in structure."""
    rows = distributed.all_gather_host(model_fingerprint(model))
    bad = [r for r in range(rows.shape[0]) if not np.array_equal(rows[r], rows[0])]
    if bad:
        raise DistributedError(
            f"{where}: the model differs across ranks: rank(s) {bad} have {rows[bad[0], 1]} parameters with "
            f"{rows[bad[0], 2]} elements, or other names, shapes or dtypes, where rank 0 has {rows[0, 1]} with "
            f"{rows[0, 2]}; every rank must build the same model")


def broadcast_model(model: Any, skip: set[int]) -> None:
    """Rank 0's parameters and buffers on every rank, in place; parameters whose id is in `skip`
    (those in the optimizer's flat buffer, broadcast as one) are left to the caller."""
    arrays = [p.data for p in model.parameters() if id(p) not in skip]
    arrays += [b for layer in model.sublayers() for b in layer.buffers.values()]
    for a in arrays:
        if a.flags.c_contiguous:
            distributed.broadcast(a)
        else:  # a strided view: through a contiguous copy
            copy = a.copy()
            distributed.broadcast(copy)
            a[...] = copy


def seed_dropout_per_rank(backend: Any) -> None:
    """A different dropout stream on every rank, from one seed rank 0 draws: the masks differ by
    design (each rank sees other samples), reproducibly for a given rank-0 seed."""
    from gpunn.random import host_rng  # noqa: PLC0415 - random sits below; kept local for clarity

    base = distributed.broadcast_int(int(host_rng().integers(2**62)))
    seed = int(np.random.SeedSequence([base, rank()]).generate_state(1)[0])
    backend.manual_seed(seed)


class _Bucket:
    __slots__ = ("start", "stop", "view", "pending", "work", "params")

    def __init__(self, start: int, stop: int, view: Any, params: list[int]) -> None:
        self.start, self.stop, self.view, self.params = start, stop, view, params
        self.pending = 0
        self.work: Any = None


class GradientSync:
    """The bucketed, overlapped gradient all-reduce of one optimizer (see the module docstring)."""

    def __init__(self, optimizer: Any, model: Any = None, bucket_mb: float = 25.0, first_bucket_mb: float = 1.0) -> None:
        where = "DistributedOptimizer"
        self.optimizer = optimizer
        self.model = model if model is not None else getattr(optimizer, "_source", None)
        self.bucket_bytes = _checks.positive_real(bucket_mb, "bucket_mb", where, numpy=False) * MB
        self.first_bucket_bytes = _checks.positive_real(first_bucket_mb, "first_bucket_mb", where, numpy=False) * MB
        self.ready = False
        self.buckets: list[_Bucket] = []
        self._hooks: list[Any] = []
        self._owners: dict[int, list[int]] = {}  # layer id -> packed parameter indices it owns
        self._forwards: dict[int, int] = {}
        self._backwards: dict[int, int] = {}
        self._param_bucket: list[int] = []
        self._param_pending: list[int] = []
        self._owner_count: list[int] = []
        self._early = True
        #: seconds spent waiting for reductions in step() (the part backward did not hide)
        self.wait_seconds = 0.0
        self.reduce_calls = 0

    # -- the start ----------------------------------------------------------------------------
    def setup(self, where: str = "DistributedOptimizer") -> None:
        """Check the model is the same everywhere, broadcast rank 0's state, cut the buckets and
        hook the layers. Needs the model built (its parameters exist)."""
        opt = self.optimizer
        if self.model is not None:
            if not list(self.model.parameters()):
                raise DistributedError(f"{where}: the model has no parameters yet; build it (model.build(input_shape) "
                                       "or one forward) before data-parallel training, so rank 0's initial weights "
                                       "can be broadcast")
            check_same_model(self.model, where)
        opt._ensure_packed(where)
        opt._resync()  # a parameter array replaced since packing is copied into its view first
        distributed.broadcast(opt._flat_data)  # every trainable parameter at once (they are views of it)
        for buf in opt._state.values():
            distributed.broadcast(buf)
        opt.step_count = distributed.broadcast_int(int(opt.step_count))
        if self.model is not None:
            broadcast_model(self.model, skip={id(p) for p in opt.params})  # frozen parameters, buffers
            seed_dropout_per_rank(self.model.backend)
        self._cut_buckets()
        self._hook_layers()
        self.ready = True
        self.begin_step()

    def _cut_buckets(self) -> None:
        opt = self.optimizer
        sizes = [int(p.data.size) for p in opt.params]
        itemsize = np.dtype(opt._flat_grad.dtype).itemsize
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.buckets, self._param_bucket = [], [0] * len(sizes)
        self._flat = opt._flat_grad
        stop, members = int(offsets[-1]), []
        limit = self.first_bucket_bytes
        for i in range(len(sizes) - 1, -1, -1):  # backward order: last parameters first
            members.append(i)
            start = int(offsets[i])
            if (stop - start) * itemsize >= limit or i == 0:
                self.buckets.append(_Bucket(start, stop, opt._flat_grad[start:stop], members))
                for j in members:
                    self._param_bucket[j] = len(self.buckets) - 1
                stop, members, limit = start, [], self.bucket_bytes

    def _hook_layers(self) -> None:
        self.close()
        self._owners = {}
        index = {id(p): i for i, p in enumerate(self.optimizer.params)}
        self._owner_count = [0] * len(index)
        if self.model is None:
            return
        for layer in self.model.sublayers():
            own = [index[id(p)] for p in layer.params.values() if id(p) in index]
            if not own:
                continue
            self._owners[id(layer)] = own
            for i in own:
                self._owner_count[i] += 1
            self._hooks.append(layer.register_forward_hook(self._on_forward))
            self._hooks.append(layer.register_backward_hook(self._on_backward))
        if any(c == 0 for c in self._owner_count):
            self._early = False  # a parameter no layer owns: nobody says when its gradient is done

    def close(self) -> None:
        """Unhook the layers (an optimizer rebuilt over the same model gets a fresh sync)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    # -- one step -----------------------------------------------------------------------------
    def begin_step(self) -> None:
        """Forget the last step's counts (zero_grad calls it)."""
        self._forwards.clear()
        self._backwards.clear()
        self._param_pending = list(self._owner_count)
        for b in self.buckets:
            b.pending, b.work = len(b.params), None

    def _on_forward(self, layer: Any) -> None:
        self._forwards[id(layer)] = self._forwards.get(id(layer), 0) + 1

    def _on_backward(self, layer: Any) -> None:
        key = id(layer)
        done = self._backwards[key] = self._backwards.get(key, 0) + 1
        if self._early and done == self._forwards.get(key, 0):
            opt = self.optimizer
            for i in self._owners.get(key, ()):
                if opt.params[i].grad is not opt._grad_views[i]:
                    return  # a gradient array was replaced: step() resyncs, then reduces everything
                self._param_pending[i] -= 1
                if self._param_pending[i] == 0:
                    bucket = self.buckets[self._param_bucket[i]]
                    bucket.pending -= 1
                    if bucket.pending == 0 and bucket.work is None:
                        self._start(bucket)
        for b in self.buckets:  # drive MPI's progress on the reductions in flight
            if b.work is not None:
                b.work.done()

    def _start(self, bucket: _Bucket) -> None:
        bucket.work = distributed.all_reduce_async(bucket.view, "sum")
        self.reduce_calls += 1

    def finish(self) -> None:
        """Start the buckets not started yet, wait for all, average; step() calls it first."""
        t0 = time.perf_counter()
        if self._flat is not self.optimizer._flat_grad:  # re-packed since (model.to, a resync): re-cut
            self._cut_buckets()
            self._hook_layers()
            self.begin_step()
        scale = None
        for b in self.buckets:
            if b.work is None:
                self._start(b)
        for b in self.buckets:
            b.work.wait()
            if scale is None:
                scale = b.view.dtype.type(1.0 / world_size())
            b.view *= scale
        self.wait_seconds += time.perf_counter() - t0
        self.begin_step()


def DistributedOptimizer(optimizer: Any, model: Any = None, bucket_mb: float = 25.0,  # noqa: N802 - Horovod's name
                         first_bucket_mb: float = 1.0) -> Any:
    """Make `optimizer` average its gradients across ranks before each update (see the module
    docstring); returns the same optimizer. `model`: the model it trains, when the optimizer was
    built on a parameter list (without it the reductions are not overlapped with backward).
    Alone (world size 1) the optimizer is returned unchanged."""
    from gpunn.optim.base import Optimizer  # noqa: PLC0415 - beside this module

    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"DistributedOptimizer: argument 'optimizer' must be a gpunn Optimizer, got "
                        f"{type(optimizer).__name__}")
    if model is not None and not callable(getattr(model, "parameters", None)):
        raise TypeError(f"DistributedOptimizer: argument 'model' must be a model or layer, got {type(model).__name__}")
    if getattr(optimizer, "grad_sync", None) is not None:
        return optimizer
    sync = GradientSync(optimizer, model, bucket_mb, first_bucket_mb)
    if world_size() == 1:
        return optimizer
    optimizer.grad_sync = sync
    if sync.model is None or list(sync.model.parameters()):
        sync.setup()
    return optimizer
