"""The attention sub-block shared by A2OS2A, SDSA and SSA (design.md §3.2),
and the registry of attention variants.

On a membrane tensor `U` of shape `(batch, T, N, D)`:

    S = LIF(U)                                   shortcut neuron
    q, k, v = BN(S W_q), BN(S W_k), BN(S W_v)    1x1 convs = per-token Dense
    A = attend(q, k, v)                          the variant, a spike tensor
    out = U + BN(A W_proj + b_proj)              membrane shortcut

A variant is a subclass that defines `build_attention_neurons()`,
`attend()` and `products()` (its matrix products, for the energy estimate and
the addition-only audit), registered under its name with
`@register_attention("name")`; that name is then accepted everywhere an
attention is chosen (`attention=` of the backbone and `from_preset`,
`kst-train --attention`, `kst-convert-sdt --init_attention`). The layer
names (`q_conv`, `q_bn`, ..., `proj_conv`, `proj_bn`) mirror the SDT
checkpoint keys of design.md §5.
"""

import dataclasses

import keras
from keras import ops

from keras_spiking_tf import validation
from keras_spiking_tf.layers.lif_cell import check_neuron_config
from keras_spiking_tf.layers.spiking_block import SpikingBlock

ASSOCIATIONS = ("auto", "kv_first", "qk_first")
ATTENTIONS = {}
MAX_HEADS = 4096


def check_attention_arguments(num_heads, attn_v_threshold, association, erode):
    """The arguments shared by every attention sub-block, checked and in
    normal form: `(num_heads, attn_v_threshold, association, erode)`.

    Example:

    ```python
    num_heads, threshold, association, erode = check_attention_arguments(8, 0.5, "auto", False)
    ```
    """
    return (
        validation.check_integer("num_heads", num_heads, minimum=1, maximum=MAX_HEADS),
        validation.check_number(
            "attn_v_threshold", attn_v_threshold, minimum=0.0, exclusive_minimum=True
        ),
        validation.check_choice("association", association, ASSOCIATIONS, what="association"),
        validation.check_bool("erode", erode),
    )


def register_attention(name):
    """Class decorator: registers an attention variant under `name`.

    Example:

    ```python
    @register_attention("my_attention")
    @keras.saving.register_keras_serializable(package="my_package")
    class MyAttention(SpikingSelfAttention):
        ...
    ```
    """

    validation.check_string("name", name)

    def register(cls):
        if name in ATTENTIONS and ATTENTIONS[name] is not cls:
            raise ValueError(f"An attention named {name!r} is registered already: {ATTENTIONS[name]}.")
        ATTENTIONS[name] = cls
        cls.attention_name = name
        return cls

    return register


def get_attention_class(name):
    """The attention class registered as `name` (e.g. `"a2os2a"`)."""
    return ATTENTIONS[check_attention_name("name", name)]


def check_attention_name(argument, name):
    """`name`, which must be a registered attention; `argument` is the
    argument that gave it (`"attention"`, `"name"`), for the message."""
    return validation.check_choice(argument, name, sorted(ATTENTIONS), what="attention")


@dataclasses.dataclass
class AttentionProduct:
    """One matrix product of an attention sub-block, per image and step.

    Attributes:
        operands: what is multiplied, e.g. `"Q x K^T"`.
        streamed: the layer (a neuron of the block) whose output spikes are
            the streamed operand.
        other_kind: the kind of the other operand: `"real"`, `"binary"`,
            `"ternary"` or `"integer"` (counts of spikes).
        flops: multiply-accumulates if computed densely.
    """

    operands: str
    streamed: keras.layers.Layer
    other_kind: str
    flops: int


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


