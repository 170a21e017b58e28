"""Each callback's behaviour on tiny runs, with scripted monitored values where timing matters."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest

import gpunn
from gpunn.callbacks import (Callback, CSVLogger, EarlyStopping, LambdaCallback, LearningRateScheduler,
                             ModelCheckpoint, ReduceLROnPlateau, TerminateOnNaN)
from gpunn import Sequential
from gpunn.layers import Dense
from gpunn.optim.schedules import StepDecay


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = (np.where(y[:, None] == 1, 1.0, -1.0) + rng.normal(size=(n, 3))).astype(np.float32)
    return x, y


def model(lr=0.05):
    m = Sequential([Dense(8, activation="relu", input_shape=(3,)), Dense(2)])
    m.compile(loss="softmax_cross_entropy", optimizer="sgd", metrics=["accuracy"], lr=lr)
    return m


class Script(Callback):
    """Puts scripted values under `key` into the epoch logs and snapshots the weights."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values, self.snapshots = key, list(values), []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.snapshots.append(self.model.state_dict())


def same_state(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_early_stopping_stops_at_the_right_epoch_and_restores_best():
    x, y = data()
    m = model()
    script = Script("score", [1.0, 0.5, 0.6, 0.55, 0.7, 0.1, 0.1])
    stopper = EarlyStopping(monitor="score", patience=3, restore_best_weights=True)
    h = m.fit(x, y, epochs=7, verbose=0, callbacks=[script, stopper])
    # best at epoch 1; epochs 2, 3, 4 do not improve -> stop after epoch 4 (0-based)
    assert stopper.stopped_epoch == 4 and stopper.best_epoch == 1
    assert len(h.history["loss"]) == 5 and m.epoch == 5
    assert same_state(m.state_dict(), script.snapshots[1])
    assert not same_state(m.state_dict(), script.snapshots[4])


def test_early_stopping_min_delta_mode_and_no_restore():
    x, y = data()
    m = model()
    script = Script("val_accuracy", [0.5, 0.52, 0.53, 0.9, 0.95])
    stopper = EarlyStopping(monitor="val_accuracy", patience=2, min_delta=0.05)  # mode auto -> max
    m.fit(x, y, epochs=5, verbose=0, callbacks=[script, stopper])
    assert stopper.mode == "max" and stopper.stopped_epoch == 2
    assert same_state(m.state_dict(), script.snapshots[2])  # not restored


def test_early_stopping_on_real_val_loss():
    x, y = data()
    m = model(lr=0.2)
    stopper = EarlyStopping(patience=2, min_delta=1e-3, restore_best_weights=True)
    h = m.fit(x, y, epochs=30, validation_data=data(24, 1), verbose=0, callbacks=[stopper])
    val = h.history["val_loss"]
    assert len(val) < 30  # it converges and stops
    assert stopper.best_epoch == len(val) - 3  # two epochs without a 1e-3 improvement
    # the best epoch is the last one that improved by more than min_delta
    assert stopper.best == val[stopper.best_epoch]
    assert all(v >= stopper.best - 1e-3 for v in val[stopper.best_epoch + 1:])
    assert m.evaluate(*data(24, 1))[0] == pytest.approx(val[stopper.best_epoch], rel=1e-5)


def test_model_checkpoint_writes_only_on_improvement(tmp_path):
    x, y = data()
    m = model()
    script = Script("val_loss", [3.0, 2.0, 2.5, 1.0, 1.5])
    pattern = str(tmp_path / "ck-{epoch:02d}.safetensors")
    ck = ModelCheckpoint(pattern, monitor="val_loss", save_best_only=True)
    m.fit(x, y, epochs=5, verbose=0, callbacks=[script, ck])
    assert sorted(os.listdir(tmp_path)) == ["ck-01.safetensors", "ck-02.safetensors", "ck-04.safetensors"]
    best = gpunn.load_model(tmp_path / "ck-04.safetensors")
    assert same_state(best.state_dict(), script.snapshots[3])
    assert best.epoch == 4


def test_model_checkpoint_fixed_path_keeps_best_and_weights_only(tmp_path):
    x, y = data()
    m = model()
    script = Script("val_loss", [3.0, 2.0, 2.5, 1.0, 1.5])
    path = tmp_path / "best.safetensors"
    ck = ModelCheckpoint(path, save_best_only=True, save_weights_only=True)
    every = ModelCheckpoint(tmp_path / "e{epoch}.safetensors")
    m.fit(x, y, epochs=5, verbose=0, callbacks=[script, ck, every])
    assert ck.saved == [str(path)] * 3
    assert len(every.saved) == 5
    fresh = Sequential([Dense(8, activation="relu", input_shape=(3,)), Dense(2)])
    fresh.load_weights(path)
    assert same_state(fresh.state_dict(), script.snapshots[3])
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temp files left


def test_terminate_on_nan_stops_and_last_good_checkpoint_survives(tmp_path):
    x, y = data()
    m = model()
    path = tmp_path / "last.safetensors"
    snaps = []

    def poison(epoch, logs=None):
        if epoch == 2:  # make the loss NaN on purpose
            m.layers[1].params["weight"].data[0, 0] = np.nan

    term = TerminateOnNaN()
    with pytest.warns(UserWarning, match="epoch 3 logged NaN"):
        h = m.fit(x, y, epochs=6, verbose=0, callbacks=[
            LambdaCallback(on_epoch_begin=poison, on_epoch_end=lambda e, logs: snaps.append(m.state_dict())),
            term, ModelCheckpoint(path, monitor="loss")])
    assert term.stopped_batch == (2, 0)
    assert len(h.history["loss"]) == 3 and math.isnan(h.history["loss"][-1])
    assert all(math.isfinite(v) for v in h.history["loss"][:2])
    good = gpunn.load_model(path)
    assert good.epoch == 2
    assert same_state(good.state_dict(), snaps[1])
    assert all(np.isfinite(v).all() for v in good.state_dict().values())


def test_learning_rate_scheduler_forms():
    x, y = data(16)
    for schedule, expected in [
        (lambda epoch: 0.1 / (epoch + 1), [0.1, 0.05, 0.1 / 3]),
        (lambda epoch, lr: lr * 0.5, [0.025, 0.0125, 0.00625]),
    ]:
        m = model(lr=0.05)
        h = m.fit(x, y, epochs=3, verbose=0, callbacks=[LearningRateScheduler(schedule)])
        assert h.history["lr"] == pytest.approx(expected)
    m = model(lr=0.08)
    sched = StepDecay(m.optimizer, step_size=2, gamma=0.5)
    h = m.fit(x, y, epochs=5, verbose=0, callbacks=[LearningRateScheduler(sched)])
    assert h.history["lr"] == pytest.approx([0.08, 0.08, 0.04, 0.04, 0.02])


def test_learning_rate_scheduler_rejects_bad_lr():
    x, y = data(16)
    with pytest.raises(ValueError, match="returned"):
        model().fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e: float("nan"))])
    with pytest.raises(TypeError, match="schedule"):
        LearningRateScheduler(3)


