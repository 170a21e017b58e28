"""Activation layers, usable alone or as `activation="name"` on Dense and Conv2D.

Each keeps only what its derivative needs (the output for sigmoid/tanh/softmax, a mask for
ReLU). Forms are chosen to be overflow-free in float32 at |x| = 1e4.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from gpunn._checks import axis_arg, check_axis, nonneg_real
from gpunn.init import constant as init_constant
from gpunn.layers.base import Layer


def _sigmoid(x: Any, xp: Any) -> Any:
    """Overflow-free logistic: exp(-|x|) is always in (0, 1]."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


# Measured against scipy.special.erfc on [0, 30]: relative error below 3e-13 (fewer terms, e.g.
# 26 and 40, already cost an order of magnitude). The cost is ~80 elementwise passes per call.
_ERF_SERIES_TERMS = 32  # positive series on |z| < 2
_ERFC_FRACTION_DEPTH = 50  # continued fraction on |z| >= 2


def _erfc_abs(a: Any, xp: Any) -> Any:
    """erfc(a) for a >= 0 to float64 precision with elementwise xp ops only (NumPy has no erf, and
    layers do not import SciPy or cupyx). Small a: erf(a) = 2/sqrt(pi) exp(-a^2) sum 2^n a^(2n+1)/(2n+1)!!,
    a series of positive terms (no cancellation). Large a: the Laplace continued fraction for
    erfc, which keeps the relative accuracy of the tiny tail."""
    s = xp.minimum(a, 2.0)
    term = s
    total = s
    for n in range(_ERF_SERIES_TERMS):
        term = term * (2.0 * s * s) / (2 * n + 3)
        total = total + term
    erf_small = (2.0 / math.sqrt(math.pi)) * xp.exp(-s * s) * total
    b = xp.maximum(a, 2.0)
    f = b
    for k in range(_ERFC_FRACTION_DEPTH, 0, -1):
        f = b + (k / 2.0) / f
    erfc_big = xp.exp(-b * b) / (math.sqrt(math.pi) * f)  # exp underflows to 0 for huge b: harmless
    return xp.where(a < 2.0, 1.0 - erf_small, erfc_big).astype(a.dtype, copy=False)


def _normal_cdf(x: Any, xp: Any) -> Any:
    """Phi(x) = erfc(-x/sqrt 2)/2, from the accurate tail on whichever side is small."""
    c = 0.5 * _erfc_abs(xp.abs(x) * (1.0 / math.sqrt(2.0)), xp)
    return xp.where(x < 0, c, 1.0 - c).astype(x.dtype, copy=False)


class _ActivationMeta(type):
    """Lets the base class be called Keras-style: `Activation("relu")` builds the activation that
    name registers (a ReLU), while `Activation(name=...)` and every subclass construct as usual.
    Dispatching in the metaclass, not in __new__, keeps Python from re-running __init__ on the
    layer built (a Softmax would take "softmax" for its axis)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Activation and (args or "activation" in kwargs):
            return _named_activation(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    @property
    def __signature__(cls) -> inspect.Signature:
        """The constructor's signature (what inspect.signature(cls) reports: gpunn.io checks saved
        arguments against it), not the dispatching __call__'s (*args, **kwargs)."""
        sig = inspect.signature(cls.__init__)
        return sig.replace(parameters=list(sig.parameters.values())[1:])


