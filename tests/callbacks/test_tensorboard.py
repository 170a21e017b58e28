"""TensorBoard: the event files read back (framing and CRCs checked) hold the values fit logged."""
from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("tensorboardX")

import gpunn  # noqa: E402
from gpunn import Sequential  # noqa: E402
from gpunn.backend import to_host  # noqa: E402
from gpunn.callbacks import LambdaCallback, LearningRateScheduler, TensorBoard, TrainingMonitor  # noqa: E402
from gpunn.layers import Dense, ReLU  # noqa: E402
from tests.callbacks.tensorboard_events import read_folder  # noqa: E402

# event files hold float32 scalars
F32 = {"rel": 2e-7, "abs": 1e-30}


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def small_model(lr=0.05):
    model = Sequential([Dense(8, input_shape=(5,)), ReLU(), Dense(2)])
    model.compile(loss="softmax_cross_entropy", optimizer="sgd", lr=lr, metrics=["accuracy"])
    return model


def values(series):
    return [v for _, v in series]


def steps(series):
    return [s for s, _ in series]


def test_epoch_scalars_equal_history_and_lr_equals_the_schedule(tmp_path):
    x, y = data()
    model = small_model(lr=0.1)
    tb = TensorBoard(tmp_path)
    history = model.fit(x, y, epochs=4, batch_size=16, validation_data=(x[:20], y[:20]), verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch: 0.1 * 0.5 ** epoch), tb])
    train = read_folder(tmp_path / "train")["scalars"]
    val = read_folder(tmp_path / "validation")["scalars"]
    for name in ("loss", "accuracy"):
        assert steps(train[f"epoch_{name}"]) == [0, 1, 2, 3]
        assert values(train[f"epoch_{name}"]) == pytest.approx(history.history[name], **F32)
        assert steps(val[f"epoch_{name}"]) == [0, 1, 2, 3]
        assert values(val[f"epoch_{name}"]) == pytest.approx(history.history[f"val_{name}"], **F32)
    assert values(train["epoch_learning_rate"]) == pytest.approx([0.1, 0.05, 0.025, 0.0125], **F32)
    assert values(train["epoch_learning_rate"]) == pytest.approx(history.history["lr"], **F32)
    # the layout: validation values only in validation/, no "val_" tags, no per-batch values by default
    assert not any(tag.startswith(("val_", "batch_", "epoch_val")) for tag in [*train, *val])
    assert "epoch_learning_rate" not in val and "epoch_lr" not in train
    assert tb._writers == {}  # closed at on_train_end


def test_without_validation_data_there_is_no_validation_folder(tmp_path):
    x, y = data()
    small_model().fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[TensorBoard(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]


@pytest.mark.parametrize("update_freq, every", [(2, 2), ("batch", 1), (3, 3)])
def test_batch_scalars_every_n_batches(tmp_path, update_freq, every):
    x, y = data()
    seen = []
    record = LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(dict(logs)))
    small_model().fit(x, y, epochs=2, batch_size=8, verbose=0,
                      callbacks=[record, TensorBoard(tmp_path, update_freq=update_freq)])
    train = read_folder(tmp_path / "train")["scalars"]
    assert len(seen) == 12  # 6 batches x 2 epochs; the step counts across epochs
    expected_steps = list(range(every, 13, every))
    for name in ("loss", "accuracy"):
        assert steps(train[f"batch_{name}"]) == expected_steps
        assert values(train[f"batch_{name}"]) == pytest.approx([seen[s - 1][name] for s in expected_steps], **F32)
    assert "batch_size" not in train  # the batch's sample count is not a curve


