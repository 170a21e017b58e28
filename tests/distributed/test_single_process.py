"""gpunn.distributed alone (no launcher): a world of one, argument checks, sharding, the layer
hooks and the bucketing that data parallelism rests on, and compile(distributed=True) as a no-op."""
from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpunn
from gpunn import distributed
from gpunn.backend.ops.norm import NormOps
from gpunn.data import DataLoader
from gpunn.distributed.world import _timeout_setting
from gpunn.layers import BatchNorm, BatchNormalization, Dense, ReLU
from gpunn.optim import SGD, Adam, DistributedOptimizer, GradientSync
from gpunn.testing import numerical_grad
from tests.distributed import launch, models


def test_alone_the_world_is_this_process() -> None:
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    a = np.arange(4.0)
    assert distributed.all_reduce(a, "sum") is a and a.tolist() == [0, 1, 2, 3]
    assert distributed.broadcast(a) is a
    distributed.barrier()
    assert distributed.all_gather_host([1, 2]).tolist() == [[1, 2]]


@pytest.mark.parametrize("bad,kind,words", [
    ([1.0, 2.0], TypeError, "argument 'a' must be a NumPy or CuPy array"),
    (np.arange(6.0).reshape(2, 3)[:, ::2], ValueError, "argument 'a' must be C-contiguous"),
    (np.array(["x"]), TypeError, "argument 'a' must hold numbers"),
])
def test_all_reduce_refuses(bad: object, kind: type, words: str) -> None:
    with pytest.raises(kind, match=words):
        distributed.all_reduce(bad)


def test_all_reduce_refuses_bad_ops() -> None:
    with pytest.raises(ValueError, match="argument 'op' must be one of"):
        distributed.all_reduce(np.zeros(2), "prod")
    with pytest.raises(TypeError, match="op='mean' needs a floating-point array"):
        distributed.all_reduce(np.zeros(2, dtype=np.int64), "mean")
    ro = np.zeros(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="must be writable"):
        distributed.all_reduce(ro)


@pytest.mark.parametrize("src", [1, -1, True, "0", 0.0])
def test_broadcast_refuses_bad_src(src: object) -> None:
    with pytest.raises(ValueError, match="argument 'src' must be a rank in 0..0"):
        distributed.broadcast(np.zeros(2), src=src)


def test_timeout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUNN_DIST_TIMEOUT", raising=False)
    assert _timeout_setting(None) == distributed.DEFAULT_TIMEOUT
    assert _timeout_setting(2.5) == 2.5
    with pytest.raises(ValueError, match="argument 'timeout'"):
        _timeout_setting(0)
    monkeypatch.setenv("GPUNN_DIST_TIMEOUT", "7")
    assert _timeout_setting(None) == 7.0
    monkeypatch.setenv("GPUNN_DIST_TIMEOUT", "soon")
    with pytest.raises(distributed.DistributedError, match="GPUNN_DIST_TIMEOUT must be a number of seconds"):
        _timeout_setting(None)
    with pytest.raises(ValueError, match="argument 'timeout'"):
        distributed.set_timeout(-1)


def test_launched_without_mpi4py_says_what_to_install() -> None:
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "from gpunn import distributed\n"
            "try:\n    distributed.init()\nexcept distributed.DistributedError as e:\n    print(e)\n")
    env = {**launch._env(), "PMI_SIZE": "2", "PMI_RANK": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "rank 1 of 2" in done.stdout and "pip install 'gpunn[mpi]'" in done.stdout, done.stdout + done.stderr


# -- sharding -----------------------------------------------------------------------------------
@given(n=st.integers(1, 60), size=st.integers(1, 5), epoch=st.integers(0, 3), drop=st.booleans(),
       shuffle=st.booleans())
def test_shards_partition_each_epoch(n: int, size: int, epoch: int, drop: bool, shuffle: bool) -> None:
    if drop and n < size:
        with pytest.raises(ValueError, match="cannot give each of"):
            distributed.shard_indices(n, 0, size, epoch, shuffle, 3, drop)
        return
    parts = [distributed.shard_indices(n, r, size, epoch, shuffle, 3, drop) for r in range(size)]
    lengths = {len(p) for p in parts}
    assert lengths == {distributed.shard_length(n, size, drop)}  # equal, so the ranks stay in step
    seen = np.concatenate(parts)
    if drop:
        assert len(set(seen.tolist())) == len(seen) == (n // size) * size  # no sample twice
    else:
        assert set(seen.tolist()) == set(range(n)) and len(seen) - n < size  # all, padded by < size


def test_distributed_sampler_matches_shard_indices_and_set_epoch() -> None:
    s = distributed.DistributedSampler(23, num_replicas=2, rank=1, seed=4)
    first = list(s)
    assert len(s) == 12 and first == distributed.shard_indices(23, 1, 2, 0, True, 4).tolist()
    s.set_epoch(1)
    assert list(s) != first
    alone = distributed.DistributedSampler(5)
    assert (alone.rank, alone.num_replicas) == (0, 1)


@pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0), (0,), "0,1", (True, 2), (0.0, 2)])
def test_bad_shards_are_refused(shard: object) -> None:
    with pytest.raises(ValueError, match="argument 'shard' must be a pair"):
        DataLoader(np.zeros((4, 1)), np.zeros(4), shard=shard)
    with pytest.raises(ValueError, match="argument 'shard' must be a pair"):
        distributed.check_shard(shard, "x")


