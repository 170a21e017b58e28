"""compile(cuda_graph=True) and CapturedStep: N replays of a captured step leave the weights, the
optimizer's state, BatchNorm's statistics and the logged metrics exactly where N eager steps do.

On the emulated backend the step really is recorded once and replayed (gpunn/emu/capture.py: no
Python runs in a replay, scalars are baked as a CUDA graph bakes them), so a value read on the host
at capture time (an lr, a step count) would make a replay differ from the eager step: these tests
compare bit for bit. A learning-rate schedule changes the lr at every batch to prove it.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.callbacks import Callback
from gpunn.errors import GraphCaptureError
from gpunn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, ReLU
from gpunn.losses import SoftmaxCrossEntropy
from gpunn.models import lenet5, resnet_small
from gpunn.optim import OPTIMIZERS, SGD, Adam, schedules
from gpunn.train import CapturedStep


def cifar_cnn(size: int = 12) -> Sequential:
    """The CIFAR-style CNN in small: conv-BN-ReLU-pool twice, dropout, a classifier."""
    return Sequential([Conv2D(6, 3, padding=1, use_bias=False, input_shape=(3, size, size)), BatchNorm(), ReLU(),
                       MaxPool2D(2), Conv2D(8, 3, padding=1), BatchNorm(), ReLU(), MaxPool2D(2), Flatten(),
                       Dropout(0.3), Dense(5)])


def mlp() -> Sequential:
    return Sequential([Dense(12, activation="relu", input_shape=(6,)), Dropout(0.2), Dense(4)])


class StepSchedule(Callback):
    """An lr that changes at every batch (a schedule stepped per batch)."""

    def on_train_begin(self, logs=None):
        self.schedule = schedules.CosineAnnealing(self.model.optimizer, T_max=7)

    def on_train_batch_begin(self, batch, logs=None):
        self.schedule.optimizer = self.model.optimizer
        self.schedule.step()


def data(shape, classes, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, classes, n)


def train_both(build, x, y, optimizer, backend="emulated", metrics=("accuracy",), epochs=2, batch_size=4, **kw):
    """The same model, seed and data trained eagerly and with cuda_graph=True: (eager, graphed)."""
    out = []
    for graph in (False, True):
        with gpunn.use_backend(backend):
            gpunn.manual_seed(7)
            model = build()
            opt = optimizer() if callable(optimizer) else optimizer
            model.compile(loss="softmax_cross_entropy", optimizer=opt, metrics=list(metrics), cuda_graph=graph, **kw)
            hist = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True,
                             callbacks=[StepSchedule()])
            out.append((model, hist.history))
    return out


def assert_same_training(eager, graphed):
    (a, ha), (b, hb) = eager, graphed
    assert ha == hb  # epoch losses and metrics: the same numbers
    sa, sb = a.state_dict(), b.state_dict()  # parameters and buffers (BatchNorm's running statistics)
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    oa, ob = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert oa["step"] == ob["step"] and oa["hyperparams"] == ob["hyperparams"] and oa["scalars"] == ob["scalars"]
    for k in oa["state"]:
        np.testing.assert_array_equal(oa["state"][k], ob["state"][k], err_msg=k)


def test_lenet5_replays_equal_eager_steps_bit_for_bit(emulated):
    x, y = data((1, 28, 28), 10, 10)  # 4 + 4 + a short batch of 2: two shapes, two graphs
    eager, graphed = train_both(lenet5, x, y, lambda: Adam(lr=0.01))
    assert_same_training(eager, graphed)
    step = graphed[0]._graphs._train
    assert step.graphs == 2
    graph = next(s.graph for s in step._shapes.values() if s.graph is not None)
    assert graph.launches >= 8  # the convolutions, pools, GEMMs and the fused Adam run as kernels


def test_cifar_cnn_with_batchnorm_and_dropout(emulated):
    x, y = data((3, 12, 12), 5, 8)
    eager, graphed = train_both(cifar_cnn, x, y, lambda: SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3,
                                                             clipnorm=1.0))
    assert_same_training(eager, graphed)
    bn = [k for k in eager[0].state_dict() if "running" in k or "moving" in k]
    assert bn  # BatchNorm's statistics were compared


def test_residual_model(emulated):
    x, y = data((3, 8, 8), 4, 8)
    eager, graphed = train_both(lambda: resnet_small(depth=8, num_classes=4, input_shape=(3, 8, 8), widths=(4, 4, 8)),
                                x, y, lambda: Adam(lr=0.01, amsgrad=False, weight_decay=1e-4))
    assert_same_training(eager, graphed)


OPTIMIZER_CASES = {
    "sgd": {"momentum": 0.9}, "adagrad": {"lr": 0.1}, "rmsprop": {"centered": True, "momentum": 0.5},
    "adadelta": {"lr": 1.0}, "adam": {"amsgrad": True}, "adamw": {"clipvalue": 0.5}, "nadam": {},
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizer_with_a_schedule(emulated, name):
    x, y = data((6,), 4, 12)
    cls = OPTIMIZERS[name]
    eager, graphed = train_both(mlp, x, y, lambda: cls(**OPTIMIZER_CASES.get(name, {})), batch_size=5)
    assert_same_training(eager, graphed)
    assert eager[0].optimizer.step_count == 6


def test_train_on_batch_and_evaluate_replay(emulated):
    x, y = data((1, 28, 28), 10, 4)
    results = []
    for graph in (False, True):
        with gpunn.use_backend("emulated"):
            gpunn.manual_seed(1)
            model = lenet5()
            model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy", "top_k_accuracy"],
                          cuda_graph=graph)
            logs = [model.train_on_batch(x, y, return_dict=True) for _ in range(3)]
            logs.append(model.test_on_batch(x, y, return_dict=True))
            logs.append(model.evaluate(x, y, batch_size=3, return_dict=True))
            results.append(logs)
    assert results[0] == results[1]


def test_a_replay_runs_no_python(emulated, monkeypatch):
    x, y = data((6,), 4, 4)
    with gpunn.use_backend("emulated"):
        model = mlp()
        step = CapturedStep(model, SoftmaxCrossEntropy(), Adam(model), metrics=["accuracy"])
        step.step(x, y)  # eager (warm-up), then captured
        calls = []
        monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(a))
        before = model.state_dict()
        for _ in range(3):
            step.step(x, y)
        assert calls == [] and step.graphs == 1
        assert not np.array_equal(before["0.weight"], model.state_dict()["0.weight"])
        res = step.results()
        assert set(res) == {"loss", "accuracy"} and step.samples == 16


def test_numpy_backend_runs_the_same_step_eagerly():
    x, y = data((6,), 4, 12)
    eager, graphed = train_both(mlp, x, y, lambda: Adam(lr=0.01), backend="numpy", batch_size=5)
    assert_same_training(eager, graphed)
    assert graphed[0]._graphs._train.graphs == 0  # no graphs on NumPy


def test_changed_settings_are_captured_again(emulated):
    x, y = data((6,), 4, 4)
    with gpunn.use_backend("emulated"):
        model = mlp()
        opt = SGD(model, lr=0.1, momentum=0.5)
        step = CapturedStep(model, SoftmaxCrossEntropy(), opt)
        step.step(x, y)
        first = next(iter(step._shapes.values())).graph
        opt.momentum = 0.9  # baked into the graph: a new capture must see it
        step.step(x, y)
        assert next(iter(step._shapes.values())).graph is not first


class HostReader(Layer):
    """A layer that reads its input back on the host: fine eagerly, refused in a captured step."""

    def forward(self, x, training=False):
        self.scale = 1.0 if float(x.max()) > 0 else 2.0
        return x * self.scale

    def backward(self, dy):
        return dy * self.scale


def test_a_host_read_in_a_layer_names_the_op_while_capturing(emulated):
    x, y = data((6,), 4, 4)
    with gpunn.use_backend("emulated"):
        model = Sequential([Dense(4, input_shape=(6,)), HostReader()])
        step = CapturedStep(model, SoftmaxCrossEntropy(), Adam(model))
        with pytest.raises(GraphCaptureError, match=r"float\(\) reads device memory.*test_captured.py"):
            step.step(x, y)


def test_bad_arguments_are_refused_with_their_names():
    x, y = data((6,), 4, 4)
    model = mlp()
    with pytest.raises(TypeError, match="'model'"):
        CapturedStep(object(), "mse", Adam())
    with pytest.raises(TypeError, match="'loss'"):
        CapturedStep(model, 3, Adam(model))
    with pytest.raises(TypeError, match="'optimizer'"):
        CapturedStep(model, "softmax_cross_entropy", None)
    with pytest.raises(ValueError, match="'optimizer' must be None"):
        CapturedStep(model, "softmax_cross_entropy", Adam(model), training=False)
    with pytest.raises(ValueError, match="'warmup'"):
        CapturedStep(model, "softmax_cross_entropy", Adam(model), warmup=0)
    with pytest.raises(ValueError, match="'loss_weight'"):
        CapturedStep(model, "softmax_cross_entropy", Adam(model), loss_weight=-1.0)
    with pytest.raises(ValueError, match="no device form"):
        CapturedStep(model, "softmax_cross_entropy", Adam(model), metrics=[lambda t, p: 0.0])
    step = CapturedStep(model, "softmax_cross_entropy", Adam(model))
    with pytest.raises(TypeError, match="'x\\[0\\]' must be an array"):
        step.step([[x], x], y)
    with pytest.raises(ValueError, match="same number of samples"):
        step.step(x, y[:3])
    with pytest.raises(ValueError, match="'y' must hold at least one sample"):
        step.step(x, y[:0])
    assert step.results() == {} and step.graphs == 0  # nothing ran


def test_compile_arguments():
    model = mlp()
    with pytest.raises(TypeError, match="'cuda_graph'"):
        model.compile(loss="mse", cuda_graph="yes")
    with pytest.raises(ValueError, match="'log_every' only applies"):
        model.compile(loss="mse", log_every=10)
    with pytest.raises(ValueError, match="'log_every' must be an int >= 1"):
        model.compile(loss="mse", cuda_graph=True, log_every=0)
    with pytest.raises(ValueError, match="distributed=True"):
        model.compile(loss="mse", cuda_graph=True, distributed=True)
    model.compile(loss="softmax_cross_entropy", cuda_graph=True)
    x, y = data((6,), 4, 4)
    with pytest.raises(ValueError, match="'sample_weight' must have one weight per sample"):
        CapturedStep(model, "softmax_cross_entropy", Adam(model)).step(x, y, np.ones(3))


def test_sample_weights_class_weights_and_penalties_match_eager(emulated):
    x, y = data((6,), 4, 10)
    w = np.random.default_rng(4).uniform(0.0, 2.0, 10)
    w[:4] = 0.0  # a first batch of weight 0: it contributes nothing (divide_no_nan), on the device too
    runs = []
    for graph in (False, True):
        with gpunn.use_backend("emulated"):
            gpunn.manual_seed(11)
            model = Sequential([Dense(12, activation="relu", input_shape=(6,), kernel_regularizer="l2"), Dense(4)])
            model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"], cuda_graph=graph)
            h1 = model.fit(x, y, sample_weight=w, epochs=2, batch_size=4, verbose=0, shuffle=False).history
            h2 = model.fit(x, y, class_weight={0: 2.0, 1: 0.5, 2: 1.0, 3: 1.0}, epochs=1, batch_size=4,
                           verbose=0).history
            ev = model.evaluate(x, y, sample_weight=w, batch_size=3, return_dict=True)
            runs.append((h1, h2, ev, model.state_dict()))
    assert runs[0][:3] == runs[1][:3]
    for k in runs[0][3]:
        np.testing.assert_array_equal(runs[0][3][k], runs[1][3][k], err_msg=k)


def test_logs_reach_callbacks_once_per_interval(emulated):
    x, y = data((6,), 4, 20)
    seen = []

    class Spy(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(sorted(logs))

    with gpunn.use_backend("emulated"):
        model = mlp()
        model.compile(loss="softmax_cross_entropy", metrics=["accuracy"], cuda_graph=True, log_every=2)
        model.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[Spy()])
    full = ["accuracy", "loss", "size"]
    assert seen == [["size"], full, ["size"], full, full]  # every 2nd batch, and the epoch's last


@pytest.mark.gpu
def test_on_the_gpu_replays_equal_eager_steps_bit_for_bit():
    """Real CUDA graphs (CuPy stream capture): LeNet-5 and the CNN with BatchNorm and dropout."""
    from gpunn.backend import cuda_status
    if not cuda_status().usable:
        pytest.skip(f"no usable CUDA: {cuda_status().reason}")
    x, y = data((1, 28, 28), 10, 10)
    eager, graphed = train_both(lenet5, x, y, lambda: Adam(lr=0.01), backend="cupy")
    assert_same_training(eager, graphed)
    assert graphed[0]._graphs._train.graphs == 2
    x, y = data((3, 12, 12), 5, 8)
    assert_same_training(*train_both(cifar_cnn, x, y, lambda: SGD(lr=0.05, momentum=0.9, clipnorm=1.0),
                                     backend="cupy"))


@pytest.mark.gpu
def test_on_the_gpu_a_host_read_while_capturing_is_a_graph_capture_error():
    from gpunn.backend import cuda_status
    if not cuda_status().usable:
        pytest.skip(f"no usable CUDA: {cuda_status().reason}")
    with gpunn.use_backend("cupy") as be:
        a = be.xp.ones(4, dtype=np.float32)
        with pytest.raises(GraphCaptureError):
            be.capture_graph(lambda: float(a.sum()))
        graph, total = be.capture_graph(lambda: (a * 2).sum())  # the stream is usable again afterwards
        graph.replay()
        assert float(total) == 8.0


def test_weights_loaded_or_layers_frozen_between_replays_are_seen(emulated, tmp_path):
    """A checkpoint loaded into a graphed model, and a layer frozen mid-training (the optimizer is
    rebuilt, so is the step), train on exactly as the eager model does."""
    x, y = data((6,), 4, 8)
    with gpunn.use_backend("emulated"):
        gpunn.manual_seed(3)
        donor = mlp()
        donor.compile(loss="softmax_cross_entropy", optimizer="adam")
        donor.fit(x, y, epochs=1, batch_size=4, verbose=0)
        donor.save_weights(tmp_path / "w.safetensors")
    runs = []
    for graph in (False, True):
        with gpunn.use_backend("emulated"):
            gpunn.manual_seed(5)
            model = mlp()
            model.compile(loss="softmax_cross_entropy", optimizer="sgd", lr=0.1, cuda_graph=graph)
            model.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
            model.load_weights(tmp_path / "w.safetensors")
            model.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
            model.freeze(1)
            model.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
            runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k], err_msg=k)


def test_a_model_with_two_outputs(emulated):
    """A functional model with two heads (a class and a regression output), losses by name, a loss
    weight and metrics for one head: the same history and weights as the eager fit."""
    from gpunn import Input, Model
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 6)).astype(np.float32)
    cls, reg = rng.integers(0, 3, 10), rng.standard_normal((10, 1)).astype(np.float32)
    runs = []
    for graph in (False, True):
        with gpunn.use_backend("emulated"):
            gpunn.manual_seed(4)
            inp = Input((6,), name="x")
            hidden = Dropout(0.2)(Dense(8, activation="relu")(inp))
            model = Model(inputs=inp, outputs=[Dense(3, name="cls")(hidden), Dense(1, name="reg")(hidden)])
            model.compile(loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"}, loss_weights={"reg": 0.5},
                          optimizer="adam", metrics={"cls": ["accuracy"], "reg": ["mae"]}, cuda_graph=graph)
            h = model.fit(x, {"cls": cls, "reg": reg}, epochs=2, batch_size=4, verbose=0).history
            ev = model.evaluate(x, [cls, reg], batch_size=5, return_dict=True)
            runs.append((h, ev, model.state_dict()))
    assert model._graphs._train.graphs == 2 and model._graphs._eval.graphs == 1  # replayed, not eager
    assert {"loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"} <= set(runs[0][0])
    assert runs[0][:2] == runs[1][:2]
    for k in runs[0][2]:
        np.testing.assert_array_equal(runs[0][2][k], runs[1][2][k], err_msg=k)


def test_a_subclassed_model(emulated):
    """A subclassed model (its call() recorded on a tape each forward): captured and replayed."""
    from tests.train.test_subclassed import Branchy
    x, y = data((4,), 2, 8)
    runs = []
    for graph in (False, True):
        with gpunn.use_backend("emulated"):
            gpunn.manual_seed(6)
            model = Branchy()
            model.compile(loss="softmax_cross_entropy", optimizer="rmsprop", metrics=["accuracy"], cuda_graph=graph)
            runs.append((model.fit(x, y, epochs=2, batch_size=4, verbose=0).history, model.state_dict()))
    assert model._graphs._train.graphs == 1
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k], err_msg=k)


def test_a_model_with_two_inputs(emulated):
    """The two-tower functional model (two inputs, a shared layer, a merge, two outputs), fed dicts."""
    from tests.train.test_multi_io import pair_data, two_tower
    left, right, cls, reg = pair_data(n=10)
    runs = []
    for graph in (False, True):
        with gpunn.use_backend("emulated"):
            gpunn.manual_seed(8)
            model = two_tower()
            model.compile(loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"}, loss_weights={"reg": 0.5},
                          optimizer="adam", metrics={"cls": ["accuracy"]}, cuda_graph=graph)
            h = model.fit({"left": left, "right": right}, {"cls": cls, "reg": reg}, epochs=2, batch_size=4,
                          verbose=0).history
            runs.append((h, model.state_dict()))
    assert model._graphs._train.graphs == 2
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k], err_msg=k)


def test_metric_names_are_read_as_compile_reads_them_next_to_the_loss():
    """binary_accuracy thresholds logits at 0 next to a loss on logits, probabilities at 0.5."""
    from gpunn.losses import BinaryCrossEntropy
    model = Sequential([Dense(1, input_shape=(6,))])
    on_logits = CapturedStep(model, BinaryCrossEntropy(from_logits=True), Adam(model), metrics=["binary_accuracy"])
    on_probs = CapturedStep(model, BinaryCrossEntropy(from_logits=False), SGD(model), metrics=["binary_accuracy"])
    assert on_logits._heads[0].metrics[0][1].params == {"threshold": 0.0}
    assert on_probs._heads[0].metrics[0][1].params.get("threshold", 0.5) == 0.5