def test_histograms_every_k_epochs_hold_the_parameters(tmp_path, backend):
    x, y = data()
    model = small_model()
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[TensorBoard(tmp_path, histogram_freq=2)])
    hists = read_folder(tmp_path / "train")["histograms"]
    named = model.named_parameters()
    assert sorted(hists) == sorted([f"weights/{n}" for n, _ in named] + [f"gradients/{n}" for n, _ in named])
    for name, param in named:
        for kind, array in (("weights", param.data), ("gradients", param.grad)):
            series = hists[f"{kind}/{name}"]
            assert steps(series) == [1, 3]
            last = series[-1][1]  # the last epoch's: the final weights, the last batch's gradients
            host = to_host(array).astype(np.float64)
            assert last.num == host.size
            assert last.min == pytest.approx(host.min()) and last.max == pytest.approx(host.max())
            assert last.sum == pytest.approx(host.sum(), rel=1e-6, abs=1e-9)
            assert sum(last.bucket) == host.size
    # the first weights histogram is of epoch 1's weights, which later epochs changed
    first, last = hists["weights/0.weight"][0][1], hists["weights/0.weight"][1][1]
    assert first.sum != last.sum


def test_histograms_of_a_functional_model(tmp_path):
    x, y = data()
    inp = gpunn.Input(shape=(5,))
    model = gpunn.Model(inputs=inp, outputs=Dense(2, name="head")(Dense(4, activation="relu", name="body")(inp)))
    model.compile(loss="softmax_cross_entropy", optimizer="sgd", lr=0.05)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[TensorBoard(tmp_path, histogram_freq=1)])
    hists = read_folder(tmp_path / "train")["histograms"]
    for name, param in model.named_parameters():
        assert hists[f"weights/{name}"][0][1].num == param.data.size


def test_non_finite_values_are_left_out_of_histograms(tmp_path):
    x, y = data()
    model = small_model()
    poison = LambdaCallback(on_epoch_end=lambda epoch, logs: model.layers[0].params["weight"].data.__setitem__(
        (0, 0), np.nan))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[poison, TensorBoard(tmp_path, histogram_freq=1)])
    weight = model.layers[0].params["weight"].data
    hist = read_folder(tmp_path / "train")["histograms"]["weights/0.weight"][0][1]
    assert hist.num == weight.size - 1 and hist.sum == pytest.approx(float(np.nansum(weight.astype(np.float64))))


def test_composed_diagnostics_are_the_monitors_records(tmp_path):
    x, y = data()
    tb = TensorBoard(tmp_path, write_diagnostics=True)
    small_model().fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[tb])
    records = tb.monitor.records
    assert len(records) == 3  # the composed TrainingMonitor records once per epoch
    train = read_folder(tmp_path / "train")["scalars"]
    assert steps(train["diagnostics/grad_norm/0_Dense"]) == [r["step"] for r in records] == [3, 6, 9]
    assert values(train["diagnostics/grad_norm/0_Dense"]) == pytest.approx(
        [r["grad_norms"]["0:Dense"] for r in records], **F32)
    for i, pct in enumerate(("15", "50", "85")):
        assert values(train[f"diagnostics/activation_p{pct}/2_Dense"]) == pytest.approx(
            [r["percentiles"]["2:Dense"][i] for r in records], **F32)
    assert values(train["diagnostics/dead_relu/1_ReLU"]) == pytest.approx(
        [r["dead_relu"]["1:ReLU"] for r in records], **F32)
    assert "diagnostics/dead_relu/0_Dense" not in train  # only ReLU outputs have a dead share


def test_a_given_monitor_is_read_wherever_it_sits_in_the_callbacks(tmp_path):
    x, y = data()
    monitor = TrainingMonitor(every_n_steps=4, percentiles=(50,))
    # the monitor after the TensorBoard: its records are written at the next hook or at the end
    small_model().fit(x, y, epochs=2, batch_size=8, verbose=0,
                      callbacks=[TensorBoard(tmp_path, write_diagnostics=monitor), monitor])
    train = read_folder(tmp_path / "train")["scalars"]
    assert [r["step"] for r in monitor.records] == [4, 8, 12]
    assert steps(train["diagnostics/grad_norm/2_Dense"]) == [4, 8, 12]
    assert values(train["diagnostics/activation_p50/0_Dense"]) == pytest.approx(
        [r["percentiles"]["0:Dense"][0] for r in monitor.records], **F32)
    assert "diagnostics/activation_p15/0_Dense" not in train


