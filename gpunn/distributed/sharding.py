"""Which samples each rank trains on: equal-length shards, as PyTorch's DistributedSampler makes them.

Every rank computes the same epoch order (a permutation seeded by (seed, epoch), or 0..n-1), then:
- without `drop_last` the order is padded to a multiple of the world size by repeating its first
  samples (a few samples are seen twice per epoch when n % world_size != 0);
- with `drop_last` its tail is cut to a multiple of the world size (a few samples are skipped).
Rank r takes positions r, r + world_size, r + 2 * world_size, ... of that order, so consecutive
global batches are split across ranks and every rank gets the same number of samples (and of
batches), which keeps the ranks in step.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from gpunn._checks import int_arg, positive_int


def check_shard(shard: object, where: str) -> tuple[int, int]:
    """A (rank, world_size) pair with 0 <= rank < world_size."""
    ok = isinstance(shard, (tuple, list)) and len(shard) == 2
    if ok:
        rank, size = shard
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (rank, size))
        ok = ok and int(size) >= 1 and 0 <= int(rank) < int(size)
    if not ok:
        raise ValueError(f"{where}: argument 'shard' must be a pair (rank, world_size) of ints with 0 <= rank < "
                         f"world_size, got {shard!r}")
    return int(shard[0]), int(shard[1])  # type: ignore[index]


def shard_length(n: int, world_size: int, drop_last: bool) -> int:
    """Samples per rank per epoch."""
    return n // world_size if drop_last else -(-n // world_size)


def shard_indices(n: int, rank: int, world_size: int, epoch: int = 0, shuffle: bool = True, seed: int = 0,
                  drop_last: bool = False) -> np.ndarray:
    """The sample indices rank `rank` of `world_size` trains on in `epoch` (see module doc)."""
    where = "shard_indices"
    n = positive_int(n, "n", where)
    rank, world_size = check_shard((rank, world_size), where)
    epoch = int_arg(epoch, "epoch", where, 0)
    seed = int_arg(seed, "seed", where, 0)
    if shard_length(n, world_size, drop_last) == 0:
        raise ValueError(f"{where}: {n} samples cannot give each of {world_size} ranks one with drop_last=True")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    return shard_order(order, rank, world_size, drop_last)


def shard_order(order: np.ndarray, rank: int, world_size: int, drop_last: bool = False) -> np.ndarray:
    """Rank `rank`'s part of an epoch's sample `order` (the same order on every rank): padded by
    repeating its start, or cut, to a multiple of `world_size`, then every world_size-th from `rank`."""
    n = int(order.shape[0])
    total = shard_length(n, world_size, drop_last) * world_size
    if total > n:
        order = np.concatenate([order, np.resize(order, total - n)])  # np.resize repeats from the start
    return order[:total][rank::world_size]


class DistributedSampler:
    """PyTorch's DistributedSampler for gpunn: iterate the sample indices of one rank's shard.

    `num_replicas` and `rank` default to gpunn.distributed's world; call `set_epoch(e)` before
    each epoch so the shuffle changes per epoch (and is the same on every rank)."""

    def __init__(self, num_samples: int, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        where = "DistributedSampler"
        self.num_samples_total = positive_int(num_samples, "num_samples", where)
        if num_replicas is None or rank is None:
            from gpunn.distributed.world import world  # noqa: PLC0415 - same package; joins only when asked
            w = world()
            num_replicas = w.size if num_replicas is None else num_replicas
            rank = w.rank if rank is None else rank
        self.rank, self.num_replicas = check_shard((rank, num_replicas), where)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.seed = int_arg(seed, "seed", where, 0)
        self.epoch = 0
        if shard_length(self.num_samples_total, self.num_replicas, self.drop_last) == 0:
            raise ValueError(f"{where}: {num_samples} samples cannot give each of {num_replicas} ranks one with "
                             "drop_last=True")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int_arg(epoch, "epoch", "DistributedSampler.set_epoch", 0)

    def __len__(self) -> int:
        return shard_length(self.num_samples_total, self.num_replicas, self.drop_last)

    def __iter__(self) -> Iterator[int]:
        idx = shard_indices(self.num_samples_total, self.rank, self.num_replicas, self.epoch, self.shuffle,
                            self.seed, self.drop_last)
        return iter(int(i) for i in idx)
