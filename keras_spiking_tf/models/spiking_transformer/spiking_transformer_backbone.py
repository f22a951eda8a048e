"""The Spiking Transformer backbone: SPS, then L encoder blocks (design.md §1)."""

import keras
from keras_hub.src.utils.keras_utils import standardize_data_format

from keras_spiking_tf import validation
from keras_spiking_tf.layers.encoder_block import SpikingTransformerEncoderBlock
from keras_spiking_tf.layers.lif_cell import check_neuron_config
from keras_spiking_tf.layers.spiking_mlp import check_mlp_ratio
from keras_spiking_tf.layers.spiking_patch_splitting import MAX_HIDDEN_DIM
from keras_spiking_tf.layers.spiking_patch_splitting import SpikingPatchSplitting
from keras_spiking_tf.layers.spiking_patch_splitting import check_patch_splitting_arguments
from keras_spiking_tf.layers.spiking_self_attention import check_attention_arguments
from keras_spiking_tf.layers.spiking_self_attention import check_attention_name
from keras_spiking_tf.models.spiking_backbone import SpikingBackbone

# The backbone's arguments, which are its architecture: the one list that
# presets, `from_preset` overrides and the tools read.
ARCHITECTURE_KEYS = (
    "num_layers",
    "hidden_dim",
    "num_heads",
    "mlp_ratio",
    "time_steps",
    "pooling",
    "image_shape",
    "attention",
    "attn_v_threshold",
    "neuron_config",
    "association",
    "erode",
    "input_type",
    "data_format",
)
INPUT_TYPES = ("image", "frames")
DATA_FORMATS = ("channels_last", "channels_first")
MAX_LAYERS = 1024
# Keyword arguments of the backbone besides its architecture (Backbone's own
# config: `get_config` saves them, `from_config` passes them back).
MODEL_KEYWORDS = ("name", "trainable")

_DEFAULTS = {
    "num_heads": 8,
    "mlp_ratio": 4,
    "time_steps": 4,
    "pooling": "1111",
    "attn_v_threshold": 0.5,
    "association": "auto",
    "erode": False,
}


