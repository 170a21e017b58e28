"""2 ranks and one fault, by argv[1]: "raise" (rank 1 raises in its 3rd step), "kill" (rank 1
kills itself), "hang" (rank 1 stops calling collectives), "mismatch" (rank 1 builds another model)."""
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import models  # noqa: E402

import gpunn  # noqa: E402
from gpunn import distributed  # noqa: E402
from gpunn.callbacks import Callback  # noqa: E402

mode = sys.argv[1]
distributed.init(timeout=120)  # start-up on a loaded machine may be slow: lined up first, then
distributed.barrier()
distributed.set_timeout(float(sys.argv[2]))  # the deadline under test
rank = distributed.rank()


class Fault(Callback):
    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if rank == 1 and batch == 2:
            if mode == "raise":
                raise RuntimeError("rank 1 fails on purpose")
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "hang":
                time.sleep(600)


m = models.model("float64")
if mode == "mismatch" and rank == 1:
    m = gpunn.Sequential([gpunn.layers.Dense(17, input_shape=(models.FEATURES,)), gpunn.layers.Dense(2)])
x, y = models.data("float64")
m.compile(loss="mse", optimizer=models.optimizer("sgd"), distributed=True)
m.fit(x, y, epochs=3, batch_size=models.BATCH, verbose=0, callbacks=[Fault()])
print(f"rank {rank}: finished", flush=True)
