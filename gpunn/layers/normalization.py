"""Normalization layers: BatchNorm (through the backend's fused-able ops), LayerNorm, GroupNorm, InstanceNorm.

Every layer normalizes to zero mean and unit (biased) variance over some axes, then applies a
learned affine map gamma * xhat + beta, as PyTorch does. Backward passes are the closed forms,
one pass of sums of dy and dy * xhat, never chained from elementwise pieces.

BatchNorm, GroupNorm and InstanceNorm read the channel axis from `data_format`: axis 1
("channels_first") or the last axis ("channels_last", Keras's axis=-1); a channels_last layer
computes on a channels-first view of its input (see gpunn/layers/data_format.py).
"""
from __future__ import annotations

from typing import Any

from gpunn._checks import positive_int, positive_real, real_arg
from gpunn.backend.ops.norm import stat_dtype
from gpunn.distributed.collectives import all_reduce
from gpunn.distributed.world import world_size
from gpunn.layers.base import Layer
from gpunn.layers.data_format import CHANNELS_LAST, layout_of, resolve_data_format, to_channels_first, to_channels_last


def _channel_shape(ndim: int, c: int) -> tuple[int, ...]:
    return (1, c) + (1,) * (ndim - 2)


class _ChannelAxis:
    """The data_format of a layer that normalizes per channel: which per-sample axis holds the
    channels, and the channels-first views its computation runs on."""

    data_format: str

    def _set_data_format(self, data_format: str | None, where: str, ranks: tuple[int, ...]) -> None:
        self.data_format = resolve_data_format(data_format, where)
        layouts = [layout_of(self.data_format, r) for r in ranks]
        self.input_layout = f"{', '.join(layouts[:-1])} or {layouts[-1]}" if len(layouts) > 1 else layouts[0]

    @property
    def _axis(self) -> int:
        """The channel axis of a per-sample shape (no batch axis)."""
        return -1 if self.data_format == CHANNELS_LAST else 0

    @property
    def _axis_name(self) -> str:
        return "the last axis" if self.data_format == CHANNELS_LAST else "axis 1"

    def _first(self, a: Any) -> Any:
        return to_channels_first(a) if self.data_format == CHANNELS_LAST else a

    def _back(self, a: Any) -> Any:
        return to_channels_last(a) if self.data_format == CHANNELS_LAST else a