class Activation(Layer, metaclass=_ActivationMeta):
    """Base for elementwise activations: any rank, shape-preserving.

    Called with an activation, as in Keras - `Activation("relu")`, `Activation("softmax",
    name="probs")`, `Activation(activation="tanh")` - it returns that activation's layer (the
    names of get_activation). Subclasses call it as `super().__init__(name=..., input_shape=...)`."""

    def __init__(self, name: str | None = None, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self._saved: Any = None

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        pass  # shape-free: one activation object may see any shape

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        y, self._saved = self._forward(x)
        return y

    def backward(self, dy: Any) -> Any:
        return self._backward(dy, self._need_cache("_saved"))

    def _forward(self, x: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def _backward(self, dy: Any, saved: Any) -> Any:
        raise NotImplementedError


class Linear(Activation):
    """The identity: linear output for regression."""

    def _forward(self, x):
        return x, True

    def _backward(self, dy, saved):
        return dy


class ReLU(Activation):
    def _forward(self, x):
        y = self.backend.relu_forward(x)
        return y, y

    def _backward(self, dy, y):
        return self.backend.relu_backward(dy, y)


class Sigmoid(Activation):
    def _forward(self, x):
        # 1/(1+exp(-x)) overflows for x << 0; _sigmoid uses exp(-|x|), always in (0, 1].
        y = _sigmoid(x, self.backend.xp)
        return y, y

    def _backward(self, dy, y):
        return dy * y * (1 - y)


class Tanh(Activation):
    def _forward(self, x):
        y = self.backend.xp.tanh(x)
        return y, y

    def _backward(self, dy, y):
        return dy * (1 - y * y)


class Softmax(Activation):
    """softmax along `axis` (an int; negative counts from the end), checked against each input's rank.
    In float32 even inside a mixed-precision step (as torch.autocast), it and LogSoftmax."""

    autocast = False

    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        super().__init__(name=name)
        self.axis = axis_arg(axis, "axis", type(self).__name__)

    def _prepare(self, x: Any, where: str = "forward") -> Any:
        x = super()._prepare(x, where)
        check_axis(self.axis, tuple(x.shape), "axis", f"{self.name}.{where}")
        return x

    def _forward(self, x):
        xp = self.backend.xp
        z = x - x.max(axis=self.axis, keepdims=True)
        e = xp.exp(z)
        y = e / e.sum(axis=self.axis, keepdims=True)
        return y, y

    def _backward(self, dy, y):
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))



class LeakyReLU(Activation):
    """x for x > 0, alpha * x otherwise (alpha = 0.01 by default)."""

    def __init__(self, alpha: float = 0.01, name: str | None = None) -> None:
        super().__init__(name=name)
        self.alpha = nonneg_real(alpha, "alpha", "LeakyReLU", numpy=False)

    def _forward(self, x):
        slope = self.backend.xp.where(x > 0, 1.0, self.alpha).astype(x.dtype, copy=False)
        return x * slope, slope

    def _backward(self, dy, slope):
        return dy * slope


class ELU(Activation):
    """x for x > 0, alpha * (exp(x) - 1) otherwise (Clevert et al. 2015)."""

    def __init__(self, alpha: float = 1.0, name: str | None = None) -> None:
        super().__init__(name=name)
        self.alpha = nonneg_real(alpha, "alpha", type(self).__name__, numpy=False)
        self.scale = 1.0

    def _forward(self, x):
        xp = self.backend.xp
        # expm1 only sees the non-positive part, so large positive x cannot overflow
        neg = self.alpha * xp.expm1(xp.minimum(x, 0))
        pos = x > 0
        y = self.scale * xp.where(pos, x, neg)
        # derivative: scale for x > 0, scale * (neg + alpha) otherwise
        grad = self.scale * xp.where(pos, 1.0, neg + self.alpha)
        return y.astype(x.dtype, copy=False), grad.astype(x.dtype, copy=False)

    def _backward(self, dy, grad):
        return dy * grad


class SELU(ELU):
    """Self-normalizing ELU (Klambauer et al. 2017) with its fixed alpha and scale."""

    ALPHA = 1.6732632423543772848170429916717
    SCALE = 1.0507009873554804934193349852946

    def __init__(self, name: str | None = None) -> None:
        super().__init__(alpha=self.ALPHA, name=name)
        self.scale = self.SCALE


class ReLU6(Activation):
    """min(max(x, 0), 6)."""

    def _forward(self, x):
        mask = (x > 0) & (x < 6)
        return self.backend.xp.clip(x, 0, 6), mask

    def _backward(self, dy, mask):
        return dy * mask


class CReLU(Activation):
    """Concatenated ReLU (Shang et al. 2016): [relu(x), relu(-x)] on the channel axis (1), doubling it."""

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}: argument 'x' must have a channel axis (N, C, ...), got per-sample "
                             f"shape {input_shape}")
        return (2 * input_shape[0], *input_shape[1:])

    def _forward(self, x):
        if x.ndim < 2:
            raise ValueError(f"{self.name}.forward: argument 'x' must have a channel axis (N, C, ...), "
                             f"got shape {tuple(x.shape)}")
        xp = self.backend.xp
        pos = x > 0
        neg = x < 0
        return xp.concatenate([x * pos, -x * neg], axis=1), (pos, neg)

    def _backward(self, dy, saved):
        pos, neg = saved
        c = pos.shape[1]
        return dy[:, :c] * pos - dy[:, c:] * neg


