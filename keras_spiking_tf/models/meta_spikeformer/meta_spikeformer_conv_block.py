"""Meta-SpikeFormer's convolutional parts (SPEC §10): the downsampling
layers, the separable convolution and the convolutional block.

Every layer takes and returns membranes `(batch, T, H, W, C)`; convolutions
and BatchNorm act on `T·batch` folded into the batch, only the neurons carry
state over `T`. Layer names mirror the official checkpoint's keys
(`encode_conv`, `pwconv1`, `dwconv`, `conv1`, ...).
"""

import keras
from keras import ops

from keras_spiking_tf import validation
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.layers.lif import MAX_TIME_STEPS
from keras_spiking_tf.layers.lif_cell import MAX_UNITS
from keras_spiking_tf.layers.spiking_block import SpikingBlock
from keras_spiking_tf.layers.spiking_patch_splitting import fold_time
from keras_spiking_tf.layers.spiking_patch_splitting import repeat_over_time
from keras_spiking_tf.layers.spiking_patch_splitting import unfold_time
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_rep_conv import (
    depthwise_initializer,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_rep_conv import (
    torch_conv_initializer,
)

MAX_KERNEL_SIZE = 31


class ConvolutionBlock(SpikingBlock):
    """A `SpikingBlock` with Meta-SpikeFormer's convolutions (PyTorch's
    default initialisation, channels last), on `(batch, T, H, W, C)`."""

    def conv(self, filters, kernel_size, name, strides=1, use_bias=False, padding="same"):
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            data_format="channels_last",
            kernel_initializer=torch_conv_initializer(),
            dtype=self.dtype_policy,
            name=name,
        )

    def build_chain(self, layers, frame_shape, steps):
        """Builds `layers` in order from per-step `frame_shape` (batch, H, W,
        C); neurons see `(batch, T, ...)`. Returns the last frame shape."""
        shape = tuple(frame_shape)
        for layer in layers:
            if isinstance(layer, LIF):
                layer.build((shape[0], steps, *shape[1:]))
            else:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        return shape

    def compute_output_shape(self, input_shape):
        return input_shape


