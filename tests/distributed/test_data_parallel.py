"""2-rank data-parallel training under a real `mpiexec -n 2` equals single-process training on the
same global batch (scripts/parity.py), and behaves as documented (scripts/behaviour.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gpunn.losses import MSE
from gpunn.train.data_adapter import epoch_order
from tests.distributed import launch, models

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("parity") / "params.npz"
    done = launch.run("parity.py", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    with np.load(out) as f:
        return dict(f)


def _single_process(opt: str, dtype: str, bn: str) -> np.ndarray:
    """The same K steps in one process on the global batch (2 x BATCH): plain BN for "sync"."""
    m = models.model(dtype, "none" if bn == "none" else "sync")
    x, y = models.data(dtype)
    m.compile(loss="mse", optimizer=models.optimizer(opt))
    m.fit(x, y, epochs=models.EPOCHS, batch_size=2 * models.BATCH, verbose=0)
    return models.flat_params(m)


def _halves_normalized_apart(opt: str, dtype: str) -> np.ndarray:
    """One process, each global batch split as the two ranks split it, each half through the
    model on its own (its own BN statistics), gradients summed and halved: local BN's reference."""
    m = models.model(dtype, "local")
    x, y = models.data(dtype)
    o = models.optimizer(opt).bind(m)
    loss = MSE()
    g = 2 * models.BATCH
    for epoch in range(models.EPOCHS):
        order = epoch_order(models.SHUFFLE_SEED, models.N, epoch)
        for k in range(models.N // g):
            batch = order[k * g:(k + 1) * g]
            m.zero_grad()
            for r in (0, 1):
                idx = batch[r::2]  # rank r's part of this global batch (see gpunn.distributed.sharding)
                loss.forward(m.forward(x[idx], training=True), y[idx])
                m.backward(loss.backward(1.0))
            o.flat_grad[...] *= 0.5
            o.step()
    return models.flat_params(m)


# float64: the two runs differ only in summation order; float32 the same, at its unit roundoff
# (6e-8) grown over K = 8 steps of a 16-wide network: 1e-5 relative
TOL = {"float64": 1e-10, "float32": 1e-5}


@pytest.mark.parametrize("opt,dtype,bn", models.CASES, ids=[models.case_name(*c) for c in models.CASES])
def test_two_ranks_equal_one_process(parity: dict[str, np.ndarray], opt: str, dtype: str, bn: str) -> None:
    got = parity[models.case_name(opt, dtype, bn)]
    want = _halves_normalized_apart(opt, dtype) if bn == "local" else _single_process(opt, dtype, bn)
    err = np.max(np.abs(got - want)) / np.max(np.abs(want))
    assert err <= TOL[dtype], f"{opt}-{dtype}-{bn}: relative difference {err:.2e} > {TOL[dtype]:g}"


def test_local_and_synced_bn_differ(parity: dict[str, np.ndarray]) -> None:
    # the two BN modes are different computations: if they agreed, one test above would be vacuous
    a, b = parity["sgd-float64-sync"], parity["sgd-float64-local"]
    assert np.max(np.abs(a - b)) > 1e-6


@pytest.fixture(scope="module")
def behaviour(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, object]:
    folder = tmp_path_factory.mktemp("behaviour")
    out = folder / "out.json"
    done = launch.run("behaviour.py", str(out), str(folder))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text()), folder


def test_collectives(behaviour: tuple[dict, object]) -> None:
    d, _ = behaviour
    assert d["size"] == 2
    assert d["sum"] == [3.0, 30.0] and d["mean"] == [1.5, 15.0] and d["max"] == [2.0, 20.0]
    assert d["broadcast"] == [1.0, 1.0, 1.0]  # rank 1's values


@pytest.mark.parametrize("epoch", [0, 1])
def test_shards_cover_every_sample_once(behaviour: tuple[dict, object], epoch: int) -> None:
    d, _ = behaviour
    rows = np.array(d[f"shards_20_{epoch}"])
    assert rows.shape == (2, 10) and sorted(rows.ravel().tolist()) == list(range(20))
    padded = np.array(d[f"shards_23_{epoch}"])  # 23 samples: 12 each, one seen twice (PyTorch's padding)
    assert padded.shape == (2, 12)
    values, counts = np.unique(padded, return_counts=True)
    assert values.tolist() == list(range(23)) and counts.sum() == 24 and counts.max() == 2
    assert d["shards_20_0"] != d["shards_20_1"]  # reshuffled per epoch


def test_dataloader_shard(behaviour: tuple[dict, object]) -> None:
    d, _ = behaviour
    rows = np.array(d["loader_shard"])
    assert rows.shape == (2, 12) and set(rows.ravel().tolist()) == set(range(23))


def test_dropout_masks_differ_and_training_converges(behaviour: tuple[dict, object]) -> None:
    d, _ = behaviour
    assert d["dropout_masks_equal"] is False
    loss = d["history"]["loss"]
    # a single process on the same data and model reaches about 0.1 in 30 epochs (see below)
    assert loss[-1] < 0.35 * loss[0], loss


def test_dropout_single_process_converges_alike(behaviour: tuple[dict, object]) -> None:
    d, _ = behaviour
    m = models.model("float64", dropout=0.2)
    x, y = models.data("float64")
    m.compile(loss="mse", optimizer=models.optimizer("adam"), metrics=["mae"])
    h = m.fit(x, y, epochs=30, batch_size=2 * models.BATCH, verbose=0)
    one, two = h.history["loss"][-1], d["history"]["loss"][-1]
    assert 0.5 < two / one < 2.0, (one, two)


def test_metrics_reduced_and_the_same_on_every_rank(behaviour: tuple[dict, object]) -> None:
    d, _ = behaviour
    rows = d["evaluate_all_ranks"]
    assert rows[0] == rows[1]
    assert set(d["history"]) == {"loss", "mae", "val_loss", "val_mae"}
    assert len(d["history"]["val_loss"]) == 30  # EarlyStopping (patience 1000) decided alike on both ranks


def test_checkpoints_on_rank_zero_only_and_resume(behaviour: tuple[dict, object]) -> None:
    d, folder = behaviour
    names = sorted(p.name for p in folder.iterdir() if p.name.startswith("ckpt-"))  # type: ignore[attr-defined]
    assert d["ckpt_saved"] == 30 and len(names) == 30 and all(n.endswith("-r0.safetensors") for n in names)
    assert d["resumed_equal"] and d["resumed_ranks_agree"]
    assert d["refrozen_ranks_agree"] and d["hooks_after_rebuild"] == 1  # one sync's hook, not two


def test_custom_loop_with_distributed_optimizer_and_sampler(behaviour: tuple[dict, object]) -> None:
    d, _ = behaviour
    got = np.array(d["custom_loop_params"])
    want = _single_process("sgd", "float64", "none")
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= TOL["float64"]
    steps = models.EPOCHS * models.N // (2 * models.BATCH)
    assert d["custom_loop_reduce_calls"] == steps  # one bucket (a small model) per step