def test_dataloader_shard_iterates_its_part() -> None:
    x = np.arange(10.0)[:, None]
    parts = [np.concatenate([b[:, 0] for b, _ in DataLoader(x, np.zeros(10), batch_size=3, shuffle=True, seed=1,
                                                            shard=(r, 3))]) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]
    assert set(np.concatenate(parts).astype(int).tolist()) == set(range(10))
    assert len(DataLoader(x, np.zeros(10), batch_size=3, shard=(0, 3))) == 2


# -- the layer hooks ----------------------------------------------------------------------------
def test_backward_hooks_fire_after_each_layer_last_to_first() -> None:
    m = gpunn.Sequential([Dense(4, input_shape=(3,)), ReLU(), Dense(2)])
    order: list[str] = []
    handles = [layer.register_backward_hook(lambda l: order.append(l.name)) for layer in m.layers]
    fwd = m.layers[0].register_forward_hook(lambda l: order.append("fwd " + l.name))
    m.forward(np.ones((5, 3), dtype=np.float32), training=True)
    m.backward(np.ones((5, 2), dtype=np.float32))
    assert order == ["fwd " + m.layers[0].name, m.layers[2].name, m.layers[1].name, m.layers[0].name]
    for h in [*handles, fwd]:
        h.remove()
    order.clear()
    m.forward(np.ones((5, 3), dtype=np.float32), training=True)
    m.backward(np.ones((5, 2), dtype=np.float32))
    assert order == []
    with pytest.raises(TypeError, match="argument 'hook' must be callable"):
        m.layers[0].register_backward_hook("not a function")


# -- buckets ------------------------------------------------------------------------------------
def _big_model() -> gpunn.Sequential:
    gpunn.manual_seed(0)
    m = gpunn.Sequential([Dense(64, input_shape=(32,)), ReLU(), Dense(64), ReLU(), Dense(8)])
    m.build((32,))
    return m


def test_buckets_are_slices_cut_from_the_end_at_parameter_boundaries() -> None:
    m = _big_model()
    opt = Adam(m)
    sync = GradientSync(opt, m, bucket_mb=4096 * 4 / 2**20, first_bucket_mb=1000 * 4 / 2**20)
    opt._ensure_packed()
    sync._cut_buckets()
    sizes = [p.data.size for p in opt.params]
    bounds = set(np.cumsum([0, *sizes]).tolist())
    b = sync.buckets
    assert b[0].stop == sum(sizes) and b[-1].start == 0
    assert all(x.start == y.stop for x, y in zip(b, b[1:]))  # contiguous, last parameters first
    assert all(x.start in bounds and x.stop in bounds for x in b)
    assert all(np.shares_memory(x.view, opt._flat_grad) for x in b)  # views: no copies, no allocation
    assert len(b) >= 2
    for bucket, limit in zip(b, [sync.first_bucket_bytes] + [sync.bucket_bytes] * len(b)):
        # each closes at the first parameter boundary past its limit (a small first one)
        earliest = min(bucket.params)
        assert (bucket.stop - bucket.start - sizes[earliest]) * 4 < limit


def test_buckets_start_during_backward_as_layers_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    m = _big_model()
    opt = Adam(m)
    sync = GradientSync(opt, m, bucket_mb=4096 * 4 / 2**20, first_bucket_mb=1000 * 4 / 2**20)
    opt._ensure_packed()
    sync._cut_buckets()
    sync._hook_layers()
    assert len(sync.buckets) == 2  # the last two Dense layers, then the first
    sync.ready = True
    events: list[str] = []
    real_start = sync._start
    monkeypatch.setattr(sync, "_start", lambda bucket: (events.append(f"start {bucket.start}"), real_start(bucket)))
    for i, layer in enumerate(m.layers):
        layer.register_backward_hook(lambda l, i=i: events.append(f"done {i}"))
    sync.begin_step()
    m.zero_grad()
    m.forward(np.ones((4, 32), dtype=np.float32), training=True)
    m.backward(np.ones((4, 8), dtype=np.float32))
    starts = [i for i, e in enumerate(events) if e.startswith("start")]
    assert len(starts) == len(sync.buckets)
    # the last layers' bucket went out as soon as their backward returned (the sync's hook runs
    # before this test's "done" hook of the same layer), while the ReLU and the first Dense were
    # still to run; the first Dense's bucket right after its own backward
    assert events.index("done 3") < starts[0] < events.index("done 2") < events.index("done 1")
    assert events.index("done 1") < starts[1] < events.index("done 0")
    sync.finish()  # alone: nothing to wait for; averaging by 1 keeps the gradient


