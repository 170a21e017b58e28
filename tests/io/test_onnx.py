"""ONNX export, run back in ONNX Runtime: every zoo model, every layer class (both layouts where a
layer has one), a functional graph with two inputs, a shared layer, a merge and two outputs; two
batch sizes through one file; the bad inputs."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import gpunn
from gpunn import layers as L
from gpunn.io.onnx import MAX_OPSET, MIN_OPSET, OnnxExportError, convertible_classes, export_onnx, to_onnx
from gpunn.models import MODELS, get_model

IMG = (4, 6, 6)
IMG_LAST = (6, 6, 4)
VEC = (6,)
SEQ = (4, 5)  # (C, L): the rank-3 inputs of the norms
TOL = 1e-5


def _randomize_stats(model: L.Layer, rng: np.random.Generator) -> None:
    """Running statistics away from 0 / 1 and affine maps away from 1 / 0, so that exporting the
    wrong ones (or ignoring them) changes the output."""
    stack = [model]
    while stack:
        layer = stack.pop()
        stack.extend(layer.children.values())
        stack.extend(getattr(layer, "layers", []) or [])
        graph = getattr(layer, "_graph", None)
        if graph is not None:
            stack.extend(graph.layers.values())
        for key in ("running_mean", "running_var"):
            if key in layer.buffers:
                buf = layer.buffers[key]
                buf[...] = rng.uniform(0.5, 1.5, buf.shape) if key == "running_var" else rng.normal(0, 0.5, buf.shape)
        for key in ("gamma", "beta", "alpha", "g"):
            if key in layer.params:
                p = layer.params[key].data
                p[...] = p + rng.normal(0, 0.2, p.shape).astype(p.dtype)


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check(model, xs_of, tmp_path, opset: int = 17) -> None:
    """Export once, then run two batch sizes through the one file and compare with predict."""
    path = tmp_path / "model.onnx"
    assert export_onnx(model, path, opset=opset) == path
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    sess = _session(path)
    names = [i.name for i in sess.get_inputs()]
    for n in (1, 5):
        xs = xs_of(n)
        got = sess.run(None, dict(zip(names, xs)))
        want = model.predict(xs if len(xs) > 1 else xs[0], batch_size=n)
        want = want if isinstance(want, list) else [want]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == np.float32
            np.testing.assert_allclose(g, w, rtol=TOL, atol=TOL)


def _sequential(shape: tuple[int, ...], make, seed: int = 0) -> gpunn.Sequential:
    gpunn.manual_seed(seed)
    model = gpunn.Sequential(make())
    model.build(shape)
    model.predict(np.zeros((2, *shape), np.float32))  # builds activation= layers (a PReLU's slopes)
    _randomize_stats(model, np.random.default_rng(seed))
    return model


def _inputs(shape: tuple[int, ...], seed: int = 1, scale: float = 2.0):
    rng = np.random.default_rng(seed)
    return lambda n: [(scale * rng.standard_normal((n, *shape))).astype(np.float32)]


# one model per layer class (the key); non-default settings, and both layouts for image layers
FACTORIES = {
    "Dense": (VEC, lambda: [L.Dense(5, activation="tanh"), L.Dense(3, use_bias=False)]),
    "Conv2D": (IMG, lambda: [L.Conv2D(3, 3, padding="same", activation="relu"),
                             L.Conv2D(2, (3, 2), strides=2, use_bias=False, activation="softmax"),
                             L.Conv2D(2, 3, dilation=2, padding="same", use_bias=False)]),
    "Conv2D_last": (IMG_LAST, lambda: [L.Conv2D(3, 3, padding=1, activation="prelu", data_format="channels_last"),
                                       L.Conv2D(2, 2, strides=(2, 1), data_format="channels_last")]),
    "MaxPool2D": (IMG, lambda: [L.MaxPool2D(3, strides=2, padding=1), L.MaxPool2D(2, strides=1)]),
    "MaxPool2D_last": (IMG_LAST, lambda: [L.MaxPool2D(3, strides=2, padding=1, data_format="channels_last")]),
    "AvgPool2D": (IMG, lambda: [L.AvgPool2D(pool_size=3, strides=2, padding=1), L.AvgPool2D(2, strides=1)]),
    "AvgPool2D_last": (IMG_LAST, lambda: [L.AvgPool2D(3, strides=1, padding=1, data_format="channels_last")]),
    "GlobalAveragePooling2D": (IMG, lambda: [L.GlobalAveragePooling2D()]),
    "GlobalAveragePooling2D_last": (IMG_LAST, lambda: [L.GlobalAveragePooling2D(data_format="channels_last",
                                                                                keepdims=True), L.Flatten()]),
    "BatchNorm": (IMG, lambda: [L.BatchNorm(eps=1e-3), L.Flatten(), L.BatchNorm(affine=False)]),
    "BatchNorm_seq": (SEQ, lambda: [L.BatchNorm(), L.BatchNorm(track_running_stats=False)]),
    "BatchNorm_last": (IMG_LAST, lambda: [L.BatchNorm(data_format="channels_last"),
                                          L.BatchNorm(data_format="channels_last", track_running_stats=False)]),
    "BatchNormalization": (IMG, lambda: [L.BatchNormalization(momentum=0.8), L.Flatten(),
                                         L.BatchNormalization(axis=-1)]),
    "BatchNormalization_last": (IMG_LAST, lambda: [L.BatchNormalization(axis=-1, center=False, scale=False)]),
    "LayerNorm": (IMG, lambda: [L.LayerNorm(normalized_ndim=2, eps=1e-4), L.LayerNorm(affine=False)]),
    "GroupNorm": (IMG, lambda: [L.GroupNorm(2), L.Flatten(), L.GroupNorm(3, affine=False)]),
    "GroupNorm_last": (IMG_LAST, lambda: [L.GroupNorm(2, data_format="channels_last")]),
    "InstanceNorm": (IMG, lambda: [L.InstanceNorm(), L.InstanceNorm(affine=False, eps=1e-3)]),
    "InstanceNorm_seq": (SEQ, lambda: [L.InstanceNorm()]),
    "InstanceNorm_last": (IMG_LAST, lambda: [L.InstanceNorm(data_format="channels_last")]),
    "Dropout": (VEC, lambda: [L.Dense(4), L.Dropout(0.3)]),
    "Flatten": (IMG, lambda: [L.Flatten(), L.Dense(3)]),
    "Flatten_channels_first": (IMG, lambda: [L.Flatten(data_format="channels_first"), L.Dense(3)]),
    "Flatten_last": (IMG_LAST, lambda: [L.Flatten(data_format="channels_last"), L.Dense(3)]),
    "Maxout": (VEC, lambda: [L.Maxout(4, pieces=3), L.Maxout(2, pieces=1)]),
    "PReLU": (IMG, lambda: [L.PReLU(), L.Flatten(), L.PReLU(shared=True), L.PReLU()]),
    "WeightNorm": (IMG, lambda: [L.WeightNorm(L.Conv2D(3, 3, padding=1, activation="relu")), L.Flatten(),
                                 L.WeightNorm(L.Dense(4, activation="selu"))]),
    "Residual": (IMG, lambda: [L.basic_block(4), L.basic_block(6, strides=2),
                               L.Residual(L.Conv2D(4, 3, padding=1), L.Conv2D(4, 1))]),
    "Chain": (VEC, lambda: [L.Chain([L.Dense(4), L.ReLU()]), L.Dense(2)]),
    "ReLU": (VEC, lambda: [L.ReLU()]),
    "LeakyReLU": (VEC, lambda: [L.LeakyReLU(alpha=0.2)]),
    "ELU": (VEC, lambda: [L.ELU(alpha=0.7)]),
    "SELU": (VEC, lambda: [L.SELU()]),
    "ReLU6": (VEC, lambda: [L.Dense(6), L.ReLU6()]),
    "CReLU": (IMG, lambda: [L.CReLU(), L.Flatten(), L.CReLU()]),
    "Sigmoid": (VEC, lambda: [L.Sigmoid()]),
    "Tanh": (VEC, lambda: [L.Tanh()]),
    "Softplus": (VEC, lambda: [L.Softplus()]),
    "Softsign": (VEC, lambda: [L.Softsign()]),
    "GELU": (VEC, lambda: [L.GELU(), L.GELU(approximate="tanh")]),
    "SiLU": (VEC, lambda: [L.SiLU(), L.Swish()]),
    "Softmax": (IMG, lambda: [L.Softmax(axis=1), L.Softmax(axis=-1)]),
    "LogSoftmax": (IMG, lambda: [L.LogSoftmax(axis=2), L.Flatten(), L.LogSoftmax()]),
    "Linear": (VEC, lambda: [L.Linear(), L.Activation("linear")]),
    "Activation": (VEC, lambda: [L.Activation("gelu_tanh"), L.Activation("tanh")]),
}


MERGES = {"Add": L.Add, "Subtract": L.Subtract, "Multiply": L.Multiply, "Average": L.Average, "Maximum": L.Maximum,
          "Concatenate": lambda: L.Concatenate(axis=-1)}

_ABSTRACT = {"Layer", "Activation"}


def exported_layer_classes() -> set[str]:
    return {n for n in L.__all__ if isinstance(getattr(L, n), type) and issubclass(getattr(L, n), L.Layer)
            and n not in _ABSTRACT and getattr(L, n).__name__ == n}


def test_every_layer_class_has_an_export_case_and_a_converter():
    names = exported_layer_classes()
    covered = {k.split("_")[0] for k in FACTORIES} | set(MERGES)
    assert not names - covered, f"add ONNX export cases for {sorted(names - covered)} to FACTORIES"
    converted = {c.__name__ for c in convertible_classes()}
    assert not names - converted, f"no ONNX converter for {sorted(names - converted)}"


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_layer_exports_and_onnxruntime_matches_predict(kind, tmp_path):
    shape, make = FACTORIES[kind]
    model = _sequential(shape, make)
    _check(model, _inputs(shape), tmp_path)


@pytest.mark.parametrize("kind", sorted(MERGES))
def test_merge_layer_in_a_graph(kind, tmp_path):
    gpunn.manual_seed(3)
    a = gpunn.Input(shape=VEC, name="a")
    b = gpunn.Input(shape=VEC, name="b")
    shared = L.Dense(6, activation="tanh", name="shared")
    xs = [shared(a), shared(b)]
    if kind != "Subtract":
        xs.append(L.Dense(6, name="extra")(a))  # three inputs: the fold order matters
    model = gpunn.Model(inputs=[a, b], outputs=MERGES[kind]()(xs))
    rng = np.random.default_rng(4)
    _check(model, lambda n: [rng.standard_normal((n, *VEC)).astype(np.float32) for _ in range(2)], tmp_path)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_zoo_model_exports_and_matches_predict(name, tmp_path):
    gpunn.manual_seed(5)
    kwargs = {"input_shape": (1, 12, 12), "hidden": (16, 8)} if name == "mlp" else {}
    if name == "lenet5":
        kwargs = {"batchnorm": True}
    model = get_model(name, **kwargs)
    _randomize_stats(model, np.random.default_rng(6))
    _check(model, _inputs(tuple(model.input_shape), scale=1.0), tmp_path)


def test_functional_two_inputs_shared_layer_merge_two_outputs(tmp_path):
    gpunn.manual_seed(7)
    image = gpunn.Input(shape=IMG, name="image")
    side = gpunn.Input(shape=VEC, name="side")
    trunk = L.Conv2D(3, 3, padding="same", activation="relu", name="trunk")
    h = L.GlobalAveragePooling2D()(trunk(trunk(L.Conv2D(3, 1, name="stem")(image))))  # trunk called twice
    enc = L.Dense(3, name="enc")
    joined = L.Concatenate(name="joined")([h, enc(side)])
    probs = L.Dense(4, activation="softmax", name="probs")(joined)
    score = L.Add(name="score")([enc(side), h])  # enc shared too
    model = gpunn.Model(inputs=[image, side], outputs={"probs": probs, "score": score})
    rng = np.random.default_rng(8)
    _check(model, lambda n: [rng.standard_normal((n, *IMG)).astype(np.float32),
                             rng.standard_normal((n, *VEC)).astype(np.float32)], tmp_path)
    proto = onnx.load(str(tmp_path / "model.onnx"))
    assert [i.name for i in proto.graph.input] == ["image", "side"]
    assert [o.name for o in proto.graph.output] == ["probs", "score"]
    inits = [i.name for i in proto.graph.initializer]
    assert sum(n.startswith("trunk.weight") for n in inits) == 1  # the shared layer's weights, once
    assert sum(n.startswith("enc.weight") for n in inits) == 1
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_nested_functional_model_as_a_layer(tmp_path):
    gpunn.manual_seed(9)
    x = gpunn.Input(shape=VEC, name="x")
    inner = gpunn.Model(inputs=x, outputs=L.Dense(3, activation="elu")(x), name="inner")
    model = gpunn.Sequential([inner, L.Dense(2)])
    model.build(VEC)
    _check(model, _inputs(VEC), tmp_path)


@pytest.mark.parametrize("opset", [MIN_OPSET, 18, MAX_OPSET])
def test_opsets(opset, tmp_path):
    model = _sequential(IMG, lambda: [L.Conv2D(2, 3), L.Maxout(3, pieces=2), L.LayerNorm(), L.Flatten(),
                                      L.Softmax()])
    _check(model, _inputs(IMG), tmp_path, opset=opset)
    assert onnx.load(str(tmp_path / "model.onnx")).opset_import[0].version == opset


def test_export_onnx_method_writes_the_same_graph(tmp_path):
    model = _sequential(VEC, lambda: [L.Dense(3, activation="gelu")])
    model.export_onnx(tmp_path / "m.onnx", opset=15)
    x = _inputs(VEC)(4)[0]
    got = _session(tmp_path / "m.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model.predict(x), rtol=TOL, atol=TOL)


# -- bad inputs -----------------------------------------------------------------------------------
class Doubler(L.Layer):
    def forward(self, x, training=False):
        return self._prepare(x) * 2

    def backward(self, dy):
        return dy * 2


class MyDense(L.Dense):
    """A subclass of a converted class is not assumed to compute what its base does."""


@pytest.mark.parametrize("layer, cls", [(Doubler, "Doubler"), (lambda: MyDense(2), "MyDense")])
def test_unknown_layer_class_is_named(layer, cls, tmp_path):
    model = _sequential(VEC, lambda: [L.Dense(3), layer()])
    with pytest.raises(OnnxExportError, match=rf"export_onnx: layer .* of class .*{cls} has no ONNX converter"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("opset", [12, MAX_OPSET + 1, "17", 17.0, True, None])
def test_bad_opset(opset, tmp_path):
    model = _sequential(VEC, lambda: [L.Dense(3)])
    with pytest.raises(ValueError, match=r"export_onnx: argument 'opset' must be an int in \[13, 21\]"):
        model.export_onnx(tmp_path / "m.onnx", opset=opset)


def test_bad_path(tmp_path):
    model = _sequential(VEC, lambda: [L.Dense(3)])
    with pytest.raises(TypeError, match="export_onnx: argument 'path' must be a str or os.PathLike, got int"):
        export_onnx(model, 3)
    with pytest.raises(FileNotFoundError, match="export_onnx: the folder .*missing.* does not exist"):
        export_onnx(model, tmp_path / "missing" / "m.onnx")
    with pytest.raises(IsADirectoryError, match="export_onnx: argument 'path' .* is a folder"):
        export_onnx(model, tmp_path)
    with pytest.raises(ValueError, match="does not name a file"):
        export_onnx(model, "")


def test_unbuilt_model():
    model = gpunn.Sequential([L.Dense(3)])
    with pytest.raises(OnnxExportError, match="export_onnx: model .* is not built"):
        to_onnx(model)


def test_subclassed_model_is_refused():
    class Net(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2)

        def call(self, x, training=False):
            return self.dense(x)

    net = Net()
    net.predict(np.zeros((2, 3), np.float32))
    with pytest.raises(OnnxExportError, match="subclassed gpunn.Model.*cannot be traced.*functional.*Sequential twin"):
        to_onnx(net)


def test_float64_model_is_refused():
    model = _sequential(VEC, lambda: [L.Dense(3)]).to_dtype("float64")
    with pytest.raises(OnnxExportError, match="only float32 models export"):
        to_onnx(model)


def test_not_a_model():
    with pytest.raises(TypeError, match="export_onnx: argument 'model' must be a gpunn model or layer, got str"):
        to_onnx("model")


def test_sequential_as_a_layer_of_a_graph(tmp_path):
    gpunn.manual_seed(10)
    x = gpunn.Input(shape=IMG, name="x")
    features = gpunn.Sequential([L.Conv2D(3, 3, activation="relu"), L.BatchNorm(), L.Flatten()])
    model = gpunn.Model(inputs=x, outputs=L.Dense(2)(features(x)))
    _randomize_stats(model, np.random.default_rng(11))
    _check(model, _inputs(IMG), tmp_path)


def test_unbuilt_prelu_activation_is_refused():
    model = gpunn.Sequential([L.Dense(3, activation="prelu")])
    model.build(VEC)  # builds the Dense, not yet its PReLU (its first forward does)
    with pytest.raises(OnnxExportError, match="layer 'PReLU' \\(PReLU\\) is not built yet: run model.predict"):
        to_onnx(model)


def test_weight_norm_with_a_zero_row_is_refused():
    model = _sequential(VEC, lambda: [L.WeightNorm(L.Dense(3))])
    model.layers[0].params["v"].data[:, 1] = 0
    with pytest.raises(OnnxExportError, match="WeightNorm.*zero norm"):
        to_onnx(model)
