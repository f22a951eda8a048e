"""The Meta-SpikeFormer backbone (Spike-Driven Transformer V2, SPEC §10).

    U = downsample1_1(image repeated T times)          7x7 s2, C0/2
    U = conv_block1_1(U); U = downsample1_2(U)          3x3 s2, C0
    U = conv_block1_2(U); U = downsample2(U)            3x3 s2, C1
    U = conv_block2_*(U); U = downsample3(U)            3x3 s2, C2
    U = block3_*(U);      U = downsample4(U)            3x3 s1, C3
    U = block4_*(U)                                     (batch, T, N, C3)

`conv_block*` are `MSConvBlock`s, `block*` are `MSBlock`s (RepConv
attention and spiking MLP).
"""

import keras
from keras import ops
from keras_hub.src.utils.keras_utils import standardize_data_format

from keras_spiking_tf import validation
from keras_spiking_tf.layers.lif import MAX_TIME_STEPS
from keras_spiking_tf.layers.lif_cell import check_neuron_config
from keras_spiking_tf.layers.spiking_patch_splitting import MAX_HIDDEN_DIM
from keras_spiking_tf.layers.spiking_self_attention import check_attention_arguments
from keras_spiking_tf.layers.spiking_self_attention import check_attention_name
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_block import MSBlock
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_conv_block import MSConvBlock
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_conv_block import MSDownsampling
from keras_spiking_tf.models.spiking_backbone import SpikingBackbone

# The backbone's arguments, which are its architecture.
ARCHITECTURE_KEYS = (
    "embed_dims",
    "num_blocks",
    "num_heads",
    "mlp_ratio",
    "time_steps",
    "image_shape",
    "attention",
    "attn_v_threshold",
    "neuron_config",
    "association",
    "input_type",
    "data_format",
)
INPUT_TYPES = ("image", "frames")
DATA_FORMATS = ("channels_last", "channels_first")
MODEL_KEYWORDS = ("name", "trainable")
# Blocks per stage in the official model: ConvBlock1_1, ConvBlock1_2,
# ConvBlock2_1 + ConvBlock2_2, block3, block4.
OFFICIAL_NUM_BLOCKS = (1, 1, 2, 6, 2)
MAX_BLOCKS = 1024

_DEFAULTS = {"num_heads": 8, "attn_v_threshold": 0.5, "association": "auto"}