def test_single_process_distributed_equals_plain() -> None:
    x, y = models.data("float64")
    runs = []
    for flag in (False, True):
        m = models.model("float64", "sync")
        m.compile(loss="mse", optimizer=models.optimizer("adam"), distributed=flag)
        m.fit(x, y, epochs=2, batch_size=16, verbose=0)
        runs.append(models.flat_params(m))
    assert np.array_equal(*runs)


def test_distributed_optimizer_alone_returns_the_optimizer_unchanged() -> None:
    m = _big_model()
    opt = SGD(m, lr=0.1)
    assert DistributedOptimizer(opt) is opt and opt.grad_sync is None
    with pytest.raises(TypeError, match="argument 'optimizer' must be a gpunn Optimizer"):
        DistributedOptimizer("adam")
    with pytest.raises(TypeError, match="argument 'model' must be a model"):
        DistributedOptimizer(opt, model=3)
    with pytest.raises(ValueError, match="argument 'bucket_mb'"):
        GradientSync(opt, bucket_mb=0)


def test_compile_and_batchnorm_refuse_non_bool_flags() -> None:
    m = _big_model()
    with pytest.raises(TypeError, match="argument 'distributed' must be True or False"):
        m.compile(loss="mse", distributed="yes")
    with pytest.raises(TypeError, match="argument 'sync' must be True or False"):
        BatchNorm(sync=1)
    with pytest.raises(TypeError, match="argument 'synchronized' must be True or False"):
        BatchNormalization(synchronized="no")
    assert BatchNormalization(synchronized=True).sync


def test_sync_batchnorm_config_round_trips(tmp_path: object) -> None:
    m = gpunn.Sequential([Dense(4, input_shape=(3,)), BatchNorm(sync=True), BatchNormalization(synchronized=True)])
    m.build((3,))
    m.compile(loss="mse")
    path = str(tmp_path / "m.safetensors")  # type: ignore[operator]
    m.save(path)
    loaded = gpunn.load_model(path)
    assert loaded.layers[1].sync and loaded.layers[2].sync


# -- the synchronized batch-norm ops ------------------------------------------------------------
class _Ops(NormOps):
    xp = np

    def relu_forward(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0)


def test_sync_ops_with_one_part_equal_the_plain_ops_and_gradcheck() -> None:
    ops = _Ops()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 2, 2))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    ident = lambda v: v  # noqa: E731 - a world of one
    y0, m0, s0 = ops.batchnorm_forward_train(x, gamma, beta, None, None, 0.1, 1e-5)
    y1, m1, s1 = ops.batchnorm_sync_forward_train(x, gamma, beta, None, None, 0.1, 1e-5, ident)
    np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(x.shape)
    dx, dg, db = ops.batchnorm_sync_backward(dy, x, gamma, m1, s1, ident)
    ref = ops.batchnorm_backward(dy, x, gamma, m0, s0)
    for a, b in zip((dx, dg, db), ref):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)

    def loss() -> float:
        y, _, _ = ops.batchnorm_sync_forward_train(x, gamma, beta, None, None, 0.1, 1e-5, ident)
        return float((y * dy).sum())
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dg, numerical_grad(loss, gamma), rtol=1e-5, atol=1e-7)


def test_sync_ops_over_two_parts_equal_the_whole_batch() -> None:
    """Two "ranks" as two threads, each with half the batch, their reduce a real exchange through
    a barrier: together they compute what the plain ops compute on the whole batch."""
    ops = _Ops()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 3, 2)) * 3 + 1
    dy = rng.standard_normal(x.shape)
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    barrier = threading.Barrier(2)
    slots: list[np.ndarray | None] = [None, None]
    results: list[tuple | None] = [None, None]

    def rank(r: int) -> None:
        def reduce(v: np.ndarray) -> np.ndarray:
            slots[r] = v.copy()
            barrier.wait()
            total = slots[0] + slots[1]  # type: ignore[operator]
            barrier.wait()
            v[...] = total
            return v
        part = slice(4 * r, 4 * r + 4)
        rm, rv = np.zeros(3), np.ones(3)
        y, mean, invstd = ops.batchnorm_sync_forward_train(x[part], gamma, beta, rm, rv, 0.1, 1e-5, reduce)
        results[r] = (y, rm, rv, *ops.batchnorm_sync_backward(dy[part], x[part], gamma, mean, invstd, reduce))

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    rm, rv = np.zeros(3), np.ones(3)
    y, mean, invstd = ops.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5)
    dx, dg, db = ops.batchnorm_backward(dy, x, gamma, mean, invstd)
    r0, r1 = results
    np.testing.assert_allclose(np.concatenate([r0[0], r1[0]]), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([r0[3], r1[3]]), dx, rtol=1e-10, atol=1e-12)
    for got in (r0, r1):  # the same running statistics on both, from the global batch (unbiased)
        np.testing.assert_allclose(got[1], rm, rtol=1e-12)
        np.testing.assert_allclose(got[2], rv, rtol=1e-12)
    np.testing.assert_allclose(r0[4] + r1[4], dg, rtol=1e-10)  # each rank's own share of dgamma
    np.testing.assert_allclose(r0[5] + r1[5], db, rtol=1e-10)
