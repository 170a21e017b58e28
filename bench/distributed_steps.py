"""One data-parallel timing job, run on N ranks by bench_distributed.py (or by hand):

    .venv/bin/mpiexec -n 2 .venv/bin/python bench/distributed_steps.py out.json [model] [batch] [steps] [bucket_mb]

Each rank trains the bench's LeNet-5 (or the CIFAR-style CNN) with Adam on its own batch of
`batch` samples; rank 0 writes steps per second, samples per second over all ranks, and how much of
the gradient all-reduce backward hid: what step() waits for with the buckets started during
backward, against the same with every bucket started in step() (hidden = 1 - overlapped / not).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import MODELS  # noqa: E402

from gpunn import distributed  # noqa: E402
from gpunn.losses import SoftmaxCrossEntropy  # noqa: E402
from gpunn.optim import Adam, DistributedOptimizer  # noqa: E402
from gpunn.random import manual_seed  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    name = sys.argv[2] if len(sys.argv) > 2 else "lenet5"
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    bucket_mb = float(sys.argv[5]) if len(sys.argv) > 5 else 25.0
    distributed.init(timeout=120)
    manual_seed(0)
    build, shape = MODELS[name]
    model = build()
    rng = np.random.default_rng(distributed.rank())
    x = rng.standard_normal((batch, *shape), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    model.forward(x[:2], training=False)  # build
    loss = SoftmaxCrossEntropy()
    # the first bucket a tenth of the others, as with the defaults (1 MB and 25 MB)
    opt = DistributedOptimizer(Adam(model, lr=1e-3), bucket_mb=bucket_mb, first_bucket_mb=min(1.0, bucket_mb / 10))

    aligned = False  # the timing of the hidden share: all ranks enter step() together

    def step() -> None:
        if aligned:
            distributed.barrier()  # no request is in flight here: the last step() finished them all
        opt.zero_grad()
        model.zero_grad()
        loss.forward(model.forward(x, training=True), y)
        model.backward(loss.backward())
        opt.step()

    for _ in range(3):
        step()
    sync = opt.grad_sync
    distributed.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    distributed.barrier()
    elapsed = time.perf_counter() - t0
    result = {"ranks": distributed.world_size(), "model": name, "batch_per_rank": batch, "steps": steps,
              "bucket_mb": bucket_mb, "step_s": elapsed / steps, "steps_per_s": steps / elapsed,
              "samples_per_s": steps * batch * distributed.world_size() / elapsed,
              "grad_bytes": int(opt.flat_grad.nbytes)}
    if sync is not None:
        # what step() waits for, with the buckets started by the backward hooks (overlapped) and
        # with every bucket started in step() (not overlapped), alternated. A barrier at the start
        # of each step lines the ranks up, so the wait is mostly reduction time backward did not
        # hide rather than one rank waiting for the other to finish its compute
        aligned = True
        waits = {True: 0.0, False: 0.0}
        for _ in range(3):
            for early in (True, False):
                sync._early = early
                sync.wait_seconds = 0.0
                for _ in range(steps):
                    step()
                waits[early] += sync.wait_seconds / (3 * steps)
        sync._early = True
        reps = 20
        distributed.barrier()
        t1 = time.perf_counter()
        for _ in range(reps):
            for b in sync.buckets:
                distributed.all_reduce(b.view)
        alone = (time.perf_counter() - t1) / reps
        aligned = False
        hidden = 1.0 - waits[True] / waits[False] if waits[False] > 0 else 0.0
        result.update({"buckets": len(sync.buckets), "allreduce_alone_s": alone,
                       "waited_overlapped_s": waits[True], "waited_not_overlapped_s": waits[False],
                       "hidden_share": min(1.0, max(0.0, hidden))})
    if distributed.rank() == 0:
        out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
