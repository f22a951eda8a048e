"""One encoder block: attention sub-block, then MLP sub-block (design.md §1)."""

import keras

from keras_spiking_tf.layers.attention_variants import get_attention_class
from keras_spiking_tf.layers.lif_cell import check_neuron_config
from keras_spiking_tf.layers.spiking_mlp import SpikingMLP
from keras_spiking_tf.layers.spiking_mlp import check_mlp_ratio
from keras_spiking_tf.layers.spiking_self_attention import check_attention_arguments
from keras_spiking_tf.layers.spiking_self_attention import check_attention_name


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SpikingTransformerEncoderBlock(keras.layers.Layer):
    """`U' = Attention(U); out = MLP(U')`, both with membrane shortcuts.

    Args:
        attention: `"a2os2a"` (the paper), `"sdsa"` (SDT) or `"ssa"`
            (Spikformer).
        num_heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of `D`.
        attn_v_threshold: threshold of the attention-internal neuron.
        neuron_config: dict of `LIF` arguments shared by all neurons.
        association: product order for `Q K^T V` (`"auto"` picks the cheaper).
        erode: the attention's CIFAR10-DVS erode (see `SpikingSelfAttention`).
        **kwargs: standard layer arguments.

    Example:

    ```python
    block = SpikingTransformerEncoderBlock(attention="a2os2a")
    membrane = block(keras.random.normal((2, 4, 64, 256)))
    ```
    """

    def __init__(
        self,
        attention="a2os2a",
        num_heads=8,
        mlp_ratio=4,
        attn_v_threshold=0.5,
        neuron_config=None,
        association="auto",
        erode=False,
        **kwargs,
    ):
        check_attention_name("attention", attention)
        check_attention_arguments(num_heads, attn_v_threshold, association, erode)
        check_mlp_ratio(mlp_ratio)
        neuron_config = check_neuron_config(neuron_config)
        super().__init__(**kwargs)
        self.attention = attention
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.attn_v_threshold = attn_v_threshold
        self.neuron_config = neuron_config
        self.association = association
        self.erode = erode
        self.attn = get_attention_class(attention)(
            num_heads=num_heads,
            attn_v_threshold=attn_v_threshold,
            neuron_config=self.neuron_config,
            association=association,
            erode=erode,
            dtype=self.dtype_policy,
            name="attn",
        )
        self.mlp = SpikingMLP(
            mlp_ratio=mlp_ratio,
            neuron_config=self.neuron_config,
            dtype=self.dtype_policy,
            name="mlp",
        )

    def build(self, input_shape):
        self.attn.build(input_shape)
        self.mlp.build(input_shape)

    def call(self, inputs, training=None):
        return self.mlp(self.attn(inputs, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "attention": self.attention,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "attn_v_threshold": self.attn_v_threshold,
                "neuron_config": self.neuron_config,
                "association": self.association,
                "erode": self.erode,
            }
        )
        return config