class BatchNorm(_ChannelAxis, Layer):
    """Batch normalization (Ioffe and Szegedy 2015) per channel (axis 1) over every other axis.

    Works on (N, C), (N, C, L) and (N, C, H, W); with data_format="channels_last" on (N, C),
    (N, L, C) and (N, H, W, C), per channel on the last axis. Training normalizes with the batch
    mean and biased variance and updates `running_mean` / `running_var` (unbiased variance, momentum as in
    PyTorch); inference uses the running statistics. With `track_running_stats=False` batch
    statistics are used in both modes. A layer whose `trainable` is False (frozen for transfer
    learning) uses its running statistics even in training mode and leaves them unchanged.

    `sync=True` (PyTorch's SyncBatchNorm): in data-parallel training the statistics are those of
    the global batch, every rank's samples together (two small all-reduces forward, one backward);
    in a single process it is plain batch norm. With `sync=False` each rank normalizes its own part.
    """

    input_ndim = (2, 3, 4)
    input_layout = "(N, C), (N, C, L) or (N, C, H, W)"

    def __init__(self, num_features: int | None = None, momentum: float = 0.1, eps: float = 1e-5,
                 affine: bool = True, track_running_stats: bool = True,
                 input_shape: tuple[int, ...] | None = None, name: str | None = None,
                 data_format: str | None = None, sync: bool = False) -> None:
        super().__init__(input_shape=input_shape, name=name)
        where = "BatchNorm"
        if not isinstance(sync, bool):
            raise TypeError(f"{where}: argument 'sync' must be True or False, got {sync!r}")
        self.sync = sync
        self._set_data_format(data_format, where, (2, 3, 4))
        self.num_features = None if num_features is None else positive_int(num_features, "num_features", where)
        self.momentum = real_arg(momentum, "momentum", where, 0, 1, want="a float in [0, 1]", numpy=False)
        self.eps = positive_real(eps, "eps", where, numpy=False)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self._cache: Any = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        c = input_shape[self._axis]
        if self.num_features is not None and c != self.num_features:
            raise ValueError(f"{self.name}.build: argument 'x' must have {self.num_features} channels "
                             f"({self._axis_name}), got per-sample shape {tuple(input_shape)}")
        super().build(input_shape)
        self.num_features = c
        if self.affine:
            self.add_param("gamma", (c,), "ones")
            self.add_param("beta", (c,), "zeros")
        if self.track_running_stats:
            self.add_buffer("running_mean", (c,), 0.0)
            self.add_buffer("running_var", (c,), 1.0)

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        if len(shape) == len(self.input_shape) and shape[self._axis] != self.input_shape[self._axis]:
            raise ValueError(f"{where}: argument 'x' must have {self.input_shape[self._axis]} channels "
                             f"({self._axis_name}) as built, got shape {('N', *shape)}")
        if len(shape) != len(self.input_shape):
            raise ValueError(f"{where}: argument 'x' must have {len(self.input_shape) + 1} dimensions as built, "
                             f"got shape {('N', *shape)}")

    def _affine(self, dtype: Any) -> tuple[Any, Any]:
        if self.affine:
            return self.params["gamma"].data, self.params["beta"].data
        xp = self.backend.xp
        return xp.ones((self.num_features,), dtype=dtype), xp.zeros((self.num_features,), dtype=dtype)

    def forward(self, x: Any, training: bool = False) -> Any:
        return self._forward(x, training, relu=False)

    def fuses_with(self, nxt: Layer) -> bool:
        """Whether Sequential may run this layer and `nxt` as one: a BatchNorm followed by a ReLU."""
        from gpunn.layers.activations import ReLU  # late: activations sit beside this module
        return type(nxt) is ReLU

    def forward_fused(self, x: Any, nxt: Layer, training: bool = False) -> Any:
        """max(forward(x), 0) for the ReLU `nxt`, with the ReLU in the backend's normalize pass
        when the batch statistics are used; backward() then applies the ReLU's mask as well."""
        y = self._forward(x, training, relu=True)
        nxt._saved = y  # type: ignore[attr-defined] - what its own forward would have kept
        return y

    def _forward(self, x: Any, training: bool, relu: bool) -> Any:
        x = self._first(self._prepare(x))  # channels on axis 1, whatever the layout
        be = self.backend
        gamma, beta = self._affine(x.dtype)
        use_batch = (training and self.trainable) or not self.track_running_stats
        relu_y = None
        if use_batch:
            if x.size // x.shape[1] < 2:
                raise ValueError(f"{self.name}.forward: training needs more than one value per channel to estimate "
                                 f"a variance; got argument 'x' of shape {tuple(x.shape)}. A last batch of one "
                                 "sample does this: use DataLoader(..., drop_last=True), or a batch_size that "
                                 "leaves no batch of one sample (n % batch_size != 1)")
            rm = self.buffers.get("running_mean") if training else None
            rv = self.buffers.get("running_var") if training else None
            if self._synced():
                y, mean, invstd = be.batchnorm_sync_forward_train(x, gamma, beta, rm, rv, self.momentum, self.eps,
                                                                  _sum_across_ranks)
                if relu:
                    y = relu_y = be.relu_forward(y)
            elif relu:
                y, mean, invstd = be.batchnorm_relu_forward_train(x, gamma, beta, rm, rv, self.momentum, self.eps)
                relu_y = y
            else:
                y, mean, invstd = be.batchnorm_forward_train(x, gamma, beta, rm, rv, self.momentum, self.eps)
        else:
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            y = be.batchnorm_forward_infer(x, gamma, beta, rm, rv, self.eps)
            # the statistics are constants here, so backward is the affine map's
            acc = stat_dtype(x.dtype)
            mean = rm.astype(acc, copy=False)
            invstd = 1.0 / be.xp.sqrt(rv.astype(acc, copy=False) + acc.type(self.eps))
            if relu:
                y = relu_y = be.relu_forward(y)
        self._cache = (x, gamma, mean, invstd, use_batch, relu_y)  # channels first, as the ops keep them
        return self._back(y)

    def backward(self, dy: Any) -> Any:
        x, gamma, mean, invstd, use_batch, relu_y = self._need_cache("_cache")
        dy = self._first(dy)
        if use_batch and self._synced():
            if relu_y is not None:
                dy = self.backend.relu_backward(dy, relu_y)
            dx, dgamma, dbeta = self.backend.batchnorm_sync_backward(dy, x, gamma, mean, invstd, _sum_across_ranks)
        elif use_batch and relu_y is not None:
            dx, dgamma, dbeta = self.backend.batchnorm_relu_backward(dy, relu_y, x, gamma, mean, invstd)
        elif use_batch:
            dx, dgamma, dbeta = self.backend.batchnorm_backward(dy, x, gamma, mean, invstd)
        else:
            if relu_y is not None:
                dy = self.backend.relu_backward(dy, relu_y)
            shape = _channel_shape(x.ndim, x.shape[1])
            axes = (0, *range(2, x.ndim))
            xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
            dgamma, dbeta = (dy * xhat).sum(axis=axes), dy.sum(axis=axes)
            dx = (dy * (gamma * invstd).reshape(shape)).astype(x.dtype, copy=False)
        if self.affine:
            self.params["gamma"].grad += dgamma
            self.params["beta"].grad += dbeta
        return self._back(dx)


    def _synced(self) -> bool:
        return self.sync and world_size() > 1



