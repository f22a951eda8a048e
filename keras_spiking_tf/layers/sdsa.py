"""SDSA: Spike-Driven Self-Attention of the Spike-driven Transformer."""

import keras
from keras import ops

from keras_spiking_tf.layers.spiking_self_attention import AttentionProduct
from keras_spiking_tf.layers.spiking_self_attention import SpikingSelfAttention
from keras_spiking_tf.layers.spiking_self_attention import register_attention


@register_attention("sdsa")
@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SDSA(SpikingSelfAttention):
    """SDT's attention sub-block (Yao et al., 2023; design.md §3.2).

        Q, K, V = LIF(q), LIF(k), LIF(v)          all binary
        KV = LIF_{V_th=0.5}(sum over tokens of K * V)
        A = Q * KV                                broadcast over tokens

    Channel-wise, so `num_heads` does not change the result. SDT's unused
    `talking_heads` weight is not created.

    Args: see `SpikingSelfAttention` (`association` is unused).

    Example:

    ```python
    attention = SDSA()
    membrane = attention(keras.random.normal((2, 4, 64, 256)))
    ```
    """

    def build_attention_neurons(self):
        self.q_lif = self.neuron("q_lif")
        self.k_lif = self.neuron("k_lif")
        self.v_lif = self.neuron("v_lif")
        self.kv_lif = self.neuron("kv_lif", v_threshold=self.attn_v_threshold)

    def attend(self, q, k, v):
        keys, values = self.eroded(self.k_lif(k)), self.eroded(self.v_lif(v))
        key_value = ops.sum(self.eroded(keys * values), axis=2, keepdims=True)
        return self.eroded(self.q_lif(q) * self.kv_lif(key_value))

    def products(self):
        # Element-wise: K * V summed over tokens, then Q * KV, both on spikes.
        size = self.num_tokens * self.dim
        return [
            AttentionProduct("K * V (sum over tokens)", self.v_lif, "binary", size),
            AttentionProduct("Q * KV", self.q_lif, "binary", size),
        ]