def check_backbone_arguments(**arguments):
    """Checks backbone arguments (any of `ARCHITECTURE_KEYS`, `dtype`) before
    anything is built, each as the layer that takes it checks it, and the
    ones that depend on each other (`hidden_dim` divisible by `num_heads`)
    when both are given. Used by the backbone itself and by `from_preset`
    on its overrides (then only the overridden ones are given).

    Raises:
        TypeError: an unknown argument, a value of a wrong type.
        ValueError: a value out of range.

    Example:

    ```python
    check_backbone_arguments(time_steps=8, attention="sdsa")
    ```
    """
    validation.check_keyword_arguments(
        "SpikingTransformerBackbone", arguments, (*ARCHITECTURE_KEYS, "dtype")
    )
    given = dict(arguments)
    if "num_layers" in given:
        validation.check_integer("num_layers", given["num_layers"], minimum=1, maximum=MAX_LAYERS)
    if {"hidden_dim", "time_steps", "pooling"} & set(given):
        check_patch_splitting_arguments(
            given.get("hidden_dim", 8),
            given.get("time_steps", _DEFAULTS["time_steps"]),
            given.get("pooling", _DEFAULTS["pooling"]),
        )
    if {"num_heads", "attn_v_threshold", "association", "erode"} & set(given):
        check_attention_arguments(
            *(given.get(key, _DEFAULTS[key])
              for key in ("num_heads", "attn_v_threshold", "association", "erode"))
        )
    if "hidden_dim" in given and "num_heads" in given and given["hidden_dim"] % given["num_heads"]:
        raise validation.invalid(
            "hidden_dim",
            given["hidden_dim"],
            f"divisible by num_heads={given['num_heads']} (the heads split the width)",
        )
    if "mlp_ratio" in given:
        check_mlp_ratio(given["mlp_ratio"])
    if "image_shape" in given:
        validation.check_int_tuple(
            "image_shape", given["image_shape"], 3, minimum=1, maximum=MAX_HIDDEN_DIM
        )
    if "attention" in given:
        check_attention_name("attention", given["attention"])
    if "neuron_config" in given:
        check_neuron_config(given["neuron_config"])
    if "input_type" in given:
        validation.check_choice("input_type", given["input_type"], INPUT_TYPES)
    if "data_format" in given:
        validation.check_choice(
            "data_format", given["data_format"], DATA_FORMATS, allow_none=True
        )
    if "dtype" in given:
        validation.check_dtype_policy("dtype", given["dtype"])


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SpikingTransformerBackbone(SpikingBackbone):
    """Spiking Transformer (SDT architecture) returning membrane features.

    Images `(batch, H, W, C)`, already normalised, are repeated over
    `time_steps`, split into `N` tokens of width `hidden_dim` by the spiking
    patch splitting, and passed through `num_layers` encoder blocks. The
    output is the last membrane tensor `(batch, T, N, hidden_dim)`. With
    `input_type="frames"` the input is a frame sequence `(batch, T, H, W, C)`
    (event-camera frames, design.md §9), used as it is. Under
    `data_format="channels_first"` images are `(batch, C, H, W)` and frames
    `(batch, T, C, H, W)`, as JAX and PyTorch users feed them (the backbone
    transposes them once on entry; the weights are the same either way).

    Every argument is checked (`check_backbone_arguments`) before anything
    is built: a misspelt keyword or an impossible value is a `TypeError` or
    `ValueError` naming the argument.

    Args:
        num_layers: encoder blocks `L` (1 to 1024).
        hidden_dim: token width `D` (divisible by 8 and by `num_heads`).
        num_heads: attention heads (8 in every published model).
        mlp_ratio: MLP hidden width as a multiple of `D`.
        time_steps: `T` (4 in every published result).
        pooling: SPS pooling pattern, "0011" for 32x32, "1111" for 224x224.
        image_shape: `(H, W, C)` of the preprocessed input, in this order
            whatever `data_format` is.
        attention: a registered attention (`layers.ATTENTIONS`): `"a2os2a"`
            (the paper), `"sdsa"` (SDT) or `"ssa"` (Spikformer).
        attn_v_threshold: threshold of the attention-internal neuron.
        neuron_config: dict of `LIF` arguments for every neuron (design.md
            §2.1 defaults when `None`), e.g. `{"surrogate": "atan"}`.
        association: `Q K^T V` product order (`"auto"`: the cheaper).
        erode: SDT's CIFAR10-DVS erode in the attention (off by default;
            see `SpikingSelfAttention`).
        input_type: `"image"` (repeated over `time_steps`) or `"frames"`
            (a sequence of `time_steps` frames).
        data_format: `"channels_last"` or `"channels_first"`; `None` follows
            `keras.config.image_data_format()` when the backbone is built
            (and is saved as `None`, so a preset follows the loading
            program's setting).
        dtype: dtype policy, e.g. `"mixed_bfloat16"`.

    Example:

    ```python
    backbone = SpikingTransformerBackbone(
        num_layers=2, hidden_dim=256, time_steps=4, pooling="0011",
        image_shape=(32, 32, 3),
    )
    membrane = backbone(np.zeros((1, 32, 32, 3)))   # (1, 4, 64, 256)
    ```
    """

    architecture_keys = ARCHITECTURE_KEYS

    def __init__(
        self,
        num_layers,
        hidden_dim,
        num_heads=8,
        mlp_ratio=4,
        time_steps=4,
        pooling="1111",
        image_shape=(224, 224, 3),
        attention="a2os2a",
        attn_v_threshold=0.5,
        neuron_config=None,
        association="auto",
        erode=False,
        input_type="image",
        data_format=None,
        dtype=None,
        **kwargs,
    ):
        check_backbone_arguments(
            num_layers=num_layers,
            hidden_dim=hidden_dim,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            time_steps=time_steps,
            pooling=pooling,
            image_shape=image_shape,
            attention=attention,
            attn_v_threshold=attn_v_threshold,
            neuron_config=neuron_config,
            association=association,
            erode=erode,
            input_type=input_type,
            data_format=data_format,
            dtype=dtype,
        )
        validation.check_keyword_arguments(
            "SpikingTransformerBackbone", kwargs, (*ARCHITECTURE_KEYS, "dtype", *MODEL_KEYWORDS)
        )
        neuron_config = dict(neuron_config or {})
        layout = standardize_data_format(data_format)
        # === Layers ===
        self.patch_embed = SpikingPatchSplitting(
            hidden_dim=hidden_dim,
            time_steps=time_steps,
            pooling=pooling,
            neuron_config=neuron_config,
            dtype=dtype,
            name="patch_embed",
        )
        self.blocks = [
            SpikingTransformerEncoderBlock(
                attention=attention,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                attn_v_threshold=attn_v_threshold,
                neuron_config=neuron_config,
                association=association,
                erode=erode,
                dtype=dtype,
                name=f"block_{index}",
            )
            for index in range(num_layers)
        ]

        # === Functional model ===
        image_input, images = self.image_input(image_shape, input_type, layout, time_steps, dtype)
        membrane = self.patch_embed(images)
        for block in self.blocks:
            membrane = block(membrane)
        super().__init__(inputs=image_input, outputs=membrane, dtype=dtype, **kwargs)

        # === Config ===
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.time_steps = time_steps
        self.pooling = pooling
        self.image_shape = tuple(image_shape)
        self.attention = attention
        self.attn_v_threshold = attn_v_threshold
        self.neuron_config = neuron_config
        self.association = association
        self.erode = erode
        self.input_type = input_type
        self.data_format = data_format  # as given: None follows the Keras setting
        self.image_layout = layout
