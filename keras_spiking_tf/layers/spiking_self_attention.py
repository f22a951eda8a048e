"""The attention sub-block shared by A2OS2A, SDSA and SSA (SPEC §3.2).

On a membrane tensor `U` of shape `(batch, T, N, D)`:

    S = LIF(U)                                   shortcut neuron
    q, k, v = BN(S W_q), BN(S W_k), BN(S W_v)    1x1 convs = per-token Dense
    A = attend(q, k, v)                          the variant, a spike tensor
    out = U + BN(A W_proj + b_proj)              membrane shortcut

Subclasses define `build_attention_neurons()` and `attend()`. The layer
names (`q_conv`, `q_bn`, ..., `proj_conv`, `proj_bn`) mirror the SDT
checkpoint keys of SPEC §5.
"""

import keras
from keras import ops

from keras_spiking_tf.layers.batch_norm import SpikingBatchNormalization
from keras_spiking_tf.layers.lif import LIF

ASSOCIATIONS = ("auto", "kv_first", "qk_first")


def conv_kernel_initializer():
    """SDT's initialisation of conv and linear weights (SPEC §3.4)."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


def cheaper_association(num_tokens, head_dim):
    """`"kv_first"` computes `Q (K^T V)` in 2 N d^2 operations;
    `"qk_first"` computes `(Q K^T) V` in 2 N^2 d. Both are the same matrix."""
    return "kv_first" if head_dim <= num_tokens else "qk_first"


def split_heads(x, num_heads):
    """`(batch, T, N, D)` -> `(batch * T, heads, N, D / heads)`."""
    _, steps, tokens, dim = x.shape
    x = ops.reshape(x, (-1, tokens, num_heads, dim // num_heads))
    return ops.transpose(x, (0, 2, 1, 3))


def merge_heads(x, time_steps):
    """`(batch * T, heads, N, d)` -> `(batch, T, N, heads * d)`."""
    _, heads, tokens, head_dim = x.shape
    x = ops.transpose(x, (0, 2, 1, 3))
    return ops.reshape(x, (-1, time_steps, tokens, heads * head_dim))


def attention_product(q, k, v, association):
    """`Q K^T V` per head on `(batch * T, heads, N, d)` tensors, no softmax."""
    if association == "kv_first":
        return ops.matmul(q, ops.matmul(ops.transpose(k, (0, 1, 3, 2)), v))
    return ops.matmul(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))), v)


class SpikingSelfAttention(keras.layers.Layer):
    """Base class of the spiking attention sub-blocks.

    Args:
        num_heads: number of heads; `D` must be divisible by it.
        attn_v_threshold: threshold of the attention-internal neuron.
        neuron_config: dict of `LIF` arguments for every neuron of the block
            (`tau`, `v_threshold`, ...); SPEC §2.1 defaults when `None`.
        association: `"auto"` (cheaper of the two), `"kv_first"` or
            `"qk_first"`; used by the variants with a `Q K^T V` product.
        **kwargs: standard layer arguments.
    """

    def __init__(
        self,
        num_heads=8,
        attn_v_threshold=0.5,
        neuron_config=None,
        association="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if association not in ASSOCIATIONS:
            raise ValueError(
                f"Unknown association {association!r}; use one of {ASSOCIATIONS}."
            )
        self.num_heads = int(num_heads)
        self.attn_v_threshold = float(attn_v_threshold)
        self.neuron_config = dict(neuron_config or {})
        self.association = association

    def neuron(self, name, neuron_class=LIF, **overrides):
        """A neuron of this block with the block's settings and `overrides`."""
        config = {**self.neuron_config, **overrides}
        return neuron_class(**config, dtype=self.dtype_policy, name=name)

    def projection(self, name, use_bias):
        return keras.layers.Dense(
            self.dim,
            use_bias=use_bias,
            kernel_initializer=conv_kernel_initializer(),
            dtype=self.dtype_policy,
            name=name,
        )

    def batch_norm(self, name):
        return SpikingBatchNormalization(dtype=self.dtype_policy, name=name)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"{self.__class__.__name__} expects a membrane tensor shaped "
                f"(batch, T, N, D), got {tuple(input_shape)}."
            )
        _, self.time_steps, self.num_tokens, self.dim = input_shape
        if self.dim % self.num_heads:
            raise ValueError(
                f"Width D={self.dim} is not divisible by num_heads="
                f"{self.num_heads}."
            )
        self.head_dim = self.dim // self.num_heads
        self.product_association = (
            cheaper_association(self.num_tokens, self.head_dim)
            if self.association == "auto"
            else self.association
        )
        self.shortcut_lif = self.neuron("shortcut_lif")
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", self.projection(f"{name}_conv", False))
            setattr(self, f"{name}_bn", self.batch_norm(f"{name}_bn"))
        self.proj_conv = self.projection("proj_conv", True)
        self.proj_bn = self.batch_norm("proj_bn")
        self.build_attention_neurons()
        for layer in self._flatten_layers(include_self=False, recursive=False):
            layer.build(input_shape)

    def build_attention_neurons(self):
        raise NotImplementedError

    def attend(self, q, k, v):
        """Spike tensor `(batch, T, N, D)` from the normalised q, k, v."""
        raise NotImplementedError

    def call(self, inputs, training=None):
        spikes = self.shortcut_lif(inputs)
        q = self.q_bn(self.q_conv(spikes), training=training)
        k = self.k_bn(self.k_conv(spikes), training=training)
        v = self.v_bn(self.v_conv(spikes), training=training)
        attended = self.attend(q, k, v)
        return inputs + self.proj_bn(self.proj_conv(attended), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "attn_v_threshold": self.attn_v_threshold,
                "neuron_config": self.neuron_config,
                "association": self.association,
            }
        )
        return config
