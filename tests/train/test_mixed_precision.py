"""Precision policies end to end: compile(precision=...), the custom-loop MixedPrecision, the
half copy of the masters, fp16's loss scaling with device-side skips, captured steps, checkpoints.

Tolerances: a bf16 value carries 8 significant bits (unit roundoff u = 2^-8 = 0.0039), an fp16
value 11 (u = 2^-11 = 0.00049), a TF32 operand 11. A gradient computed in 16 bits with fp32
accumulation differs from the fp32 one by a few u relative to its magnitude per layer it passed
through (see DEPTH_BOUND)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from gpunn.optim import SGD, Adam, GradScaler
from gpunn.precision import POLICIES, get_policy
from gpunn.train.mixed_precision import MixedPrecision

BACKENDS = ["numpy", "emulated", pytest.param("cupy", marks=pytest.mark.gpu)]
GRAPH_BACKENDS = ["emulated", pytest.param("cupy", marks=pytest.mark.gpu)]


def _use(name: str):
    """`name` made current; the CuPy backend joins when a GPU is there (the `gpu` marker)."""
    if name == "cupy" and not gpunn.cuda_status().usable:
        pytest.skip(f"no usable CUDA: {gpunn.cuda_status().reason}")
    return gpunn.use_backend(name)
U = {"bf16-mixed": 2.0 ** -8, "fp16-mixed": 2.0 ** -11, "tf32": 2.0 ** -11, "fp32": 2.0 ** -24}
#: the CNN below has 6 layers; forward and backward each round once per layer (activations, then
#: gradients) on top of the rounded weights and input, and BatchNorm's normalization amplifies the
#: relative error of its input by up to ~2: 4 u per layer, 24 u in all, bounds the gradient's error
DEPTH_BOUND = 24


def _data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
    y = (x.reshape(n, -1)[:, :10].argmax(axis=1)).astype(np.int64)
    return x, y


def _cnn(seed: int = 0, batchnorm: bool = True) -> Sequential:
    gpunn.manual_seed(seed)
    layers = [Conv2D(4, 3, padding=1, input_shape=(1, 8, 8)), *([BatchNorm()] if batchnorm else []), ReLU(),
              MaxPool2D(2), Flatten(), Dense(16, activation="relu"), Dense(10)]
    return _built(Sequential(layers), (1, 8, 8))


def _built(model, shape):
    model.build(shape)
    return model


def _host_params(model) -> list[np.ndarray]:
    return [np.array(gpunn.backend.to_host(p.data), copy=True) for p in model.parameters()]


# -- policies and their errors ------------------------------------------------------------------
def test_policy_table_and_bad_names():
    assert sorted(POLICIES) == ["bf16-mixed", "fp16-mixed", "fp32", "tf32"]
    assert get_policy("bf16-mixed").compute_dtype == np.dtype(ml_dtypes.bfloat16)
    assert get_policy("fp16-mixed").loss_scaling and not get_policy("bf16-mixed").loss_scaling
    assert get_policy("tf32").matmul_precision == "tf32" and not get_policy("tf32").mixed
    with pytest.raises(ValueError, match=r"argument 'precision' must be one of .*'bf16-mixed'.*got 'fp8'"):
        get_policy("fp8")


def test_compile_refuses_bad_precision_and_float64_models():
    model = _cnn()
    with pytest.raises(ValueError, match="compile: argument 'precision' must be one of"):
        model.compile("softmax_cross_entropy", "adam", precision="half")
    m64 = Sequential([Dense(3, input_shape=(4,))], dtype="float64")
    with pytest.raises(ValueError, match="keeps float32 master weights; this model computes in float64"):
        m64.compile("mse", "sgd", precision="bf16-mixed")
    with pytest.raises(ValueError, match="with distributed=True is not supported yet"):
        model.compile("softmax_cross_entropy", "adam", precision="fp16-mixed", distributed=True)
    model.compile("softmax_cross_entropy", "adam", precision="tf32")
    assert model.precision == "tf32"


def test_mixed_precision_argument_errors():
    model = _cnn()
    opt = Adam(model)
    with pytest.raises(TypeError, match="argument 'model' must be a gpunn model"):
        gpunn.mixed_precision(object(), opt, "bf16-mixed")
    with pytest.raises(TypeError, match="argument 'optimizer' must be a gpunn Optimizer or None"):
        gpunn.mixed_precision(model, "adam", "bf16-mixed")
    with pytest.raises(ValueError, match="argument 'scaler' is for precision='fp16-mixed'"):
        gpunn.mixed_precision(model, opt, "bf16-mixed", scaler=GradScaler())
    with pytest.raises(TypeError, match="argument 'scaler' must be a gpunn.optim.GradScaler"):
        gpunn.mixed_precision(model, opt, "fp16-mixed", scaler=2.0)
    unbuilt = Sequential([Dense(3)])
    mp = gpunn.mixed_precision(unbuilt, Adam(unbuilt), "bf16-mixed")
    with pytest.raises(RuntimeError, match="the model is not built yet"):
        with mp.autocast():
            pass
    mp = gpunn.mixed_precision(model, None, "bf16-mixed")
    with pytest.raises(ValueError, match="a training step needs the optimizer"):
        with mp.autocast():
            pass
    with pytest.raises(ValueError, match="this MixedPrecision has no optimizer"):
        mp.step()


def test_optimizer_calls_inside_autocast_are_refused_and_weights_come_back():
    model = _cnn()
    opt = Adam(model)
    mp = gpunn.mixed_precision(model, opt, "bf16-mixed")
    opt.zero_grad()  # packs: the parameters become views into the flat fp32 buffer
    masters = [p.data for p in model.parameters()]
    with mp.autocast():
        assert all(p.data.dtype == np.dtype(ml_dtypes.bfloat16) for p in model.parameters())
        with pytest.raises(RuntimeError, match="outside a mixed-precision autocast block"):
            opt.zero_grad()
    assert all(p.data is m for p, m in zip(model.parameters(), masters))
    assert all(p.data.dtype == np.float32 for p in model.parameters())


def test_apply_step_mixed_checks_its_arguments():
    model = _cnn()
    opt = SGD(model, lr=0.1)
    opt.prepare_step()
    n = int(opt.flat_data.shape[0])
    with pytest.raises(ValueError, match="argument 'half_grad' must be a 1-D float16 or bfloat16 array"):
        opt.apply_step_mixed(np.zeros(n, np.float32))
    with pytest.raises(ValueError, match="arguments 'inv_scale' and 'found_inf' go together"):
        opt.apply_step_mixed(np.zeros(n, np.float16), np.ones(1, np.float32), None)


# -- what a mixed step computes -------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("precision", ["bf16-mixed", "fp16-mixed"])
def test_layers_compute_in_16_bits_losses_and_softmax_in_float32(backend, precision):
    with _use(backend):
        model = _built(Sequential([Dense(8, activation="relu"), Dense(4), gpunn.layers.Softmax()]), (5,))
        opt = SGD(model, lr=0.0)
        mp = gpunn.mixed_precision(model, opt, precision)
        half = get_policy(precision).compute_dtype
        seen = {}
        for layer in model.layers:
            layer.register_forward_hook(lambda lyr: seen.__setitem__(lyr.name, lyr._output_seen[1]))
        x = np.ones((3, 5), np.float32)
        with mp.autocast():
            y = model.forward(x, training=True)
        assert seen[model.layers[0].name] == half and seen[model.layers[1].name] == half
        assert y.dtype == np.float32  # Softmax computes in float32, as under torch.autocast


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("precision", ["bf16-mixed", "fp16-mixed", "tf32"])
def test_mixed_gradient_matches_float32_within_the_format_roundoff(backend, precision):
    """The unscaled float32 gradient the optimizer sees, against the fp32 policy's, same weights and batch."""
    x, y = _data(32)
    grads = {}
    for pol in ("fp32", precision):
        with _use(backend):
            model = _cnn(batchnorm=True)
            opt = SGD(model, lr=0.0)  # lr 0: the step leaves the weights; the gradient is what we compare
            loss = gpunn.losses.SoftmaxCrossEntropy()
            mp = gpunn.mixed_precision(model, opt, pol)
            opt.zero_grad()
            with mp.autocast():
                loss.forward(model.forward(x, training=True), y)
                model.backward(mp.scale(loss.backward()))
            mp.step()
            grads[pol] = np.concatenate([gpunn.backend.to_host(p.grad).ravel() for p in model.parameters()])
    ref, got = grads["fp32"], grads[precision]
    assert np.isfinite(got).all()
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert rel <= DEPTH_BOUND * U[precision], rel
    if precision != "tf32":
        assert rel > 0  # it did compute in 16 bits


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_cast_refreshes_the_half_copy_from_the_masters(backend):
    with _use(backend):
        model = _cnn()
        opt = Adam(model, lr=1e-2)
        mp = gpunn.mixed_precision(model, opt, "bf16-mixed")
        x, y = _data(16)
        loss = gpunn.losses.SoftmaxCrossEntropy()
        for _ in range(2):
            opt.zero_grad()
            with mp.autocast():
                loss.forward(model.forward(x, training=True), y)
                model.backward(mp.scale(loss.backward()))
            mp.step()
        with mp.autocast(training=False):
            pass
        half = gpunn.backend.to_host(mp.half_weights.data)
        masters = gpunn.backend.to_host(opt.flat_data)
        np.testing.assert_array_equal(half, masters.astype(ml_dtypes.bfloat16))


