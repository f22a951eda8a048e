"""Meta-SpikeFormer's transformer block (`MS_Block`, SPEC §10): an attention
sub-block whose projections are `RepConv`s, then the spiking MLP.

The attention arithmetic comes from the attention registry
(`keras_spiking_tf.layers.ATTENTIONS`), the same one the first family uses:
`rep_conv_attention_class(cls)` gives any registered variant RepConv
projections. The official Meta-SpikeFormer attention is the registry's
`"ssa"` (binary Q, K, V; `LIF_{0.5}(0.125 Q (K^T V))`), and `"a2os2a"`
puts the paper's attention in its place (SPEC §10, last bullet).
"""

import functools

import keras
from keras import ops

from keras_spiking_tf.layers.attention_variants import get_attention_class
from keras_spiking_tf.layers.lif_cell import check_neuron_config
from keras_spiking_tf.layers.spiking_mlp import SpikingMLP
from keras_spiking_tf.layers.spiking_mlp import check_mlp_ratio
from keras_spiking_tf.layers.spiking_patch_splitting import fold_time
from keras_spiking_tf.layers.spiking_patch_splitting import unfold_time
from keras_spiking_tf.layers.spiking_self_attention import cheaper_association
from keras_spiking_tf.layers.spiking_self_attention import check_attention_arguments
from keras_spiking_tf.layers.spiking_self_attention import check_attention_name
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_rep_conv import RepConv


class RepConvProjections:
    """Mixin over a registered attention class (a `SpikingSelfAttention`):
    q, k, v and the output projection become `RepConv + BN` on the token
    grid, as in the official `MS_Attention_RepConv_qkv_id`:

        S = LIF(U)                                  shortcut neuron
        q, k, v = BN(RepConv_q(S)), BN(RepConv_k(S)), BN(RepConv_v(S))
        A = attend(q, k, v)                         the variant, spikes
        out = U + BN(RepConv_proj(A))

    Input and output are membranes `(batch, T, H, W, C)`; `attend` sees
    tokens `(batch, T, H W, C)` in row-major order.
    """

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(
                f"{type(self).__name__} expects membranes shaped (batch, T, H, W, C), "
                f"got {tuple(input_shape)}."
            )
        batch, steps, height, width, self.dim = input_shape
        self.num_tokens = height * width
        self.grid_side = height if height == width else None
        if self.dim % self.num_heads:
            raise ValueError(
                f"Width C={self.dim} is not divisible by num_heads={self.num_heads}."
            )
        self.head_dim = self.dim // self.num_heads
        self.product_association = (
            cheaper_association(self.num_tokens, self.head_dim)
            if self.association == "auto"
            else self.association
        )
        self.shortcut_lif = self.neuron("shortcut_lif")
        for name in ("q", "k", "v", "proj"):
            setattr(self, f"{name}_conv", RepConv(self.dim, dtype=self.dtype_policy,
                                                  name=f"{name}_conv"))
            setattr(self, f"{name}_bn", self.batch_norm(f"{name}_bn"))
        self.build_attention_neurons()
        frame = (batch, height, width, self.dim)
        tokens = (batch, steps, self.num_tokens, self.dim)
        for layer in self._flatten_layers(include_self=False, recursive=False):
            if isinstance(layer, RepConv) or layer.name.endswith("_bn"):
                layer.build(frame)
            elif layer is self.shortcut_lif:
                layer.build(input_shape)
            else:
                layer.build(tokens)

    def batch_norm_folds(self):
        """Each RepConv's folds, its last BatchNorm composed with the
        BatchNorm after the RepConv (`q_bn`, ...): two BatchNorms in a row
        fold into the RepConv's `pointwise` convolution
        (`RepConv.batch_norm_folds`)."""
        return [
            fold
            for name in ("q", "k", "v", "proj")
            for fold in getattr(self, f"{name}_conv").batch_norm_folds(
                following=(getattr(self, f"{name}_bn"),)
            )
        ]

    def project(self, name, frames, training):
        conv, bn = getattr(self, f"{name}_conv"), getattr(self, f"{name}_bn")
        return bn(conv(frames, training=training), training=training)

    def call(self, inputs, training=None):
        _, steps, height, width, dim = inputs.shape
        spikes = fold_time(self.shortcut_lif(inputs))

        def tokens(frames):
            return ops.reshape(frames, (-1, steps, height * width, dim))

        q, k, v = (tokens(self.project(name, spikes, training)) for name in ("q", "k", "v"))
        attended = fold_time(ops.reshape(self.attend(q, k, v), (-1, steps, height, width, dim)))
        return inputs + unfold_time(self.project("proj", attended, training), steps)