class Softplus(Activation):
    """log(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|)); its derivative is sigmoid(x)."""

    def _forward(self, x):
        xp = self.backend.xp
        y = xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
        return y.astype(x.dtype, copy=False), x

    def _backward(self, dy, x):
        return dy * _sigmoid(x, self.backend.xp)


class Softsign(Activation):
    """x / (1 + |x|); derivative 1 / (1 + |x|)^2."""

    def _forward(self, x):
        d = 1 + self.backend.xp.abs(x)
        return x / d, d

    def _backward(self, dy, d):
        return dy / (d * d)


class GELU(Activation):
    """x * Phi(x) (Hendrycks and Gimpel 2016); approximate="tanh" uses the tanh form."""

    _C = math.sqrt(2.0 / math.pi)
    _K = 0.044715

    def __init__(self, approximate: str = "none", name: str | None = None) -> None:
        super().__init__(name=name)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _forward(self, x):
        xp = self.backend.xp
        if self.approximate == "tanh":
            x2 = x * x  # 1e8 at |x| = 1e4: fine in float32, and tanh saturates without overflow
            t = xp.tanh(self._C * x * (1 + self._K * x2))
            y = 0.5 * x * (1 + t)
            grad = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * self._C * (1 + 3 * self._K * x2)
        else:
            cdf = _normal_cdf(x, xp)
            pdf = xp.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
            y = x * cdf
            grad = cdf + x * pdf
        return y.astype(x.dtype, copy=False), grad.astype(x.dtype, copy=False)

    def _backward(self, dy, grad):
        return dy * grad


class SiLU(Activation):
    """x * sigmoid(x) (also called Swish); derivative s + x * s * (1 - s)."""

    def _forward(self, x):
        s = _sigmoid(x, self.backend.xp)
        return x * s, (x, s)

    def _backward(self, dy, saved):
        x, s = saved
        return dy * (s * (1 + x * (1 - s)))


Swish = SiLU


class LogSoftmax(Softmax):
    """log softmax along `axis`, by log-sum-exp; backward dy - softmax * sum(dy)."""

    def _forward(self, x):
        xp = self.backend.xp
        z = x - x.max(axis=self.axis, keepdims=True)
        y = z - xp.log(xp.exp(z).sum(axis=self.axis, keepdims=True))
        return y, y

    def _backward(self, dy, y):
        return dy - self.backend.xp.exp(y) * dy.sum(axis=self.axis, keepdims=True)