# -- fp16: loss scaling, skipped steps ------------------------------------------------------------
def _fp16_loop(mp, x, y, steps, loss_weight=1.0):
    """`steps` fp16 steps of an MSE fit; returns the scale after each and the losses."""
    model, opt = mp.model, mp.optimizer
    loss = gpunn.losses.MSE()
    scales, values = [], []
    for _ in range(steps):
        opt.zero_grad()
        with mp.autocast():
            values.append(loss.forward(model.forward(x, training=True), y))
            model.backward(mp.scale(loss.backward(loss_weight)))
        mp.step()
        scales.append(mp.scaler.get_scale())
    return scales, values


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opt_cls", [SGD, Adam])
def test_fp16_inf_steps_are_skipped_on_the_device_and_the_scale_backs_off(backend, opt_cls):
    """Loss gradients of ~1e3 times the 2^16 scale overflow float16 (max 65504): the first step is
    skipped (weights, moments and step count untouched) and the scale halves, as torch's
    GradScaler, step after step until the scaled gradients fit; then training proceeds."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 1)) * 1e3).astype(np.float32)  # targets ~1e3: so is the loss gradient
    with _use(backend):
        gpunn.manual_seed(0)
        model = _built(Sequential([Dense(1)]), (4,))
        opt = opt_cls(model, lr=1e-3)
        mp = gpunn.mixed_precision(model, opt, "fp16-mixed")
        before = _host_params(model)
        scales, _ = _fp16_loop(mp, x, y, 1)
        assert scales == [2.0 ** 15]  # halved: that step overflowed
        for a, b in zip(before, _host_params(model)):
            np.testing.assert_array_equal(a, b)  # skipped on the device: bit-identical weights
        assert opt.step_count == 0  # the device's count, read back: the skipped step did not count
        assert all(not np.any(v) for v in opt.state_dict()["state"].values())  # moments untouched
        scales, values = _fp16_loop(mp, x, y, 30)
        assert scales[-1] <= 2.0 ** 10  # backed off to a scale the gradients fit under
        assert opt.step_count > 0 and values[-1] < values[0]
        assert all(np.isfinite(p).all() for p in _host_params(model))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp16_without_scaling_underflows_and_with_scaling_trains(backend):
    """The loss weighted by 2^-28: every element of the loss gradient is below half float16's
    smallest subnormal (2^-25) unscaled, so it rounds to 0 and without loss scaling nothing
    changes; the 2^16 scale lifts it into float16's range."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 1))).astype(np.float32)
    results = {}
    for enabled in (False, True):
        with _use(backend):
            gpunn.manual_seed(0)
            model = _built(Sequential([Dense(1)]), (4,))
            opt = SGD(model, lr=2.0 ** 28 * 0.05)  # the lr undoes the loss weight: a normal step size
            before = _host_params(model)
            mp = gpunn.mixed_precision(model, opt, "fp16-mixed", scaler=GradScaler(enabled=enabled))
            _fp16_loop(mp, x, y, 20, loss_weight=2.0 ** -28)
            results[enabled] = (before, _host_params(model))
    before, after = results[False]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # underflowed to zero: no update
    before, after = results[True]
    assert not all(np.array_equal(a, b) for a, b in zip(before, after))
    assert all(np.isfinite(p).all() for p in after)


