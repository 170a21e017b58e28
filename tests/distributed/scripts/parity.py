"""2-rank data-parallel training of every case in tests/distributed/models.py; rank 0 saves the
final parameters to argv[1] (.npz), one entry per case."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import models  # noqa: E402

from gpunn import distributed  # noqa: E402

distributed.init(timeout=60)
results = {}
for opt, dtype, bn in models.CASES:
    m = models.model(dtype, bn)
    x, y = models.data(dtype)
    m.compile(loss="mse", optimizer=models.optimizer(opt), distributed=True)
    m.fit(x, y, epochs=models.EPOCHS, batch_size=models.BATCH, verbose=0)
    results[models.case_name(opt, dtype, bn)] = models.flat_params(m)
    # every rank holds the same parameters after every step
    rows = distributed.all_gather_host(results[models.case_name(opt, dtype, bn)], dtype=np.float64)
    assert np.array_equal(rows[0], rows[1]), f"ranks disagree after training {opt}-{dtype}-{bn}"
if distributed.rank() == 0:
    np.savez(sys.argv[1], **results)
