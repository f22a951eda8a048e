"""Meta-SpikeFormer's re-parameterisable convolution (SPEC §10, "RepConv").

    RepConv(x) = BN(W_pw (W_dw * BNAndPad(W_1x1 x)))

a 1x1 convolution, a BatchNorm whose output is padded by one pixel with the
BatchNorm's value of zero, a 3x3 depthwise convolution without padding, a
1x1 convolution and a BatchNorm. Because the border holds `BN(0)`, the whole
chain equals one 3x3 convolution of `x` (zero-padded) followed by an affine
map, which is what the official code's name refers to.

Both layers act on channels-last tensors `(batch, H, W, C)` (time folded
into the batch, as every stateless layer of the family).
"""

import keras
from keras import ops

from keras_spiking_tf import validation
from keras_spiking_tf.layers.batch_norm import SpikingBatchNormalization
from keras_spiking_tf.layers.lif_cell import MAX_UNITS

MAX_PAD_PIXELS = 64


def torch_conv_initializer():
    """PyTorch's default `Conv2d` weight initialisation (Kaiming uniform with
    a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in))), which Meta-SpikeFormer
    keeps for every convolution."""
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform"
    )


def depthwise_initializer(kernel_size):
    """PyTorch's default for a depthwise `k x k` convolution (fan-in k^2),
    which Keras' `VarianceScaling` would count as k^2 C."""
    bound = 1.0 / kernel_size
    return keras.initializers.RandomUniform(-bound, bound)


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class BatchNormAndPad(SpikingBatchNormalization):
    """BatchNorm, then a border of `pad_pixels` filled with the BatchNorm of 0.

        y = BN(x) = gamma (x - mean) / sqrt(var + eps) + beta
        border value per channel: BN(0) = beta - mean gamma / sqrt(var + eps)

    The border value always uses the moving statistics (also in training,
    as the official `BNAndPadLayer`) and passes no gradient to `gamma` and
    `beta`. Zero padding would give a different result whenever
    `BN(0) != 0`.

    Folding (`optimize_for_inference`). At inference BN is the per-channel
    affine map `BN(y) = s y + t`, `s = gamma / sqrt(var + eps)`,
    `t = beta - mean s`, so the border value is `BN(0) = t` and

        pad(BN(y), BN(0)) = pad(s y + t, t) = s pad(y, 0) + t = BN(pad(y, 0)).

    With `y = x W` from the 1x1 convolution before it, the BatchNorm folds
    into that convolution like any other (`FoldsBatchNorm`): `x (W s) + t`
    is `BN(y)` in the interior, and the folded layer (an identity for the
    values) still pads with `t`, from the statistics it keeps. Exact in
    real arithmetic; float32 rounding differs as for every fold.

    Args:
        pad_pixels: border width (0 to 64); 0 is a plain BatchNorm.
        **kwargs: `SpikingBatchNormalization` arguments.

    Example:

    ```python
    bn_pad = BatchNormAndPad(pad_pixels=1)
    y = bn_pad(keras.random.normal((2, 4, 4, 8)))   # (2, 6, 6, 8)
    ```
    """

    def __init__(self, pad_pixels=1, **kwargs):
        pad_pixels = validation.check_integer(
            "pad_pixels", pad_pixels, minimum=0, maximum=MAX_PAD_PIXELS
        )
        super().__init__(**kwargs)
        self.pad_pixels = pad_pixels

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"BatchNormAndPad '{self.name}' expects (batch, H, W, C) tensors, "
                f"got shape {tuple(input_shape)}."
            )
        super().build(input_shape)

    def pad_value(self, dtype):
        """`BN(0)` per channel, from the moving statistics, no gradient."""
        scale = self.gamma / ops.sqrt(self.moving_variance + self.epsilon)
        value = ops.stop_gradient(self.beta - self.moving_mean * scale)
        return ops.cast(value, dtype)

    def call(self, inputs, training=None, mask=None):
        normalised = super().call(inputs, training=training, mask=mask)
        pixels = self.pad_pixels
        if pixels == 0:
            return normalised
        value = self.pad_value(normalised.dtype)
        # Built by concatenation, so the interior stays bit-identical to BN(x).
        rows = ops.ones_like(normalised[:, :pixels]) * value
        padded = ops.concatenate([rows, normalised, rows], axis=1)
        columns = ops.ones_like(padded[:, :, :pixels]) * value
        return ops.concatenate([columns, padded, columns], axis=2)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        grow = 2 * self.pad_pixels
        return (
            batch,
            None if height is None else height + grow,
            None if width is None else width + grow,
            channels,
        )

    def get_config(self):
        config = super().get_config()
        config["pad_pixels"] = self.pad_pixels
        return config


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class RepConv(keras.layers.Layer):
    """Meta-SpikeFormer's `RepConv`: a 3x3 convolution in four parts.

        RepConv(x) = BN(pointwise(depthwise3x3(BNAndPad(conv1x1(x)))))

    `conv1x1` keeps the width (no bias), `bn_pad` is a `BatchNormAndPad`
    with a 1-pixel border, `depthwise` a 3x3 depthwise convolution with no
    padding and no bias, `pointwise` a 1x1 convolution to `filters` (no
    bias), `bn` a BatchNorm. The spatial size is kept. Input and output
    `(batch, H, W, C)`, channels last.

    Args:
        filters: output channels (1 to 2^24).
        **kwargs: standard layer arguments.

    Example:

    ```python
    rep_conv = RepConv(16)
    y = rep_conv(keras.random.normal((2, 8, 8, 16)))   # (2, 8, 8, 16)
    ```
    """

    def __init__(self, filters, **kwargs):
        filters = validation.check_integer("filters", filters, minimum=1, maximum=MAX_UNITS)
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"RepConv '{self.name}' expects (batch, H, W, C) tensors, "
                f"got shape {tuple(input_shape)}."
            )
        channels = input_shape[-1]
        common = {"use_bias": False, "data_format": "channels_last", "dtype": self.dtype_policy}
        self.conv1x1 = keras.layers.Conv2D(
            channels, 1, kernel_initializer=torch_conv_initializer(), name="conv1x1", **common
        )
        self.bn_pad = BatchNormAndPad(pad_pixels=1, dtype=self.dtype_policy, name="bn_pad")
        self.depthwise = keras.layers.DepthwiseConv2D(
            3, padding="valid", depthwise_initializer=depthwise_initializer(3),
            name="depthwise", **common,
        )
        self.pointwise = keras.layers.Conv2D(
            self.filters, 1, kernel_initializer=torch_conv_initializer(), name="pointwise",
            **common,
        )
        self.bn = SpikingBatchNormalization(dtype=self.dtype_policy, name="bn")
        shape = tuple(input_shape)
        for layer in (self.conv1x1, self.bn_pad, self.depthwise, self.pointwise, self.bn):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def batch_norm_folds(self, following=()):
        """The folds of `optimize_for_inference` (the
        `SpikingBlock.batch_norm_folds` format): `bn_pad` into `conv1x1`
        (`BatchNormAndPad` says why that is exact) and `bn`, composed with
        `following` (the BatchNorms applied after the RepConv, e.g. the
        attention's `q_bn`), into `pointwise`. The block that holds the
        RepConv declares them.

        Why not all of it into one 3x3 convolution: pushing the affine map
        `s z + t` of `bn_pad` forward instead, the depthwise kernel `D`
        absorbs `s` and, as every 3x3 window of `s pad(y, 0) + t` adds
        `t D` summed over the window, the constant `t sum(D)` per channel
        passes through `pointwise` `P` into a bias `(t sum(D)) P`. The
        RepConv is then one 3x3 convolution of `pad(x, 0)` with kernel
        `K[i, j, :, o] = sum_c W[:, c] s_c D[i, j, c] P[c, o]`, exact in real
        arithmetic, but `9 C_in C_out` products per pixel where the three
        convolutions take `C_in^2 + 9 C_in + C_in C_out` (4.5 times fewer
        for `C_in = C_out`), so the inference graph keeps the three.

        Args:
            following: BatchNorms applied to this RepConv's output, in order.

        Returns:
            `[(conv1x1, (bn_pad,)), (pointwise, (bn, *following))]`.
        """
        return [(self.conv1x1, (self.bn_pad,)), (self.pointwise, (self.bn, *following))]

    def call(self, inputs, training=None):
        x = self.bn_pad(self.conv1x1(inputs), training=training)
        return self.bn(self.pointwise(self.depthwise(x)), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config["filters"] = self.filters
        return config