def test_scaler_schedule_through_the_training_step_matches_torch():
    """A scripted sequence of clean and overflowing steps: the scale sequence equals torch.amp.GradScaler's."""
    torch = pytest.importorskip("torch")
    pattern = [False, True, False, False, False, True, True, False, False, False, False]
    ref = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=3)
    seq_torch = []
    w = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([w], lr=0.1)
    ref.scale(torch.ones(()))  # torch makes its scale tensor at the first scale() call
    for bad in pattern:
        topt.zero_grad()
        w.grad = torch.tensor([float("inf") if bad else 1.0])
        ref.step(topt)
        ref.update()
        seq_torch.append(ref.get_scale())
    model = _built(Sequential([Dense(1, use_bias=False)]), (1,))
    opt = SGD(model, lr=0.1)
    mp = gpunn.mixed_precision(model, opt, "fp16-mixed", scaler=GradScaler(8.0, growth_interval=3))
    seq = []
    for bad in pattern:
        opt.zero_grad()
        with mp.autocast():
            pass
        mp.half_weights.grad[...] = np.float16(np.inf if bad else 1.0)
        mp.step()
        seq.append(mp.scaler.get_scale())
    assert seq == seq_torch


# -- compile(precision=...) end to end ------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("precision", ["tf32", "bf16-mixed", "fp16-mixed"])
def test_fit_evaluate_predict_under_each_policy(backend, precision):
    x, y = _data(96)
    with _use(backend):
        model = _cnn()
        model.compile("softmax_cross_entropy", Adam(lr=1e-2), metrics=["accuracy"], precision=precision)
        hist = model.fit(x, y, epochs=3, batch_size=32, verbose=0)
        loss = hist.history["loss"]
        assert np.isfinite(loss).all() and loss[-1] < loss[0]
        out = model.predict(x[:5])
        assert out.dtype == np.float32 and out.shape == (5, 10)
        ev = model.evaluate(x, y, verbose=0, return_dict=True)
        assert np.isfinite(ev["loss"])
        assert all(p.data.dtype == np.float32 for p in model.parameters())


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
@pytest.mark.parametrize("precision", ["bf16-mixed", "fp16-mixed"])
def test_captured_mixed_step_replays_the_eager_step_exactly(backend, precision):
    """The emulated backend records the whole mixed step (the cast, the scaled backward, the
    unscale and check, the skippable update, the scale's update) and replays it: the same bits
    as eager steps."""
    x, y = _data(64)
    results = {}
    for graph in (False, True):
        with _use(backend):
            model = _cnn()
            model.compile("softmax_cross_entropy", Adam(lr=1e-2), precision=precision, cuda_graph=graph)
            model.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False)
            results[graph] = _host_params(model)
            if graph:
                assert model._graphs.step(True, "fit").graphs == 1
    for a, b in zip(results[False], results[True]):
        np.testing.assert_array_equal(a, b)