def check_filters(name, value):
    return validation.check_integer(name, value, minimum=1, maximum=MAX_UNITS)


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class MSDownsampling(ConvolutionBlock):
    """`MS_DownSampling`: `[LIF ->] conv(k, stride, padding, bias) -> BN`.

        out = BN(W * LIF(U) + b)      (no LIF in the first layer)

    The padding is PyTorch's: `padding` zeros on *both* sides, then a
    "valid" convolution (Keras' "same" with stride 2 pads only at the end
    and shifts every window). With `first_layer=True` the input may be an
    image `(batch, H, W, C)`: it is the same at every step, so the
    convolution and BatchNorm run once and are repeated over `time_steps`
    (identical values and BatchNorm statistics).

    Args:
        filters: output channels.
        kernel_size: square kernel size (1 to 31).
        strides: stride (1 to 31).
        padding: zeros on each side (0 to 31).
        first_layer: no neuron before the convolution.
        time_steps: `T` for image inputs.
        neuron_config: dict of `LIF` arguments; design.md §2.1 defaults when `None`.
        **kwargs: standard layer arguments.

    Example:

    ```python
    stem = MSDownsampling(16, kernel_size=7, strides=2, padding=3, first_layer=True)
    membrane = stem(keras.random.normal((2, 32, 32, 3)))   # (2, 4, 16, 16, 16)
    ```
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=2,
        padding=1,
        first_layer=False,
        time_steps=4,
        neuron_config=None,
        **kwargs,
    ):
        filters = check_filters("filters", filters)
        kernel_size = validation.check_integer(
            "kernel_size", kernel_size, minimum=1, maximum=MAX_KERNEL_SIZE)
        strides = validation.check_integer("strides", strides, minimum=1, maximum=MAX_KERNEL_SIZE)
        padding = validation.check_integer("padding", padding, minimum=0, maximum=MAX_KERNEL_SIZE)
        first_layer = validation.check_bool("first_layer", first_layer)
        time_steps = validation.check_integer(
            "time_steps", time_steps, minimum=1, maximum=MAX_TIME_STEPS)
        super().__init__(neuron_config=neuron_config, **kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.first_layer = first_layer
        self.time_steps = time_steps
        self.encode_lif = None if first_layer else self.neuron("encode_lif")
        self.encode_conv = self.conv(
            filters, kernel_size, "encode_conv", strides=strides, use_bias=True, padding="valid"
        )
        self.encode_bn = self.batch_norm("encode_bn")

    def build(self, input_shape):
        if len(input_shape) not in (4, 5) or (len(input_shape) == 4 and not self.first_layer):
            raise ValueError(
                f"MSDownsampling '{self.name}' expects membranes (batch, T, H, W, C)"
                + (" or images (batch, H, W, C)" if self.first_layer else "")
                + f", got shape {tuple(input_shape)}."
            )
        steps = input_shape[1] if len(input_shape) == 5 else self.time_steps
        batch, height, width, channels = input_shape[0], *input_shape[-3:]
        if self.encode_lif is not None:
            self.encode_lif.build(input_shape)
        grow = 2 * self.padding
        padded = (batch, height + grow, width + grow, channels)
        self.build_chain([self.encode_conv, self.encode_bn], padded, steps)

    def zero_padded(self, x):
        pad = self.padding
        return ops.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x

    def call(self, inputs, training=None):
        if len(inputs.shape) == 4:  # an image: the same input at every step
            x = self.encode_bn(self.encode_conv(self.zero_padded(inputs)), training=training)
            return repeat_over_time(x, self.time_steps)
        steps = inputs.shape[1]
        x = inputs if self.encode_lif is None else self.encode_lif(inputs)
        x = self.encode_conv(self.zero_padded(fold_time(x)))
        return unfold_time(self.encode_bn(x, training=training), steps)

    def compute_output_shape(self, input_shape):
        steps = input_shape[1] if len(input_shape) == 5 else self.time_steps
        size = [
            (extent + 2 * self.padding - self.kernel_size) // self.strides + 1
            for extent in input_shape[-3:-1]
        ]
        return (input_shape[0], steps, *size, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "first_layer": self.first_layer,
                "time_steps": self.time_steps,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SepConv(ConvolutionBlock):
    """MobileNetV2's inverted separable convolution, spiking (`SepConv`).

        out = BN2(W_pw2 (W_dw * LIF2(BN1(W_pw1 LIF1(U)))))

    `pwconv1` widens `C` to `expansion_ratio * C` (1x1, no bias), `dwconv`
    is a `kernel_size` depthwise convolution with symmetric zero padding
    (no bias, and no BatchNorm after it), `pwconv2` narrows back to `C`
    (1x1, no bias). No shortcut: `MSConvBlock` adds it.

    Args:
        expansion_ratio: hidden width as a multiple of `C` (integer, 1 to 64).
        kernel_size: odd depthwise kernel size (1 to 31; 7 in the model).
        neuron_config: dict of `LIF` arguments; design.md §2.1 defaults when `None`.
        **kwargs: standard layer arguments.

    Example:

    ```python
    sep_conv = SepConv()
    y = sep_conv(keras.random.normal((2, 4, 8, 8, 16)))   # (2, 4, 8, 8, 16)
    ```
    """

    def __init__(self, expansion_ratio=2, kernel_size=7, neuron_config=None, **kwargs):
        expansion_ratio = validation.check_integer(
            "expansion_ratio", expansion_ratio, minimum=1, maximum=64)
        kernel_size = validation.check_integer(
            "kernel_size", kernel_size, minimum=1, maximum=MAX_KERNEL_SIZE)
        if kernel_size % 2 == 0:
            raise validation.invalid("kernel_size", kernel_size, "odd (symmetric padding)")
        super().__init__(neuron_config=neuron_config, **kwargs)
        self.expansion_ratio = expansion_ratio
        self.kernel_size = kernel_size

    def build(self, input_shape):
        check_membrane_shape(self, input_shape)
        channels = input_shape[-1]
        hidden = self.expansion_ratio * channels
        self.lif1 = self.neuron("lif1")
        self.pwconv1 = self.conv(hidden, 1, "pwconv1")
        self.bn1 = self.batch_norm("bn1")
        self.lif2 = self.neuron("lif2")
        self.dwconv = keras.layers.DepthwiseConv2D(
            self.kernel_size,
            padding="same",
            use_bias=False,
            data_format="channels_last",
            depthwise_initializer=depthwise_initializer(self.kernel_size),
            dtype=self.dtype_policy,
            name="dwconv",
        )
        self.pwconv2 = self.conv(channels, 1, "pwconv2")
        self.bn2 = self.batch_norm("bn2")
        frame = (input_shape[0], *input_shape[2:])
        self.build_chain(
            [self.lif1, self.pwconv1, self.bn1, self.lif2, self.dwconv, self.pwconv2, self.bn2],
            frame,
            input_shape[1],
        )

    def synapse_batch_norm_pairs(self):
        """`pwconv1 -> bn1` and `pwconv2 -> bn2` (the depthwise convolution
        has no BatchNorm of its own: `bn2` follows `pwconv2`)."""
        return [(self.pwconv1, self.bn1), (self.pwconv2, self.bn2)]

    def call(self, inputs, training=None):
        steps = inputs.shape[1]
        hidden = self.bn1(self.pwconv1(fold_time(self.lif1(inputs))), training=training)
        spikes = fold_time(self.lif2(unfold_time(hidden, steps)))
        output = self.bn2(self.pwconv2(self.dwconv(spikes)), training=training)
        return unfold_time(output, steps)

    def get_config(self):
        config = super().get_config()
        config.update({"expansion_ratio": self.expansion_ratio, "kernel_size": self.kernel_size})
        return config


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class MSConvBlock(ConvolutionBlock):
    """`MS_ConvBlock`: a `SepConv` and a spiking 3x3 convolution pair, each
    with a membrane shortcut.

        U' = U + SepConv(U)
        out = U' + BN2(W2 * LIF2(BN1(W1 * LIF1(U'))))

    `conv1` (3x3, `C -> mlp_ratio C`) and `conv2` (3x3, back to `C`) have
    padding 1 and no bias.

    Args:
        mlp_ratio: hidden width of the convolution pair as a multiple of
            `C` (integer, 1 to 64).
        neuron_config: dict of `LIF` arguments; design.md §2.1 defaults when `None`.
        **kwargs: standard layer arguments.

    Example:

    ```python
    block = MSConvBlock(mlp_ratio=4)
    membrane = block(keras.random.normal((2, 4, 8, 8, 16)))   # same shape
    ```
    """

    def __init__(self, mlp_ratio=4, neuron_config=None, **kwargs):
        mlp_ratio = validation.check_integer("mlp_ratio", mlp_ratio, minimum=1, maximum=64)
        super().__init__(neuron_config=neuron_config, **kwargs)
        self.mlp_ratio = mlp_ratio
        self.sep_conv = SepConv(
            neuron_config=self.neuron_config, dtype=self.dtype_policy, name="sep_conv")

    def build(self, input_shape):
        check_membrane_shape(self, input_shape)
        channels = input_shape[-1]
        self.sep_conv.build(input_shape)
        self.lif1 = self.neuron("lif1")
        self.conv1 = self.conv(self.mlp_ratio * channels, 3, "conv1")
        self.bn1 = self.batch_norm("bn1")
        self.lif2 = self.neuron("lif2")
        self.conv2 = self.conv(channels, 3, "conv2")
        self.bn2 = self.batch_norm("bn2")
        frame = (input_shape[0], *input_shape[2:])
        self.build_chain(
            [self.lif1, self.conv1, self.bn1, self.lif2, self.conv2, self.bn2],
            frame,
            input_shape[1],
        )

    def call(self, inputs, training=None):
        steps = inputs.shape[1]
        x = inputs + self.sep_conv(inputs, training=training)
        hidden = self.bn1(self.conv1(fold_time(self.lif1(x))), training=training)
        spikes = fold_time(self.lif2(unfold_time(hidden, steps)))
        return x + unfold_time(self.bn2(self.conv2(spikes), training=training), steps)

    def get_config(self):
        config = super().get_config()
        config["mlp_ratio"] = self.mlp_ratio
        return config


def check_membrane_shape(layer, input_shape):
    if len(input_shape) != 5 or input_shape[1] is None:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' expects membranes shaped "
            f"(batch, T, H, W, C) with a static T, got {tuple(input_shape)}."
        )
