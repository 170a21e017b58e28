"""compile(distributed=True): what fit, evaluate and train_on_batch do across ranks.

Each rank runs the same script on its shard of the data (one process per device, `mpiexec -n N`):
- **arrays** given to fit / evaluate are sharded per epoch (gpunn.distributed.sharding): every rank
  takes an equal part of the same shuffled order, so `batch_size` is per rank and the global batch
  is batch_size x world_size, as in PyTorch's DistributedDataParallel. An unsharded DataLoader is
  sharded the same way (`DataLoader.set_shard`); any other batch source is the script's to split,
  with the same number of batches on every rank;
- **the first training step** builds the model if needed (one inference forward) and installs the
  optimizer's GradientSync (gpunn/optim/distributed.py): the model is checked to be the same on every
  rank and rank 0's weights, buffers and optimizer state are broadcast; gradients are averaged;
- **the step's outcome is agreed**: a loss that is not finite on any rank skips the update on all;
- **logs**: an epoch's loss and metrics (training and validation) are the means over every rank's
  samples, reduced before callbacks see them, so early stopping, schedules and checkpoints decide
  the same everywhere; `stop_training` set on any rank stops every rank at the same batch;
- **output**: progress bars, printing and the callbacks that write (checkpoints, CSV, TensorBoard)
  run on rank 0 only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn.distributed import collectives
from gpunn.distributed.world import World, init
from gpunn.optim.distributed import DistributedOptimizer


class DataParallel:
    """The data-parallel state of one compiled model."""

    def __init__(self, model: Any, timeout: float | None = None) -> None:
        self.world: World = init(timeout)
        self.model = model
        self._sync: Any = None  # the GradientSync installed on the model's optimizer
        # every rank shuffles array data with rank 0's seed (each drew its own at compile)
        model.shuffle_seed = collectives.broadcast_int(int(model.shuffle_seed or 0)) if self.active else \
            model.shuffle_seed

    @property
    def active(self) -> bool:
        return self.world.size > 1

    @property
    def rank(self) -> int:
        return self.world.rank

    @property
    def size(self) -> int:
        return self.world.size

    @property
    def shard(self) -> tuple[int, int] | None:
        return (self.rank, self.size) if self.active else None

    def prepare(self, xb: Any) -> None:
        """Before a training step: the model built and the optimizer averaging across ranks."""
        if not self.active:
            return
        model = self.model
        if not list(model.parameters()):
            model.forward(xb, training=False)  # builds the layers; inference mode changes no state
        opt = model.optimizer
        sync = getattr(opt, "grad_sync", None)
        if sync is None:
            if self._sync is not None:
                self._sync.close()  # the optimizer was rebuilt (layers frozen or unfrozen): unhook the old one
            sync = DistributedOptimizer(opt, model).grad_sync
        elif not sync.ready:
            sync.setup("fit")
        self._sync = sync

    def begin_step(self) -> None:
        sync = getattr(self.model.optimizer, "grad_sync", None)
        if self.active and sync is not None:
            sync.begin_step()

    def agree_finite(self, loss: float) -> bool:
        """Whether the loss is finite on every rank (else every rank skips the update)."""
        if not self.active:
            return bool(np.isfinite(loss))
        return collectives.agree_max(0.0 if np.isfinite(loss) else 1.0) == 0.0

    def agree_stop(self, flag: bool) -> bool:
        """Whether any rank asked to stop."""
        return bool(flag) if not self.active else collectives.agree_max(1.0 if flag else 0.0) > 0

    def reduce_totals(self, totals: dict[str, float], seen: int) -> tuple[dict[str, float], int]:
        """Sample-weighted sums of the logs, and the sample count, summed over every rank."""
        if not self.active:
            return totals, seen
        keys = sorted(totals)
        vec = np.array([float(seen), *(totals[k] for k in keys)], dtype=np.float64)
        # the keys must agree too, or the sums would mix metrics: their count is checked below
        size = collectives.all_gather_host([len(keys)])
        if len(set(size[:, 0].tolist())) != 1:
            raise RuntimeError(f"fit: the ranks logged different metrics ({size[:, 0].tolist()} values)")
        collectives.all_reduce(vec, "sum")
        return {k: float(v) for k, v in zip(keys, vec[1:])}, int(vec[0])


def shard_loader(source: Any, dp: DataParallel | None) -> None:
    """Shard a DataLoader that is not yet sharded (data-parallel fit / evaluate)."""
    if dp is None or not dp.active:
        return
    if hasattr(source, "set_shard") and getattr(source, "shard", None) is None:
        source.set_shard(dp.rank, dp.size, seed_given=False)