def check_backbone_arguments(**arguments):
    """Checks `MetaSpikeFormerBackbone` arguments (any of
    `ARCHITECTURE_KEYS`, `dtype`) before anything is built; the ones that
    depend on each other when both are given.

    Raises:
        TypeError: an unknown argument, a value of a wrong type.
        ValueError: a value out of range.

    Example:

    ```python
    check_backbone_arguments(time_steps=1, attention="a2os2a")
    ```
    """
    validation.check_keyword_arguments(
        "MetaSpikeFormerBackbone", arguments, (*ARCHITECTURE_KEYS, "dtype")
    )
    given = dict(arguments)
    # The heads first: the widths are checked against them.
    if {"num_heads", "attn_v_threshold", "association"} & set(given):
        check_attention_arguments(
            *(given.get(key, _DEFAULTS[key])
              for key in ("num_heads", "attn_v_threshold", "association")),
            False,
        )
    if "embed_dims" in given:
        dims = validation.check_int_tuple(
            "embed_dims", given["embed_dims"], 4, minimum=2, maximum=MAX_HIDDEN_DIM)
        if dims[0] % 2:
            raise validation.invalid(
                "embed_dims", given["embed_dims"], "4 widths [C0, C1, C2, C3] with C0 even "
                "(the stem has C0 / 2 channels)")
        heads = given.get("num_heads", _DEFAULTS["num_heads"])
        if isinstance(heads, int) and (dims[2] % heads or dims[3] % heads):
            raise validation.invalid(
                "embed_dims", given["embed_dims"],
                f"C2 and C3 divisible by num_heads={heads} (the heads split the width)")
    if "num_blocks" in given:
        validation.check_int_tuple(
            "num_blocks", given["num_blocks"], 5, minimum=1, maximum=MAX_BLOCKS)
    if "mlp_ratio" in given:
        validation.check_integer("mlp_ratio", given["mlp_ratio"], minimum=1, maximum=64)
    if "time_steps" in given:
        validation.check_integer(
            "time_steps", given["time_steps"], minimum=1, maximum=MAX_TIME_STEPS)
    if "image_shape" in given:
        validation.check_int_tuple(
            "image_shape", given["image_shape"], 3, minimum=1, maximum=MAX_HIDDEN_DIM)
    if "attention" in given:
        check_attention_name("attention", given["attention"])
    if "neuron_config" in given:
        check_neuron_config(given["neuron_config"])
    if "input_type" in given:
        validation.check_choice("input_type", given["input_type"], INPUT_TYPES)
    if "data_format" in given:
        validation.check_choice("data_format", given["data_format"], DATA_FORMATS, allow_none=True)
    if "dtype" in given:
        validation.check_dtype_policy("dtype", given["dtype"])


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class MetaSpikeFormerBackbone(SpikingBackbone):
    """Meta-SpikeFormer (Spike-Driven Transformer V2) returning membranes.

    Images `(batch, H, W, C)`, already normalised, are repeated over
    `time_steps`; two convolutional stages of `MSConvBlock`s and two
    transformer stages of `MSBlock`s follow, with downsampling between them
    (224x224 -> 112 -> 56 -> 28 -> 14 -> 14). The output is the last
    membrane tensor as tokens `(batch, T, N, C3)`, `N = H/16 * W/16`. With
    `input_type="frames"` the input is a frame sequence `(batch, T, H, W, C)`,
    used as it is. Under `data_format="channels_first"` images are
    `(batch, C, H, W)` and frames `(batch, T, C, H, W)`.

    Args:
        embed_dims: widths `[C0, C1, C2, C3]` (C0 even; C2, C3 divisible by
            `num_heads`): `[96, 192, 384, 480]` for 8-384, `[128, 256, 512,
            640]` for 8-512, `[192, 384, 768, 960]` for 8-768.
        num_blocks: blocks per stage: the `MSConvBlock`s at C0/2, at C0 and
            at C1, the `MSBlock`s at C2 and at C3; `(1, 1, 2, 6, 2)` in the
            official model.
        num_heads: attention heads (8).
        mlp_ratio: hidden width of the convolution pairs and MLPs (4).
        time_steps: `T` (4 for the released checkpoint; 1 for pre-training).
        image_shape: `(H, W, C)` of the preprocessed input.
        attention: a registered attention (`layers.ATTENTIONS`): `"ssa"` is
            the official Meta-SpikeFormer attention (binary Q, K, V,
            `LIF_{0.5}(0.125 Q (K^T V))`), `"a2os2a"` the paper's (binary Q,
            K = ReLU(k), ternary V, no scale).
        attn_v_threshold: threshold of the attention-internal neuron (0.5).
        neuron_config: dict of `LIF` arguments for every neuron (design.md
            §2.1 defaults when `None`).
        association: `Q K^T V` product order (`"auto"`: the cheaper).
        input_type: `"image"` or `"frames"`.
        data_format: `"channels_last"`, `"channels_first"` or `None` (follows
            `keras.config.image_data_format()`).
        dtype: dtype policy.

    Example:

    ```python
    backbone = MetaSpikeFormerBackbone(
        embed_dims=(8, 16, 32, 48), num_blocks=(1, 1, 1, 1, 1), time_steps=2,
        image_shape=(32, 32, 3),
    )
    membrane = backbone(np.zeros((1, 32, 32, 3)))   # (1, 2, 4, 48)
    ```
    """

    architecture_keys = ARCHITECTURE_KEYS

    def __init__(
        self,
        embed_dims,
        num_blocks=OFFICIAL_NUM_BLOCKS,
        num_heads=8,
        mlp_ratio=4,
        time_steps=4,
        image_shape=(224, 224, 3),
        attention="ssa",
        attn_v_threshold=0.5,
        neuron_config=None,
        association="auto",
        input_type="image",
        data_format=None,
        dtype=None,
        **kwargs,
    ):
        check_backbone_arguments(
            embed_dims=embed_dims,
            num_blocks=num_blocks,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            time_steps=time_steps,
            image_shape=image_shape,
            attention=attention,
            attn_v_threshold=attn_v_threshold,
            neuron_config=neuron_config,
            association=association,
            input_type=input_type,
            data_format=data_format,
            dtype=dtype,
        )
        validation.check_keyword_arguments(
            "MetaSpikeFormerBackbone", kwargs, (*ARCHITECTURE_KEYS, "dtype", *MODEL_KEYWORDS)
        )
        embed_dims = tuple(embed_dims)
        num_blocks = tuple(num_blocks)
        neuron_config = dict(neuron_config or {})
        layout = standardize_data_format(data_format)
        c0, c1, c2, c3 = embed_dims
        common = {"neuron_config": neuron_config, "dtype": dtype}

        def downsampling(filters, name, kernel_size=3, strides=2, padding=1, first_layer=False):
            return MSDownsampling(
                filters, kernel_size=kernel_size, strides=strides, padding=padding,
                first_layer=first_layer, time_steps=time_steps, name=name, **common,
            )

        def conv_blocks(count, prefix):
            return [MSConvBlock(mlp_ratio=mlp_ratio, name=f"{prefix}_{i}", **common)
                    for i in range(count)]

        def transformer_blocks(count, prefix):
            return [
                MSBlock(attention=attention, num_heads=num_heads, mlp_ratio=mlp_ratio,
                        attn_v_threshold=attn_v_threshold, association=association,
                        name=f"{prefix}_{i}", **common)
                for i in range(count)
            ]

        # === Layers ===
        self.stages = [
            downsampling(c0 // 2, "downsample1_1", kernel_size=7, padding=3, first_layer=True),
            *conv_blocks(num_blocks[0], "conv_block1_1"),
            downsampling(c0, "downsample1_2"),
            *conv_blocks(num_blocks[1], "conv_block1_2"),
            downsampling(c1, "downsample2"),
            *conv_blocks(num_blocks[2], "conv_block2"),
            downsampling(c2, "downsample3"),
            *transformer_blocks(num_blocks[3], "block3"),
            downsampling(c3, "downsample4", strides=1),
            *transformer_blocks(num_blocks[4], "block4"),
        ]

        # === Functional model ===
        image_input, x = self.image_input(image_shape, input_type, layout, time_steps, dtype)
        for stage in self.stages:
            x = stage(x)
        _, steps, out_height, out_width, out_channels = x.shape
        membrane = ops.reshape(x, (-1, steps, out_height * out_width, out_channels))
        super().__init__(inputs=image_input, outputs=membrane, dtype=dtype, **kwargs)

        # === Config ===
        self.embed_dims = embed_dims
        self.num_blocks = num_blocks
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.time_steps = time_steps
        self.image_shape = tuple(image_shape)
        self.attention = attention
        self.attn_v_threshold = attn_v_threshold
        self.neuron_config = neuron_config
        self.association = association
        self.input_type = input_type
        self.data_format = data_format  # as given: None follows the Keras setting
        self.image_layout = layout
