"""Spiking Patch Splitting (SPS): image -> membrane tokens (design.md §3.1)."""

import keras
from keras import ops

from keras_spiking_tf import validation
from keras_spiking_tf.layers.lif import MAX_TIME_STEPS
from keras_spiking_tf.layers.lif_cell import check_neuron_config
from keras_spiking_tf.layers.spiking_block import SpikingBlock

MAX_HIDDEN_DIM = 1 << 16


def check_patch_splitting_arguments(hidden_dim, time_steps, pooling):
    """`(hidden_dim, time_steps, pooling)` checked: `hidden_dim` an integer
    in [8, 65536] divisible by 8, `time_steps` in [1, 4096], `pooling` 4
    characters of '0'/'1'.

    Example:

    ```python
    check_patch_splitting_arguments(256, 4, "0011")
    ```
    """
    hidden_dim = validation.check_integer(
        "hidden_dim", hidden_dim, minimum=8, maximum=MAX_HIDDEN_DIM
    )
    if hidden_dim % 8:
        raise validation.invalid("hidden_dim", hidden_dim, "divisible by 8")
    time_steps = validation.check_integer(
        "time_steps", time_steps, minimum=1, maximum=MAX_TIME_STEPS
    )
    pooling = validation.check_string("pooling", pooling, allow_empty=True)
    if len(pooling) != 4 or set(pooling) - {"0", "1"}:
        raise validation.invalid(
            "pooling",
            pooling,
            "4 characters of '0'/'1' (one per SPS stage)",
            hint="E.g. '0011' for CIFAR, '1111' for ImageNet.",
        )
    return hidden_dim, time_steps, pooling


def fold_time(x):
    """`(batch, T, H, W, C)` -> `(batch * T, H, W, C)` for stateless layers."""
    return ops.reshape(x, (-1, *x.shape[2:]))


def unfold_time(x, time_steps):
    """`(batch * T, H, W, C)` -> `(batch, T, H, W, C)`."""
    return ops.reshape(x, (-1, time_steps, *x.shape[1:]))


def max_pool_3x3_stride_2(x, padding="-inf"):
    """PyTorch's `MaxPool2d(3, stride=2, padding=1)` on NHWC tensors.

    PyTorch pads one row and column on *both* sides; Keras' `"same"` padding
    with stride 2 on an even size pads only at the end and shifts every
    window by one. So pad explicitly and pool `"valid"`. `padding` is
    PyTorch's `"-inf"`, or one of two forms with exactly the same result
    that deployment runtimes run faster (the LiteRT CPU delegate takes
    neither a `-inf` pad nor a reflection): `"zero"` for tensors >= 0 (spikes:
    a 0 never exceeds the window's own maximum) and `"edge"`, copies of the
    border rows and columns (each window with a padded element also holds
    the element it copies).
    """
    if padding == "edge":
        x = ops.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
        x = ops.concatenate([x[:, :, :1], x, x[:, :, -1:]], axis=2)
    else:
        value = 0.0 if padding == "zero" else float("-inf")
        x = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=value)
    return ops.max_pool(x, pool_size=3, strides=2, padding="valid", data_format="channels_last")