def test_reduce_lr_on_plateau():
    x, y = data(16)
    m = model(lr=0.1)
    script = Script("val_loss", [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    h = m.fit(x, y, epochs=8, verbose=0, callbacks=[script, ReduceLROnPlateau(factor=0.5, patience=1)])
    # bad epochs 1, 2 -> more than patience at epoch 2: halve; epoch 4 improves; 5, 6 bad -> halve at 6
    assert h.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025])


def test_csv_logger(tmp_path):
    x, y = data(16)
    m = model()
    path = tmp_path / "log.csv"
    h = m.fit(x, y, epochs=3, verbose=0, validation_data=(x, y), callbacks=[CSVLogger(path)])
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2]
    assert [float(r[2]) for r in rows[1:]] == pytest.approx(h.history["loss"])
    m.fit(x, y, epochs=5, initial_epoch=3, verbose=0, validation_data=(x, y), callbacks=[CSVLogger(path, append=True)])
    rows = list(csv.reader(path.read_text().splitlines()))
    assert len(rows) == 6 and rows[0][0] == "epoch" and [int(r[0]) for r in rows[1:]] == [0, 1, 2, 3, 4]


def open_paths() -> set[str]:
    fds = "/proc/self/fd"
    if not os.path.isdir(fds):
        pytest.skip("needs /proc to list open files")
    out = set()
    for fd in os.listdir(fds):
        try:
            out.add(os.readlink(os.path.join(fds, fd)))
        except OSError:
            pass
    return out


def test_csv_logger_holds_no_file_open_when_fit_raises(tmp_path):
    x, y = data(16)
    path = tmp_path / "log.csv"
    logger = CSVLogger(path)

    def fail(epoch, logs):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model().fit(x, y, epochs=3, verbose=0, callbacks=[logger, LambdaCallback(on_epoch_end=fail)])
    assert str(path) not in open_paths()  # on_train_end never ran: a held handle would still be open
    rows = list(csv.reader(path.read_text().splitlines()))
    assert [r[0] for r in rows] == ["epoch", "0", "1"]  # every finished epoch is on disk


def test_missing_monitor_warns():
    x, y = data(16)
    with pytest.warns(UserWarning, match="not in the logs"):
        model().fit(x, y, epochs=2, verbose=0, callbacks=[EarlyStopping(monitor="val_loss")])


def test_history_plot(tmp_path):
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    x, y = data(16)
    h = model().fit(x, y, epochs=3, verbose=0, validation_data=(x, y))
    out = h.plot(tmp_path / "h.png")
    assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="metrics"):
        h.plot(tmp_path / "x.png", metrics=["nope"])
    with pytest.raises(ValueError, match="empty"):
        gpunn.callbacks.History().plot(tmp_path / "y.png")


@pytest.mark.parametrize("make, match", [
    (lambda: EarlyStopping(patience=-1), "patience"),
    (lambda: EarlyStopping(mode="up"), "mode"),
    (lambda: EarlyStopping(min_delta=float("nan")), "min_delta"),
    (lambda: EarlyStopping(monitor=""), "monitor"),
    (lambda: ModelCheckpoint(""), "filepath"),
    (lambda: ReduceLROnPlateau(factor=1.5), "factor"),
    (lambda: ReduceLROnPlateau(cooldown=-1), "cooldown"),
    (lambda: CSVLogger("x.csv", separator=",,"), "separator"),
    (lambda: LambdaCallback(on_epoch_ned=print), "on_epoch_ned"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_checkpoint_path_with_unknown_field(tmp_path):
    x, y = data(16)
    with pytest.raises(ValueError, match="format field"):
        model().fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "{nope}.st"))])