@functools.lru_cache(maxsize=None)
def rep_conv_attention_class(attention_class):
    """`attention_class` (a registered attention) with RepConv projections.

    Example:

    ```python
    cls = rep_conv_attention_class(get_attention_class("a2os2a"))
    attention = cls(num_heads=8)
    membrane = attention(keras.random.normal((2, 4, 14, 14, 384)))
    ```
    """
    return type(
        f"RepConv{attention_class.__name__}",
        (RepConvProjections, attention_class),
        {"__doc__": f"{attention_class.__name__} with RepConv projections (RepConvProjections)."},
    )


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class MSBlock(keras.layers.Layer):
    """`MS_Block`: `U' = U + Attn(U)`, `out = U' + MLP(U')`.

    `Attn` is the registered attention `attention` with RepConv projections
    (`rep_conv_attention_class`), `MLP` is `SpikingMLP` (LIF -> 1x1 conv
    with bias -> BN -> LIF -> 1x1 conv with bias -> BN, the official
    `MS_MLP`) over the `H W` tokens. Both add their input themselves.

    Args:
        attention: a registered attention name: `"ssa"` is the official
            Meta-SpikeFormer attention (`LIF_{0.5}(0.125 Q (K^T V))`, binary
            Q, K, V), `"a2os2a"` the paper's, `"sdsa"` SDT's.
        num_heads: attention heads (8 in the model).
        mlp_ratio: MLP hidden width as a multiple of `C`.
        attn_v_threshold: threshold of the attention-internal neuron (0.5).
        neuron_config: dict of `LIF` arguments shared by all neurons.
        association: `Q K^T V` product order (`"auto"`: the cheaper).
        **kwargs: standard layer arguments.

    Example:

    ```python
    block = MSBlock(attention="ssa")
    membrane = block(keras.random.normal((2, 4, 14, 14, 384)))   # same shape
    ```
    """

    def __init__(
        self,
        attention="ssa",
        num_heads=8,
        mlp_ratio=4,
        attn_v_threshold=0.5,
        neuron_config=None,
        association="auto",
        **kwargs,
    ):
        check_attention_name("attention", attention)
        check_attention_arguments(num_heads, attn_v_threshold, association, False)
        check_mlp_ratio(mlp_ratio)
        neuron_config = check_neuron_config(neuron_config)
        super().__init__(**kwargs)
        self.attention = attention
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.attn_v_threshold = attn_v_threshold
        self.neuron_config = neuron_config
        self.association = association
        self.attn = rep_conv_attention_class(get_attention_class(attention))(
            num_heads=num_heads,
            attn_v_threshold=attn_v_threshold,
            neuron_config=neuron_config,
            association=association,
            dtype=self.dtype_policy,
            name="attn",
        )
        self.mlp = SpikingMLP(
            mlp_ratio=mlp_ratio, neuron_config=neuron_config, dtype=self.dtype_policy, name="mlp"
        )

    def build(self, input_shape):
        batch, steps, height, width, channels = input_shape
        self.attn.build(input_shape)
        self.mlp.build((batch, steps, height * width, channels))

    def call(self, inputs, training=None):
        _, steps, height, width, channels = inputs.shape
        x = self.attn(inputs, training=training)
        tokens = ops.reshape(x, (-1, steps, height * width, channels))
        tokens = self.mlp(tokens, training=training)
        return ops.reshape(tokens, (-1, steps, height, width, channels))

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
            }
        )
        return config
