"""A2OS2A: Accurate Addition-Only Spiking Self-Attention (Guo et al., 2025)."""

import keras
from keras import ops

from keras_spiking_tf.layers.lif import TernaryLIF
from keras_spiking_tf.layers.spiking_self_attention import SpikingSelfAttention
from keras_spiking_tf.layers.spiking_self_attention import attention_product
from keras_spiking_tf.layers.spiking_self_attention import merge_heads
from keras_spiking_tf.layers.spiking_self_attention import register_attention
from keras_spiking_tf.layers.spiking_self_attention import split_heads


@register_attention("a2os2a")
@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class A2OS2A(SpikingSelfAttention):
    """Attention sub-block with binary Q, ReLU K and ternary V (design.md §3.2).

        Q = LIF(q)            in {0, 1}
        K = ReLU(k)           >= 0, real-valued
        V = TernaryLIF(v)     in {-1, 0, 1}
        A = SN_attn(Q K^T V)  per head; no softmax, no scaling

    Because Q is binary and V ternary, `Q K^T V` needs only additions and
    subtractions of K's entries. The product is evaluated in the cheaper
    association (`association="auto"`): `Q (K^T V)` when the head width is at
    most the token count, else `(Q K^T) V`. `SN_attn` is a binary LIF with
    threshold `attn_v_threshold` (0.5, as SDT's attention-internal neurons).

    Args: see `SpikingSelfAttention`.

    Example:

    ```python
    attention = A2OS2A(num_heads=8)
    membrane = attention(keras.random.normal((2, 4, 64, 256)))  # (B, T, N, D)
    ```
    """

    def build_attention_neurons(self):
        self.q_lif = self.neuron("q_lif")
        self.v_lif = self.neuron("v_lif", neuron_class=TernaryLIF)
        self.attn_lif = self.neuron("attn_lif", v_threshold=self.attn_v_threshold)

    def attend(self, q, k, v):
        queries = split_heads(self.q_lif(q), self.num_heads)
        keys = split_heads(self.eroded(ops.relu(k)), self.num_heads)
        values = split_heads(self.eroded(self.v_lif(v)), self.num_heads)
        product = attention_product(
            queries, keys, values, self.product_association
        )
        return self.eroded(self.attn_lif(merge_heads(product, q.shape[1])))

    def products(self):
        # K = ReLU(BN(k)) is real-valued; Q is binary and V ternary, so both
        # products are additions of K's (or K^T V's) entries.
        return self.matrix_products("real", self.v_lif)
