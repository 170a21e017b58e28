"""Data-parallel training across processes: one process per device, started by `mpiexec -n N`.

- `init()`, `rank()`, `world_size()`, `is_main()`, `barrier()`, `all_reduce(a, op)`,
  `all_reduce_async`, `broadcast(a, src)`: host arrays through MPI (mpi4py), CuPy arrays through
  NCCL. Alone - no launcher - `init()` is a no-op and every collective returns its input.
- `shard_indices` / `DistributedSampler`: equal-length shards per rank (see sharding.py);
  `DataLoader(..., shard=(rank, world_size))` uses them.
- Data parallelism itself: `model.compile(..., distributed=True)`, or for a custom loop
  `gpunn.optim.DistributedOptimizer(optimizer)` (bucketed gradient averaging overlapped with
  backward, see gpunn/optim/distributed.py), and `BatchNorm(sync=True)` for global statistics.
- `engines()`: which engines are usable here (`python -m gpunn info` prints it).

Faults and the timeout: see world.py. Install: `pip install "gpunn[mpi]"` (mpi4py and the mpich wheel).
"""
from __future__ import annotations

from gpunn.distributed.collectives import (Work, agree_max, all_gather_host, all_reduce, all_reduce_async, barrier,
                                           broadcast, broadcast_int)
from gpunn.distributed.engines import engines
from gpunn.distributed.sharding import DistributedSampler, check_shard, shard_indices, shard_length, shard_order
from gpunn.distributed.world import (DEFAULT_TIMEOUT, World, init, is_initialized, is_main, launched_size, rank,
                                     set_timeout, world, world_size)
from gpunn.errors import DistributedError, DistributedTimeoutError

__all__ = ["DEFAULT_TIMEOUT", "DistributedError", "DistributedSampler", "DistributedTimeoutError", "Work", "World",
           "agree_max", "all_gather_host", "all_reduce", "all_reduce_async", "barrier", "broadcast", "broadcast_int",
           "check_shard", "engines", "init", "is_initialized", "is_main", "launched_size", "rank", "set_timeout",
           "shard_indices", "shard_length", "shard_order", "world", "world_size"]