class SpikingSelfAttention(SpikingBlock):
    """Base class of the spiking attention sub-blocks.

    Args:
        num_heads: number of heads; `D` must be divisible by it.
        attn_v_threshold: threshold of the attention-internal neuron.
        neuron_config: dict of `LIF` arguments for every neuron of the block
            (`tau`, `v_threshold`, ...); design.md §2.1 defaults when `None`.
        association: `"auto"` (cheaper of the two), `"kv_first"` or
            `"qk_first"`; used by the variants with a `Q K^T V` product.
        erode: SDT's CIFAR10-DVS "erode" (design.md §9): a 3x3 max pool,
            stride 1, over the token grid of each time step (the tokens
            must form a square grid), applied to K, V, SDSA's K*V and the
            block's attention output. Off by default.
        **kwargs: standard layer arguments.
    """

    attention_name = None  # set by @register_attention

    def __init__(
        self,
        num_heads=8,
        attn_v_threshold=0.5,
        neuron_config=None,
        association="auto",
        erode=False,
        **kwargs,
    ):
        num_heads, attn_v_threshold, association, erode = check_attention_arguments(
            num_heads, attn_v_threshold, association, erode
        )
        check_neuron_config(neuron_config)
        super().__init__(neuron_config=neuron_config, **kwargs)
        self.num_heads = num_heads
        self.attn_v_threshold = attn_v_threshold
        self.association = association
        self.erode = erode

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"{self.__class__.__name__} expects a membrane tensor shaped "
                f"(batch, T, N, D), got {tuple(input_shape)}."
            )
        _, _, self.num_tokens, self.dim = input_shape
        self.grid_side = int(round(self.num_tokens**0.5))
        if self.erode and self.grid_side**2 != self.num_tokens:
            raise ValueError(
                f"erode=True pools over a square token grid, but there are {self.num_tokens} "
                "tokens; use an image size whose token grid is square."
            )
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
            setattr(self, f"{name}_conv", self.dense(self.dim, f"{name}_conv", use_bias=False))
            setattr(self, f"{name}_bn", self.batch_norm(f"{name}_bn"))
        self.proj_conv = self.dense(self.dim, "proj_conv")
        self.proj_bn = self.batch_norm("proj_bn")
        self.build_attention_neurons()
        for layer in self._flatten_layers(include_self=False, recursive=False):
            layer.build(input_shape)

    def build_attention_neurons(self):
        raise NotImplementedError

    def attend(self, q, k, v):
        """Spike tensor `(batch, T, N, D)` from the normalised q, k, v."""
        raise NotImplementedError

    def products(self):
        """The block's matrix products, a list of `AttentionProduct`."""
        raise NotImplementedError

    def eroded(self, x):
        """SDT's erode of `x` `(batch, T, N, C)` if `erode`, else `x`: a 3x3
        max pool, stride 1 (symmetric padding, which a max ignores), over
        each step's token grid."""
        if not self.erode:
            return x
        steps, channels = x.shape[1], x.shape[-1]
        grid = ops.reshape(x, (-1, self.grid_side, self.grid_side, channels))
        pooled = ops.max_pool(grid, pool_size=3, strides=1, padding="same",
                              data_format="channels_last")
        return ops.reshape(pooled, (-1, steps, self.num_tokens, channels))

    def matrix_products(self, key_kind, values):
        """The two products of `Q K^T V` in the association computed, with
        `values` the neuron whose spikes are `V`, for `key_kind` keys."""
        partial_kind = "integer" if key_kind == "binary" else "real"
        heads, tokens, head_dim = self.num_heads, self.num_tokens, self.head_dim
        if self.product_association == "kv_first":
            flops = heads * tokens * head_dim * head_dim
            return [
                AttentionProduct("K^T x V", values, key_kind, flops),
                AttentionProduct("Q x (K^T V)", self.q_lif, partial_kind, flops),
            ]
        flops = heads * tokens * tokens * head_dim
        return [
            AttentionProduct("Q x K^T", self.q_lif, key_kind, flops),
            AttentionProduct("(Q K^T) x V", values, partial_kind, flops),
        ]

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
                "association": self.association,
                "erode": self.erode,
            }
        )
        return config
