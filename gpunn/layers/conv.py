"""Conv2D over NCHW: im2col + GEMM through the backend's conv2d ops."""
from __future__ import annotations

from typing import Any

from gpunn._checks import pair, positive_int
from gpunn.backend.ops.geometry import conv_output_size
from gpunn.layers.activations import ReLU
from gpunn.layers.base import Layer
from gpunn.layers.kernel_options import attach_kernel_options


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
    input_ndim = 4
    input_layout = "(N, C, H, W)"

    def __init__(self, filters: int, kernel_size: int | tuple[int, int], strides: int | tuple[int, int] = 1,
                 padding: str | int | tuple[int, int] = "valid", dilation: int | tuple[int, int] = 1,
                 activation: str | Layer | None = None, use_bias: bool = True, kernel_initializer: Any = "he_normal",
                 bias_initializer: Any = "zeros", input_shape: tuple[int, ...] | None = None,
                 name: str | None = None, kernel_regularizer: Any = None,
                 kernel_constraint: Any = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
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
        channels = input_shape[0]
        kh, kw = self.kernel_size
        fans = (channels * kh * kw, self.filters * kh * kw)
        self.add_param("weight", (self.filters, channels, kh, kw), self.kernel_initializer, fans=fans)
        if self.use_bias:
            self.add_param("bias", (self.filters,), self.bias_initializer, fans=fans)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        _, h, w = input_shape
        oh = conv_output_size(h, self.kernel_size[0], self.strides[0], self.padding[0], self.dilation[0])
        ow = conv_output_size(w, self.kernel_size[1], self.strides[1], self.padding[1], self.dilation[1])
        if oh < 1 or ow < 1:
            raise ValueError(f"{self.name}: input of spatial size {(h, w)} is smaller than the kernel "
                             f"{self.kernel_size} (dilation {self.dilation}, padding {self.padding})")
        return self.filters, oh, ow

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        if shape[0] != self.input_shape[0]:
            raise ValueError(f"{where}: argument 'x' must have {self.input_shape[0]} channels (axis 1) as built, "
                             f"got shape {('N', *shape)}")
        self.compute_output_shape(shape)

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        bias = self.params["bias"].data if self.use_bias else None
        act = self.children.get("activation")
        fuse = type(act) is ReLU  # the backend applies it in its output pass
        y, cols = self.backend.conv2d_forward(x, self.params["weight"].data, bias, self.strides, self.padding,
                                              self.dilation, relu=fuse)
        self._cache = (x.shape, cols, y if fuse else None)
        return act.forward(y, training) if act is not None and not fuse else y

    def backward(self, dy: Any) -> Any:
        x_shape, cols, relu_y = self._need_cache("_cache")
        act = self.children.get("activation")
        if act is not None and relu_y is None:
            dy = act.backward(dy)
        w = self.params["weight"]
        dx, dw, db = self.backend.conv2d_backward(dy, x_shape, w.data, cols, self.strides, self.padding,
                                                  self.dilation, need_dx=self.needs_input_grad, relu_y=relu_y)
        w.grad += dw
        if self.kernel_regularizer is not None:
            w.grad += self.kernel_regularizer.gradient(w.data)
        if self.use_bias:
            self.params["bias"].grad += db
        return dx
