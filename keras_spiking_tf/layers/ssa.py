"""SSA: Spiking Self-Attention of Spikformer (Zhou et al., 2023)."""

import keras

from keras_spiking_tf import validation

from keras_spiking_tf.layers.spiking_self_attention import SpikingSelfAttention
from keras_spiking_tf.layers.spiking_self_attention import attention_product
from keras_spiking_tf.layers.spiking_self_attention import merge_heads
from keras_spiking_tf.layers.spiking_self_attention import register_attention
from keras_spiking_tf.layers.spiking_self_attention import split_heads


@register_attention("ssa")
@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SSA(SpikingSelfAttention):
    """Spikformer's attention with binary Q, K, V (design.md §3.2).

        A = LIF_{V_th=0.5}(scale * Q K^T V)    per head, scale = 0.125

    Args:
        scale: the fixed scaling factor, > 0 (Spikformer's 0.125).
        others: see `SpikingSelfAttention`.

    Example:

    ```python
    attention = SSA()
    membrane = attention(keras.random.normal((2, 4, 64, 256)))
    ```
    """

    def __init__(self, scale=0.125, **kwargs):
        scale = validation.check_number("scale", scale, minimum=0.0, exclusive_minimum=True)
        super().__init__(**kwargs)
        self.scale = scale

    def build_attention_neurons(self):
        self.q_lif = self.neuron("q_lif")
        self.k_lif = self.neuron("k_lif")
        self.v_lif = self.neuron("v_lif")
        self.attn_lif = self.neuron("attn_lif", v_threshold=self.attn_v_threshold)

    def attend(self, q, k, v):
        queries = split_heads(self.q_lif(q), self.num_heads)
        keys = split_heads(self.eroded(self.k_lif(k)), self.num_heads)
        values = split_heads(self.eroded(self.v_lif(v)), self.num_heads)
        product = attention_product(
            queries, keys, values, self.product_association
        )
        return self.eroded(self.attn_lif(merge_heads(product, q.shape[1]) * self.scale))

    def products(self):
        return self.matrix_products("binary", self.v_lif)

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.scale
        return config