def test_a_given_monitor_must_be_in_the_callbacks(tmp_path):
    x, y = data()
    with pytest.raises(ValueError, match=r"TensorBoard: the TrainingMonitor given as 'write_diagnostics' is not "
                                         r"among fit's callbacks"):
        small_model().fit(x, y, epochs=1, verbose=0,
                          callbacks=[TensorBoard(tmp_path, write_diagnostics=TrainingMonitor())])


def test_a_second_fit_continues_the_step_and_writes_a_new_file(tmp_path):
    x, y = data()
    model = small_model()
    tb = TensorBoard(tmp_path, update_freq=6)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[tb])
    model.fit(x, y, epochs=2, initial_epoch=1, batch_size=8, verbose=0, callbacks=[tb])
    assert len(list((tmp_path / "train").glob("events.out.tfevents.*"))) == 2
    train = read_folder(tmp_path / "train")["scalars"]
    assert steps(train["epoch_loss"]) == [0, 1]
    assert steps(train["batch_loss"]) == [6, 12]


def test_close_after_a_failed_fit_writes_the_epochs_done(tmp_path):
    x, y = data()
    model = small_model()

    def fail(epoch, logs):
        if epoch == 1:
            raise RuntimeError("stop here")

    with TensorBoard(tmp_path) as tb:
        with pytest.raises(RuntimeError, match="stop here"):
            model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[tb, LambdaCallback(on_epoch_end=fail)])
        assert tb._writers  # fit never reached on_train_end: the writers are still open
    assert tb._writers == {}
    assert steps(read_folder(tmp_path / "train")["scalars"]["epoch_loss"]) == [0, 1]
    tb.close()  # idempotent


def test_creates_a_missing_nested_log_dir(tmp_path):
    x, y = data()
    log_dir = tmp_path / "runs" / "a"
    small_model().fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[TensorBoard(str(log_dir))])
    assert "epoch_loss" in read_folder(log_dir / "train")["scalars"]


# -- bad inputs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("log_dir", [3, None, b"runs", ["runs"]])
def test_bad_log_dir_type(log_dir):
    with pytest.raises(TypeError, match=r"TensorBoard: argument 'log_dir' must be a folder path"):
        TensorBoard(log_dir)


def test_empty_log_dir_or_an_existing_file(tmp_path):
    with pytest.raises(ValueError, match=r"TensorBoard: argument 'log_dir' must be a non-empty folder path"):
        TensorBoard("  ")
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"TensorBoard: argument 'log_dir' must be a folder, but .* existing file"):
        TensorBoard(path)


@pytest.mark.parametrize("freq", [-1, 1.5, True, "1", None, np.int64(2)])
def test_bad_histogram_freq(tmp_path, freq):
    with pytest.raises(ValueError, match=r"TensorBoard: argument 'histogram_freq' must be an int >= 0"):
        TensorBoard(tmp_path, histogram_freq=freq)


@pytest.mark.parametrize("freq", [0, -2, 2.0, True, "step", "Epoch", None])
def test_bad_update_freq(tmp_path, freq):
    with pytest.raises(ValueError, match=r"TensorBoard: argument 'update_freq' must be 'epoch', 'batch' or a "
                                         r"positive int"):
        TensorBoard(tmp_path, update_freq=freq)


@pytest.mark.parametrize("value", ["yes", 1, None, TrainingMonitor])
def test_bad_write_diagnostics(tmp_path, value):
    with pytest.raises(TypeError, match=r"TensorBoard: argument 'write_diagnostics' must be a bool or a gpunn "
                                        r"TrainingMonitor"):
        TensorBoard(tmp_path, write_diagnostics=value)


def test_missing_tensorboardx_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # what an absent package looks like to import
    with pytest.raises(ImportError, match=r"pip install 'gpunn\[tensorboard\]'"):
        TensorBoard(tmp_path)