def test_captured_mixed_step_with_dropout_draws_the_eager_masks():
    """16-bit dropout runs the Philox kernel on the CUDA backends (an upcast copy), so a replay
    draws fresh masks from the device stream, the eager step's: the same weights after two epochs."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype(np.float32)
    y = x[:, :3].argmax(axis=1)
    results = {}
    for graph in (False, True):
        with gpunn.use_backend("emulated"):
            gpunn.manual_seed(0)
            model = _built(Sequential([Dense(16, activation="relu"), gpunn.layers.Dropout(0.5), Dense(3)]), (12,))
            model.compile("softmax_cross_entropy", Adam(lr=1e-2), precision="bf16-mixed", cuda_graph=graph)
            model.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False)
            results[graph] = _host_params(model)
    for a, b in zip(results[False], results[True]):
        np.testing.assert_array_equal(a, b)


def test_captured_step_takes_a_precision_for_custom_loops():
    x, y = _data(32)
    with gpunn.use_backend("emulated"):
        model = _cnn()
        opt = Adam(model, lr=1e-2)
        step = gpunn.train.CapturedStep(model, "softmax_cross_entropy", opt, precision="bf16-mixed")
        for _ in range(3):
            step.step(x, y)
        assert step.graphs == 1 and np.isfinite(step.results()["loss"])
        with pytest.raises(ValueError, match="CapturedStep: argument 'precision' must be one of"):
            gpunn.train.CapturedStep(model, "softmax_cross_entropy", opt, precision="int8")


def test_checkpoint_keeps_policy_and_scaler_and_resumes_identically(tmp_path):
    """fp16-mixed: two epochs straight, or one, a save, a load and the second: the same bits
    (the fp32 masters, the optimizer's state, the scaler's scale and growth tracker, the policy)."""
    x, y = _data(64)

    def make():
        model = _cnn()
        model.compile("softmax_cross_entropy", Adam(lr=1e-2), precision="fp16-mixed")
        return model

    straight = make()
    straight.fit(x, y, epochs=2, batch_size=32, verbose=0)
    first = make()
    first.fit(x, y, epochs=1, batch_size=32, verbose=0)
    path = tmp_path / "m.safetensors"
    first.save(path)
    resumed = gpunn.load_model(path)
    assert resumed.precision == "fp16-mixed"
    assert resumed.grad_scaler.state_dict() == first.grad_scaler.state_dict()
    assert resumed.grad_scaler.get_scale() == 2.0 ** 16 and first.grad_scaler.state_dict()["_growth_tracker"] == 2
    resumed.fit(x, y, epochs=2, initial_epoch=1, batch_size=32, verbose=0)
    for a, b in zip(_host_params(straight), _host_params(resumed)):
        np.testing.assert_array_equal(a, b)
    assert resumed.grad_scaler.state_dict() == straight.grad_scaler.state_dict()


def test_checkpoint_with_a_corrupt_precision_is_refused(tmp_path):
    import json
    from gpunn.io.safetensors import read_safetensors, write_safetensors
    model = _cnn()
    model.compile("softmax_cross_entropy", "adam", precision="bf16-mixed")
    model.fit(*_data(32), epochs=1, batch_size=32, verbose=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    tensors, meta = read_safetensors(path, "gpunn.sha256")
    cfg = json.loads(meta["gpunn.compile"])
    cfg["precision"] = "__import__('os')"
    meta["gpunn.compile"] = json.dumps(cfg)
    write_safetensors(path, tensors, {k: v for k, v in meta.items() if k != "gpunn.sha256"}, "gpunn.sha256")
    with pytest.raises(gpunn.io.CheckpointError, match="'precision' must be one of"):
        gpunn.load_model(path)


def test_float16_data_without_a_policy_trains_a_float32_model():
    x, y = _data(64)
    model = _cnn()
    model.compile("softmax_cross_entropy", "adam")
    model.fit(x.astype(np.float16), y, epochs=2, batch_size=32, verbose=0)
    assert all(p.data.dtype == np.float32 for p in model.parameters())
    assert all(np.isfinite(gpunn.backend.to_host(p.data)).all() for p in model.parameters())
    assert model.predict(x[:2].astype(np.float16)).dtype == np.float32


def test_kernel_regularizer_gradient_is_scaled_with_the_loss():
    """fp16: the L2 penalty's gradient is multiplied by the loss scale inside the step, so after
    unscaling it is the plain penalty gradient (the fp32 policy's within fp16 roundoff)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    grads = {}
    for pol in ("fp32", "fp16-mixed"):
        gpunn.manual_seed(0)
        model = _built(Sequential([Dense(2, kernel_regularizer=gpunn.regularizers.L2(0.5))]), (4,))
        opt = SGD(model, lr=0.0)
        # scale 2^10: at torch's 2^16 the penalty's gradient (about the weights, ~1) times the scale
        # would overflow float16 and the step would be skipped, as it should
        mp = gpunn.mixed_precision(model, opt, pol, **({"scaler": GradScaler(2.0 ** 10)} if pol != "fp32" else {}))
        loss = gpunn.losses.MSE()
        opt.zero_grad()
        with mp.autocast():
            loss.forward(model.forward(x, training=True), y)
            model.backward(mp.scale(loss.backward()))
        mp.step()
        grads[pol] = gpunn.backend.to_host(model.parameters()[0].grad).copy()
    ref, got = grads["fp32"], grads["fp16-mixed"]
    # unscaled by mistake, the penalty's part would be 2^16 times too small: an error of ~ its size
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) <= 10 * U["fp16-mixed"]


def test_lenet5_bf16_mixed_on_digits_is_within_half_a_point_of_fp32():
    pytest.importorskip("sklearn")
    from gpunn.data import load_digits, train_test_split
    from gpunn.models import lenet5
    x, y = load_digits()
    (x_train, y_train), (x_test, y_test) = train_test_split(x, y, test_fraction=0.2, seed=0)
    acc = {}
    for precision in ("fp32", "bf16-mixed"):
        gpunn.manual_seed(0)
        model = lenet5(num_classes=10, input_shape=(1, 8, 8))
        model.compile("softmax_cross_entropy", Adam(lr=2e-3), metrics=["accuracy"], precision=precision)
        model.fit(x_train, y_train, epochs=6, batch_size=64, verbose=0)
        acc[precision] = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    assert acc["fp32"] >= 0.9
    assert acc["bf16-mixed"] >= acc["fp32"] - 0.005, acc
