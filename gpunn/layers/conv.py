"""Conv2D over NCHW, or NHWC with data_format="channels_last": im2col + GEMM through the backend's
conv2d ops, which read NCHW (a channels_last layer hands them transposed views: see
gpunn/layers/data_format.py). The weight is (filters, in_channels, kh, kw) in both layouts."""
from __future__ import annotations

from typing import Any

from gpunn._checks import pair, positive_int
from gpunn.backend.ops.geometry import conv_output_size
from gpunn.layers.activations import ReLU
from gpunn.layers.base import Layer
from gpunn.layers.data_format import (CHANNELS_LAST, channels_first_shape, channels_last_shape, layout_hint, layout_of,
                                      resolve_data_format, to_channels_first, to_channels_last,
                                      warn_if_transposed)
from gpunn.layers.kernel_options import add_penalty_gradient, attach_kernel_options


def resolve_padding(padding: Any, kernel: tuple[int, int], strides: tuple[int, int], dilation: tuple[int, int],
                    where: str) -> tuple[int, int]:
    """"valid" -> 0, "same" -> keeps H and W at stride 1 (odd effective kernel), else an int or pair."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0
        if mode == "same":
            if strides != (1, 1):
                raise ValueError(f"{where}: padding='same' needs strides=1, got strides={strides}; "
                                 "give the padding as an int or pair instead")
            span = [d * (k - 1) for k, d in zip(kernel, dilation)]
            if any(s % 2 for s in span):
                raise ValueError(f"{where}: padding='same' needs an odd effective kernel size, got kernel_size="
                                 f"{kernel} with dilation={dilation}")
            return span[0] // 2, span[1] // 2
        raise ValueError(f"{where}: argument 'padding' must be 'valid', 'same', an int or a pair, got {padding!r}")
    return pair(padding, "padding", where, minimum=0)


class Conv2D(Layer):
    """2-D convolution (cross-correlation) of `filters` kernels of `kernel_size` over (N, C, H, W)
    inputs, or (N, H, W, C) ones with `data_format="channels_last"` (None: the default of
    gpunn.layers.image_data_format(), "channels_first" unless set)."""

    input_ndim = 4
    input_layout = "(N, C, H, W)"

    def __init__(self, filters: int, kernel_size: int | tuple[int, int], strides: int | tuple[int, int] = 1,
                 padding: str | int | tuple[int, int] = "valid", dilation: int | tuple[int, int] = 1,
                 activation: str | Layer | None = None, use_bias: bool = True, kernel_initializer: Any = "he_normal",
                 bias_initializer: Any = "zeros", input_shape: tuple[int, ...] | None = None,
                 name: str | None = None, kernel_regularizer: Any = None,
                 kernel_constraint: Any = None, data_format: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self.data_format = resolve_data_format(data_format, "Conv2D")
        self.input_layout = layout_of(self.data_format)
        self.filters = positive_int(filters, "filters", "Conv2D")
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2D", minimum=1)
        self.strides = pair(strides, "strides", "Conv2D", minimum=1)
        self.dilation = pair(dilation, "dilation", "Conv2D", minimum=1)
        self.padding = resolve_padding(padding, self.kernel_size, self.strides, self.dilation, "Conv2D")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        attach_kernel_options(self, activation, kernel_regularizer, kernel_constraint)
        self._cache: Any = None
        self.needs_input_grad = True  # a first layer may turn this off to skip col2im

    def build(self, input_shape: tuple[int, ...]) -> None:
        super().build(input_shape)
        warn_if_transposed(tuple(input_shape), self.data_format, f"{self.name}.build")
        channels = channels_first_shape(input_shape, self.data_format)[0]
        kh, kw = self.kernel_size
        fans = (channels * kh * kw, self.filters * kh * kw)
        self.add_param("weight", (self.filters, channels, kh, kw), self.kernel_initializer, fans=fans)
        if self.use_bias:
            self.add_param("bias", (self.filters,), self.bias_initializer, fans=fans)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        _, h, w = channels_first_shape(input_shape, self.data_format)
        oh = conv_output_size(h, self.kernel_size[0], self.strides[0], self.padding[0], self.dilation[0])
        ow = conv_output_size(w, self.kernel_size[1], self.strides[1], self.padding[1], self.dilation[1])
        if oh < 1 or ow < 1:
            built = channels_first_shape(self.input_shape, self.data_format)[0] if self.built else None
            raise ValueError(f"{self.name}: input of spatial size {(h, w)} is smaller than the kernel "
                             f"{self.kernel_size} (dilation {self.dilation}, padding {self.padding})"
                             f"{layout_hint(tuple(input_shape), self.data_format, built)}")
        return channels_last_shape((self.filters, oh, ow), self.data_format)

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        axis = -1 if self.data_format == CHANNELS_LAST else 0  # per sample; axis 3 or 1 of the batch
        built = self.input_shape[axis]
        if shape[axis] != built:
            raise ValueError(f"{where}: argument 'x' must have {built} channels (axis {3 if axis else 1}) as built, "
                             f"got shape {('N', *shape)}{layout_hint(shape, self.data_format, built)}")
        self.compute_output_shape(shape)

    def _check_declared_shape(self, x: Any, label: str) -> None:
        try:
            super()._check_declared_shape(x, label)
        except ValueError as exc:
            declared = channels_first_shape(self._declared_shape, self.data_format)[0]
            raise ValueError(f"{exc}{layout_hint(tuple(x.shape[1:]), self.data_format, declared)}") from None

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        last = self.data_format == CHANNELS_LAST
        xc = to_channels_first(x) if last else x  # a view: the op copies only if it needs to
        bias = self.params["bias"].data if self.use_bias else None
        act = self.children.get("activation")
        fuse = type(act) is ReLU  # the backend applies it in its output pass
        y, cols = self.backend.conv2d_forward(xc, self.params["weight"].data, bias, self.strides, self.padding,
                                              self.dilation, relu=fuse)
        self._cache = (xc.shape, cols, y if fuse else None)  # all NCHW, as the backend op keeps them
        if act is not None and not fuse:
            # on NCHW in both layouts: activations read the channels on axis 1 (Softmax, PReLU, CReLU)
            y = act.forward(y, training)
        return to_channels_last(y) if last else y

    def backward(self, dy: Any) -> Any:
        x_shape, cols, relu_y = self._need_cache("_cache")
        last = self.data_format == CHANNELS_LAST
        if last:
            dy = to_channels_first(dy)
        act = self.children.get("activation")
        if act is not None and relu_y is None:
            dy = act.backward(dy)
        w = self.params["weight"]
        dx, dw, db = self.backend.conv2d_backward(dy, x_shape, w.data, cols, self.strides, self.padding,
                                                  self.dilation, need_dx=self.needs_input_grad, relu_y=relu_y)
        w.grad += dw
        add_penalty_gradient(self, w)
        if self.use_bias:
            self.params["bias"].grad += db
        return to_channels_last(dx) if last and dx is not None else dx
