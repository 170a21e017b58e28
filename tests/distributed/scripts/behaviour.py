"""2 ranks: collectives, sharding, dropout per rank, reduced metrics, rank-0 checkpoints, resume.
Rank 0 writes what it saw to argv[1] (JSON); argv[2] is a folder for checkpoints."""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import models  # noqa: E402

import gpunn  # noqa: E402
from gpunn import distributed  # noqa: E402
from gpunn.callbacks import EarlyStopping, ModelCheckpoint  # noqa: E402
from gpunn.data import DataLoader  # noqa: E402

distributed.init(timeout=60)
rank, size = distributed.rank(), distributed.world_size()
out: dict = {"rank": rank, "size": size}

# collectives
a = np.array([rank + 1.0, 10.0 * (rank + 1)])
out["sum"] = distributed.all_reduce(a.copy(), "sum").tolist()
out["mean"] = distributed.all_reduce(a.copy(), "mean").tolist()
out["max"] = distributed.all_reduce(a.copy(), "max").tolist()
b = np.full(3, float(rank))
out["broadcast"] = distributed.broadcast(b, src=1).tolist()
distributed.barrier()

# shards: every sample once per epoch (n divisible), padding otherwise
for n in (20, 23):
    for epoch in (0, 1):
        mine = distributed.shard_indices(n, rank, size, epoch=epoch, seed=5)
        rows = distributed.all_gather_host(mine)
        out[f"shards_{n}_{epoch}"] = rows.tolist()
loader = DataLoader(np.arange(23.0)[:, None], np.zeros(23), batch_size=4, shuffle=True, shard=(rank, size))
seen = np.concatenate([xb[:, 0] for xb, _ in loader]).astype(np.int64)
out["loader_shard"] = distributed.all_gather_host(seen).tolist()

# dropout: the masks differ per rank by design
m = models.model("float64", dropout=0.5)
x, y = models.data("float64")
m.compile(loss="mse", optimizer=models.optimizer("sgd"), distributed=True)
m.train_on_batch(x[:8], y[:8])  # installs the gradient sync: same weights, per-rank dropout seeds
mask = np.asarray(m.layers[2].forward(np.ones((8, 16)), training=True) != 0, dtype=np.int64).ravel()
out["dropout_masks_equal"] = bool(np.array_equal(*distributed.all_gather_host(mask)))

# convergence with dropout, reduced metrics, rank-0 checkpoints, early stopping on reduced logs
m = models.model("float64", dropout=0.2)
m.compile(loss="mse", optimizer=models.optimizer("adam"), metrics=["mae"], distributed=True)
ckpt = ModelCheckpoint(str(Path(sys.argv[2]) / f"ckpt-{{epoch:02d}}-r{rank}.safetensors"), monitor="loss")
stop = EarlyStopping(monitor="val_loss", patience=1000)
h = m.fit(x, y, epochs=30, batch_size=models.BATCH, verbose=0, validation_data=(x, y), callbacks=[ckpt, stop])
out["history"] = h.history
out["ckpt_saved"] = len(ckpt.saved)
ev = m.evaluate(x, y, batch_size=8, return_dict=True)
out["evaluate"] = ev
out["evaluate_all_ranks"] = distributed.all_gather_host([ev["loss"], ev["mae"]], dtype=np.float64).tolist()
# resume: every rank loads rank 0's checkpoint and continues in step
if rank == 0:
    m.save(str(Path(sys.argv[2]) / "final.safetensors"))
distributed.barrier()
r = gpunn.load_model(str(Path(sys.argv[2]) / "final.safetensors"))
out["resumed_equal"] = bool(np.array_equal(models.flat_params(r), models.flat_params(m)))
r.compile(loss="mse", optimizer=r.optimizer, distributed=True)
r.fit(x, y, epochs=1, batch_size=models.BATCH, verbose=0)
rows = distributed.all_gather_host(models.flat_params(r), dtype=np.float64)
out["resumed_ranks_agree"] = bool(np.array_equal(rows[0], rows[1]))
# freezing a layer rebuilds the optimizer: the new one averages too, the old one's hooks are gone
r.layers[0].trainable = False
r.fit(x, y, epochs=1, batch_size=models.BATCH, verbose=0)
rows = distributed.all_gather_host(models.flat_params(r), dtype=np.float64)
out["refrozen_ranks_agree"] = bool(np.array_equal(rows[0], rows[1]))
out["hooks_after_rebuild"] = len(r.layers[-1]._backward_hooks)

# a custom loop: DistributedOptimizer over a parameter list, DistributedSampler with set_epoch
m = models.model("float64")
m.build((models.FEATURES,))
opt = gpunn.optim.DistributedOptimizer(models.optimizer("sgd").bind(m.parameters()), model=m)
sampler = distributed.DistributedSampler(models.N, seed=models.SHUFFLE_SEED)
loss = gpunn.losses.MSE()
for epoch in range(models.EPOCHS):
    sampler.set_epoch(epoch)
    idx = np.fromiter(sampler, dtype=np.int64)
    for k in range(0, len(idx), models.BATCH):
        batch = idx[k:k + models.BATCH]
        opt.zero_grad()
        m.zero_grad()
        loss.forward(m.forward(x[batch], training=True), y[batch])
        m.backward(loss.backward(1.0))
        opt.step()
out["custom_loop_params"] = models.flat_params(m).tolist()
out["custom_loop_reduce_calls"] = opt.grad_sync.reduce_calls
if rank == 0:
    Path(sys.argv[1]).write_text(json.dumps(out))