def repeat_over_time(x, time_steps):
    """`(batch, ...)` -> `(batch, T, ...)`, the same tensor at every step."""
    return ops.concatenate([ops.reshape(x, (-1, 1, *x.shape[1:]))] * time_steps, axis=1)


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SpikingPatchSplitting(SpikingBlock):
    """Turns images `(batch, H, W, C)` or frame sequences `(batch, T, H, W, C)`
    into membranes `(batch, T, N, D)`.

    An image is repeated over `time_steps` steps (direct encoding); a frame
    sequence (event-camera frames, design.md §9) is used as it is, with its
    own `T`. Then:

        stage 0..2: conv3x3 -> BN -> LIF -> [maxpool]   widths D/8, D/4, D/2
        stage 3:    conv3x3 -> BN -> [maxpool]           = x_feat (width D)
        RPE:        U0 = BN(conv3x3(LIF(x_feat))) + x_feat

    `pooling` is a 4-character string of `0`/`1` switching the max pool after
    each stage ("0011" for 32x32 CIFAR -> 64 tokens, "1111" for 224x224
    ImageNet -> 196 tokens). For an image, stage 0 sees the same input at
    every step, so its conv and BN run once and are repeated over `T`:
    identical values, and identical BN statistics. Layer names mirror SDT's
    `patch_embed.*` keys.

    Args:
        hidden_dim: token width `D` (divisible by 8, at most 65536).
        time_steps: `T` for image inputs (1 to 4096; frame sequences bring
            their own).
        pooling: the pooling pattern.
        neuron_config: dict of `LIF` arguments; design.md §2.1 defaults when `None`.
        **kwargs: standard layer arguments.

    Example:

    ```python
    sps = SpikingPatchSplitting(hidden_dim=256, time_steps=4, pooling="0011")
    membrane = sps(keras.random.normal((2, 32, 32, 3)))   # (2, 4, 64, 256)
    ```
    """

    inference_graph = False  # True in `optimize_for_inference`'s copy

    def __init__(
        self, hidden_dim, time_steps=4, pooling="1111", neuron_config=None, **kwargs
    ):
        hidden_dim, time_steps, pooling = check_patch_splitting_arguments(
            hidden_dim, time_steps, pooling
        )
        check_neuron_config(neuron_config)
        super().__init__(neuron_config=neuron_config, **kwargs)
        self.hidden_dim = hidden_dim
        self.time_steps = time_steps
        self.pooling = pooling
        suffixes = ("", "1", "2", "3")
        widths = [hidden_dim // 8, hidden_dim // 4, hidden_dim // 2, hidden_dim]
        self.stage_convs = [self.conv3x3(w, f"proj_conv{s}") for w, s in zip(widths, suffixes)]
        self.stage_bns = [self.batch_norm(f"proj_bn{s}") for s in suffixes]
        self.stage_lifs = [self.neuron(f"proj_lif{s}") for s in suffixes]
        self.rpe_conv = self.conv3x3(hidden_dim, "rpe_conv")
        self.rpe_bn = self.batch_norm("rpe_bn")

    def build(self, input_shape):
        if len(input_shape) not in (4, 5):
            raise ValueError(
                "SpikingPatchSplitting expects images shaped (batch, H, W, C) or frame "
                f"sequences shaped (batch, T, H, W, C), got {tuple(input_shape)}."
            )
        shape = (input_shape[0], *input_shape[-3:])
        steps = input_shape[1] if len(input_shape) == 5 else self.time_steps
        for stage, (conv, bn, lif) in enumerate(zip(self.stage_convs, self.stage_bns, self.stage_lifs)):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            bn.build(shape)
            if self.pooling[stage] == "1" and stage == 3:  # stage 3 pools before its neuron
                shape = (shape[0], (shape[1] - 1) // 2 + 1, (shape[2] - 1) // 2 + 1, shape[3])
            lif.build((shape[0], steps, *shape[1:]))
            if self.pooling[stage] == "1" and stage < 3:
                shape = (shape[0], (shape[1] - 1) // 2 + 1, (shape[2] - 1) // 2 + 1, shape[3])
        self.rpe_conv.build(shape)
        self.rpe_bn.build(shape)

    def call(self, inputs, training=None):
        if len(inputs.shape) == 5:  # frames: every step is its own input
            steps = inputs.shape[1]
            x = self.stage_bns[0](self.stage_convs[0](fold_time(inputs)), training=training)
            x = unfold_time(x, steps)
        else:  # an image: the same input at every step
            steps = self.time_steps
            x = self.stage_bns[0](self.stage_convs[0](inputs), training=training)
            x = repeat_over_time(x, steps)
        for stage in range(3):
            if stage > 0:
                x = self.stage_convs[stage](fold_time(x))
                x = unfold_time(self.stage_bns[stage](x, training=training), steps)
            x = fold_time(self.stage_lifs[stage](x))
            if self.pooling[stage] == "1":
                x = max_pool_3x3_stride_2(x, "zero" if self.inference_graph else "-inf")
            x = unfold_time(x, steps)
        x_feat = self.stage_bns[3](self.stage_convs[3](fold_time(x)), training=training)
        if self.pooling[3] == "1":
            x_feat = max_pool_3x3_stride_2(x_feat, "edge" if self.inference_graph else "-inf")
        rpe_spikes = fold_time(self.stage_lifs[3](unfold_time(x_feat, steps)))
        membrane = self.rpe_bn(self.rpe_conv(rpe_spikes), training=training) + x_feat
        _, height, width, dim = membrane.shape
        return ops.reshape(membrane, (-1, steps, height * width, dim))

    def compute_output_shape(self, input_shape):
        batch, (height, width, _) = input_shape[0], input_shape[-3:]
        steps = input_shape[1] if len(input_shape) == 5 else self.time_steps
        for flag in self.pooling:
            if flag == "1":
                height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        return (batch, steps, height * width, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "time_steps": self.time_steps,
                "pooling": self.pooling,
            }
        )
        return config