class PReLU(Layer):
    """LeakyReLU with a learned slope per channel (axis 1), or one shared slope (He et al. 2015).

    The slope starts at 0.25 (`alpha_initializer`, as in the paper and PyTorch)."""

    def __init__(self, shared: bool = False, alpha_initializer: Any = 0.25, input_shape: tuple[int, ...] | None = None,
                 name: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self.shared = bool(shared)
        if isinstance(alpha_initializer, (int, float)) and not isinstance(alpha_initializer, bool):
            alpha_initializer = init_constant(float(alpha_initializer))
        self.alpha_initializer = alpha_initializer
        self._cache: Any = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        if not self.shared and len(input_shape) < 1:
            raise ValueError(f"{self.name}.build: a per-channel slope needs inputs (N, C, ...), got per-sample shape "
                             f"{tuple(input_shape)}")
        super().build(input_shape)
        self.add_param("alpha", (1,) if self.shared else (input_shape[0],), self.alpha_initializer)

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        if not self.shared and shape[:1] != self.input_shape[:1]:
            raise ValueError(f"{where}: argument 'x' must have {self.input_shape[0]} channels (axis 1) as built, "
                             f"got shape {('N', *shape)}")

    def _alpha(self, ndim: int) -> Any:
        a = self.params["alpha"].data
        return a.reshape((1, -1) + (1,) * (ndim - 2)) if not self.shared else a.reshape(())

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        neg = x <= 0
        self._cache = (x, neg)
        return self.backend.xp.where(neg, self._alpha(x.ndim) * x, x).astype(x.dtype, copy=False)

    def backward(self, dy: Any) -> Any:
        x, neg = self._need_cache("_cache")
        da = dy * x * neg
        self.params["alpha"].grad += da.sum().reshape(1) if self.shared else da.sum(axis=(0, *range(2, x.ndim)))
        return self.backend.xp.where(neg, self._alpha(x.ndim) * dy, dy).astype(dy.dtype, copy=False)


_REGISTRY: dict[str, Callable[[], Layer]] = {
    "linear": Linear, "identity": Linear, "relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax,
    "leaky_relu": LeakyReLU, "leakyrelu": LeakyReLU, "prelu": PReLU, "elu": ELU, "selu": SELU, "relu6": ReLU6,
    "crelu": CReLU, "softplus": Softplus, "softsign": Softsign, "gelu": GELU,
    "gelu_tanh": lambda: GELU(approximate="tanh"), "silu": SiLU, "swish": SiLU,
    "log_softmax": LogSoftmax, "logsoftmax": LogSoftmax,
}


def _named_activation(activation: Any = None, name: str | None = None,
                      input_shape: tuple[int, ...] | None = None) -> Layer:
    """`Activation(activation, name=None, input_shape=None)`, Keras's signature: the layer
    get_activation builds for `activation` (a registered name, or a Layer returned as is), given
    `name` and `input_shape` as if passed to its constructor."""
    where = "Activation"
    if isinstance(activation, Layer):
        if name is not None or input_shape is not None:
            raise ValueError(f"{where}: arguments 'name' and 'input_shape' apply to a named activation, not to "
                             f"the layer {activation.name!r} given as 'activation'")
        return activation
    if not isinstance(activation, str) or activation.lower() not in _REGISTRY:
        raise ValueError(f"{where}: argument 'activation' must be a Layer or one of {sorted(_REGISTRY)}, got "
                         f"{activation!r}; to subclass Activation, call super().__init__(name=...)")
    layer = _REGISTRY[activation.lower()]()
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"{where}: argument 'name' must be a str, got {type(name).__name__}")
        layer.name = name
    if input_shape is not None:
        # as Layer.__init__ takes it: a declared input shape is a contract
        layer.input_shape = layer._declared_shape = tuple(input_shape)
    return layer


def register_activation(name: str, factory: Callable[[], Layer]) -> None:
    _REGISTRY[name.lower()] = factory


def get_activation(spec: str | Layer | None) -> Layer | None:
    """An activation layer from a name, a layer instance, or None (no activation)."""
    if spec is None:
        return None
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, str) and spec.lower() in _REGISTRY:
        return _REGISTRY[spec.lower()]()
    raise ValueError(f"get_activation: argument 'activation' must be None, a Layer, or one of "
                     f"{sorted(_REGISTRY)}, got {spec!r}")


#: what output_activation reports, by the layer's class (LogSoftmax before Softmax, its base)
_OUTPUT_KINDS: tuple[tuple[type, str], ...] = ((LogSoftmax, "log_softmax"), (Softmax, "softmax"),
                                               (Sigmoid, "sigmoid"))


def output_activation(layer: Any) -> str | None:
    """The activation a layer's output ends in: "softmax", "sigmoid", "log_softmax", or None
    (anything else, e.g. a Dense without activation: logits). It looks through a Chain's (a
    Sequential's) last layer, a layer's `activation=` (Dense, Conv2D, ...) and a wrapper's inner
    layer (WeightNorm). A custom layer whose output is one of these declares it with a class
    attribute, e.g. `output_activation = "softmax"`. losses.match_output reads the answer."""
    declared = getattr(type(layer), "output_activation", None)
    if isinstance(declared, str) and declared in ("softmax", "sigmoid", "log_softmax"):
        return declared
    for cls, kind in _OUTPUT_KINDS:
        if isinstance(layer, cls):
            return kind
    layers = getattr(layer, "layers", None)
    if isinstance(layers, list):
        return output_activation(layers[-1]) if layers else None
    children = getattr(layer, "children", None)
    if isinstance(children, dict):
        if isinstance(children.get("activation"), Layer):
            return output_activation(children["activation"])
        if len(children) == 1 and isinstance(children.get("layer"), Layer):
            return output_activation(children["layer"])  # a wrapper (WeightNorm) outputs its layer's output
    return None