def _sum_across_ranks(v: Any) -> Any:
    return all_reduce(v, "sum")


def _normalize(x3: Any, eps: float, xp: Any) -> tuple[Any, Any]:
    """Normalize x3 over its last axis: (xhat, invstd) with invstd keeping a trailing axis of 1."""
    acc = stat_dtype(x3.dtype)
    xa = x3.astype(acc, copy=False)
    centered = xa - xa.mean(axis=-1, keepdims=True)
    var = (centered * centered).mean(axis=-1, keepdims=True)
    invstd = 1.0 / xp.sqrt(var + acc.type(eps))
    return centered * invstd, invstd


def _normalize_backward(dxhat: Any, xhat: Any, invstd: Any) -> Any:
    """dx from d(xhat) for a normalization over the last axis (closed form, one pass of sums)."""
    m = xhat.shape[-1]
    s1 = dxhat.sum(axis=-1, keepdims=True)
    s2 = (dxhat * xhat).sum(axis=-1, keepdims=True)
    return invstd * (dxhat - (s1 + xhat * s2) / m)


class BatchNormalization(BatchNorm):
    """Keras's BatchNormalization: BatchNorm with Keras's meaning and defaults of its arguments.

    Keras keeps running = momentum * running + (1 - momentum) * batch with momentum 0.99, PyTorch
    (and BatchNorm) running = (1 - momentum) * running + momentum * batch with 0.1: the same
    number means opposite things, so an alias would have made Keras's momentum=0.99 keep almost
    only the last batch. Here `momentum` is Keras's (BatchNorm gets 1 - momentum), `epsilon`
    defaults to Keras's 1e-3, `center` / `scale` are Keras's (gpunn's affine: both or neither), and
    `axis` may be 1 (channels_first) or -1 (channels_last, as in Keras; None: the layer default
    of gpunn.layers.image_data_format())."""

    def __init__(self, axis: int | None = None, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, input_shape: tuple[int, ...] | None = None, name: str | None = None,
                 data_format: str | None = None, synchronized: bool = False) -> None:
        where = "BatchNormalization"
        keras_momentum = real_arg(momentum, "momentum", where, 0, 1, want="a float in [0, 1]", numpy=False)
        if bool(center) != bool(scale):
            raise ValueError(f"{where}: arguments 'center' and 'scale' must be both True or both False (gpunn's "
                             f"affine), got center={center!r}, scale={scale!r}")
        if axis is not None:
            if axis not in (1, -1) or isinstance(axis, bool):
                raise ValueError(f"{where}: argument 'axis' must be 1 (channels_first), -1 (channels_last) or None, "
                                 f"got {axis!r}")
            by_axis = "channels_first" if axis == 1 else CHANNELS_LAST
            if data_format is not None and data_format != by_axis:
                raise ValueError(f"{where}: argument 'axis'={axis} reads {by_axis} but 'data_format' is "
                                 f"{data_format!r}; give one of them")
            data_format = by_axis
        if not isinstance(synchronized, bool):
            raise TypeError(f"{where}: argument 'synchronized' must be True or False, got {synchronized!r}")
        super().__init__(momentum=1.0 - keras_momentum, eps=epsilon, affine=bool(center),
                         input_shape=input_shape, name=name, data_format=data_format, sync=synchronized)
        self.keras_momentum = keras_momentum

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, in Keras's meaning (so that a saved model loads as it was)."""
        return {"momentum": self.keras_momentum, "epsilon": self.eps, "center": self.affine, "scale": self.affine,
                "name": self.name, "data_format": self.data_format, "synchronized": self.sync}


class LayerNorm(Layer):
    """Normalize each sample over its last `normalized_ndim` axes; gamma and beta have those axes' shape."""

    def __init__(self, normalized_ndim: int = 1, eps: float = 1e-5, affine: bool = True,
                 input_shape: tuple[int, ...] | None = None, name: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self.normalized_ndim = positive_int(normalized_ndim, "normalized_ndim", "LayerNorm")
        self.eps = positive_real(eps, "eps", "LayerNorm", numpy=False)
        self.affine = bool(affine)
        self._cache: Any = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        k = self.normalized_ndim
        if len(input_shape) < k:
            raise ValueError(f"{self.name}.build: argument 'x' must have at least {k} axes after the batch axis "
                             f"for normalized_ndim={k}, got per-sample shape {tuple(input_shape)}")
        super().build(input_shape)
        norm_shape = tuple(input_shape[len(input_shape) - k:])
        if self.affine:
            self.add_param("gamma", norm_shape, "ones")
            self.add_param("beta", norm_shape, "zeros")

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        k = self.normalized_ndim
        want = self.input_shape[len(self.input_shape) - k:]
        if len(shape) < k or tuple(shape[len(shape) - k:]) != want:
            raise ValueError(f"{where}: argument 'x' must end in axes {want} as built, got shape {('N', *shape)}")

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        k = self.normalized_ndim
        lead = x.shape[:x.ndim - k]
        xhat, invstd = _normalize(x.reshape(*lead, -1), self.eps, self.backend.xp)
        xhat = xhat.reshape(x.shape)
        self._cache = (xhat, invstd)
        if not self.affine:
            return xhat.astype(x.dtype, copy=False)
        y = xhat * self.params["gamma"].data + self.params["beta"].data
        return y.astype(x.dtype, copy=False)

    def backward(self, dy: Any) -> Any:
        xhat, invstd = self._need_cache("_cache")
        k = self.normalized_ndim
        lead_axes = tuple(range(dy.ndim - k))
        if self.affine:
            self.params["gamma"].grad += (dy * xhat).sum(axis=lead_axes)
            self.params["beta"].grad += dy.sum(axis=lead_axes)
            dxhat = dy * self.params["gamma"].data
        else:
            dxhat = dy
        lead = dy.shape[:dy.ndim - k]
        dx = _normalize_backward(dxhat.reshape(*lead, -1), xhat.reshape(*lead, -1), invstd)
        return dx.reshape(dy.shape).astype(dy.dtype, copy=False)


class GroupNorm(_ChannelAxis, Layer):
    """Split the channels (axis 1, or the last axis with data_format="channels_last") into `groups`
    and normalize each sample's group over its channels and spatial axes (Wu and He 2018). gamma and
    beta are per channel. groups must divide C."""

    input_ndim = (2, 3, 4)
    input_layout = "(N, C), (N, C, L) or (N, C, H, W)"
    _ranks = (2, 3, 4)

    def __init__(self, groups: int, eps: float = 1e-5, affine: bool = True,
                 input_shape: tuple[int, ...] | None = None, name: str | None = None,
                 data_format: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self._set_data_format(data_format, type(self).__name__, self._ranks)
        self.groups = positive_int(groups, "groups", type(self).__name__)
        self.eps = positive_real(eps, "eps", type(self).__name__, numpy=False)
        self.affine = bool(affine)
        self._cache: Any = None

    def _groups_for(self, channels: int) -> int:
        return self.groups

    def build(self, input_shape: tuple[int, ...]) -> None:
        c = input_shape[self._axis]
        g = self._groups_for(c)
        if c % g:
            raise ValueError(f"{self.name}.build: argument 'groups'={g} must divide the number of channels, "
                             f"got {c} channels (per-sample shape {tuple(input_shape)})")
        super().build(input_shape)
        if self.affine:
            self.add_param("gamma", (c,), "ones")
            self.add_param("beta", (c,), "zeros")

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        if shape[self._axis] != self.input_shape[self._axis]:
            raise ValueError(f"{where}: argument 'x' must have {self.input_shape[self._axis]} channels "
                             f"({self._axis_name}) as built, got shape {('N', *shape)}")

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._first(self._prepare(x))  # channels on axis 1, whatever the layout
        n, c = x.shape[:2]
        g = self._groups_for(c)
        xhat, invstd = _normalize(x.reshape(n, g, -1), self.eps, self.backend.xp)
        xhat = xhat.reshape(x.shape)
        self._cache = (xhat, invstd, g)
        if not self.affine:
            return self._back(xhat.astype(x.dtype, copy=False))
        shape = _channel_shape(x.ndim, c)
        y = xhat * self.params["gamma"].data.reshape(shape) + self.params["beta"].data.reshape(shape)
        return self._back(y.astype(x.dtype, copy=False))

    def backward(self, dy: Any) -> Any:
        xhat, invstd, g = self._need_cache("_cache")
        dy = self._first(dy)
        n, c = dy.shape[:2]
        shape = _channel_shape(dy.ndim, c)
        if self.affine:
            axes = (0, *range(2, dy.ndim))
            self.params["gamma"].grad += (dy * xhat).sum(axis=axes)
            self.params["beta"].grad += dy.sum(axis=axes)
            dxhat = dy * self.params["gamma"].data.reshape(shape)
        else:
            dxhat = dy
        dx = _normalize_backward(dxhat.reshape(n, g, -1), xhat.reshape(n, g, -1), invstd)
        return self._back(dx.reshape(dy.shape).astype(dy.dtype, copy=False))


class InstanceNorm(GroupNorm):
    """Normalize each sample's channel over its spatial axes (Ulyanov et al. 2016): GroupNorm with one
    group per channel. Unlike PyTorch's InstanceNorm2d (affine=False by default), the learned
    per-channel affine map is on by default, matching the other layers here."""

    input_ndim = (3, 4)
    input_layout = "(N, C, L) or (N, C, H, W)"
    _ranks = (3, 4)

    def __init__(self, eps: float = 1e-5, affine: bool = True, input_shape: tuple[int, ...] | None = None,
                 name: str | None = None, data_format: str | None = None) -> None:
        super().__init__(1, eps=eps, affine=affine, input_shape=input_shape, name=name, data_format=data_format)

    def _groups_for(self, channels: int) -> int:
        return channels
