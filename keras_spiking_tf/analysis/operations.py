"""Every product of a forward pass, with its operands' kinds and size.

Shared by the energy report and the addition-only audit. A *product* is a
convolution, a dense layer (1x1 convs included) or an attention matrix
product. For each we know the FLOPs per image and time step and whether its
streamed operand is real-valued or spikes (judged from the values recorded
in a real forward pass, not from the architecture).
"""

import dataclasses
import math

from keras_spiking_tf.analysis.recording import attention_layers
from keras_spiking_tf.analysis.recording import firing_rate
from keras_spiking_tf.analysis.recording import operand_kind
from keras_spiking_tf.analysis.recording import record_forward
from keras_spiking_tf.layers.a2os2a import A2OS2A
from keras_spiking_tf.layers.sdsa import SDSA


@dataclasses.dataclass
class Product:
    """One product of the network.

    Attributes:
        layer: where it happens (layer path, plus the product for attention).
        operation: `"conv"`, `"dense"` or `"attention"`.
        operands: description, e.g. `"Q x K^T"` or `"input x kernel"`.
        input_kind: kind of the streamed operand: `real`/`binary`/`ternary`.
        other_kind: kind of the other operand (weights are `real`).
        flops: multiply-accumulates per image per time step if dense.
        input_firing_rate: non-zero fraction of the streamed operand.
    """

    layer: str
    operation: str
    operands: str
    input_kind: str
    other_kind: str
    flops: int
    input_firing_rate: float

    @property
    def needs_multiplication(self):
        return self.input_kind == "real" and self.other_kind == "real"


def _conv_flops(layer, input_shape):
    _, height, width, _ = layer.compute_output_shape(input_shape)
    kernel_h, kernel_w, c_in, c_out = layer.kernel.shape
    return kernel_h * kernel_w * height * width * c_in * c_out


def _dense_flops(layer, input_shape):
    tokens = math.prod(input_shape[2:-1])  # (B, T, [N,] features)
    c_in, c_out = layer.kernel.shape
    return tokens * c_in * c_out


def _weight_products(records):
    products = []
    for record in records:
        if record.kind != "product":
            continue
        layer = record.layer
        is_conv = layer.__class__.__name__.startswith("Conv")
        shape = record.value.shape
        flops = _conv_flops(layer, shape) if is_conv else _dense_flops(layer, shape)
        products.append(
            Product(
                layer=record.name,
                operation="conv" if is_conv else "dense",
                operands="input x kernel",
                input_kind=operand_kind(record.value),
                other_kind="real",
                flops=int(flops),
                input_firing_rate=firing_rate(record.value),
            )
        )
    return products


def _attention_operands(attention, outputs):
    """`(name, streamed spikes, kind of the other operand, flops)` of each
    matrix product of one attention sub-block, per image and time step."""
    heads, tokens = attention.num_heads, attention.num_tokens
    head_dim = attention.head_dim
    q = outputs[id(attention.q_lif)]
    v = outputs[id(attention.v_lif)]
    if isinstance(attention, SDSA):
        size = tokens * attention.dim
        return [
            ("K * V (sum over tokens)", v, "binary", size),
            ("Q * KV", q, "binary", size),
        ]
    # A2OS2A's K is ReLU(BN(k)), real; SSA's is binary. The partial product
    # (K^T V or Q K^T) is then real, or integer counts for SSA.
    k_kind = "real" if isinstance(attention, A2OS2A) else "binary"
    partial_kind = "real" if k_kind == "real" else "integer"
    if attention.product_association == "kv_first":
        size = heads * tokens * head_dim * head_dim
        return [("K^T x V", v, k_kind, size), ("Q x (K^T V)", q, partial_kind, size)]
    size = heads * tokens * tokens * head_dim
    return [("Q x K^T", q, k_kind, size), ("(Q K^T) x V", v, partial_kind, size)]


def _attention_products(model, records):
    outputs = {id(r.layer): r.value for r in records if r.kind == "neuron"}
    return [
        Product(
            layer=f"{attention.path}:{name}",
            operation="attention",
            operands=name,
            input_kind=operand_kind(spikes),
            other_kind=other_kind,
            flops=int(flops),
            input_firing_rate=firing_rate(spikes),
        )
        for attention in attention_layers(model)
        for name, spikes, other_kind, flops in _attention_operands(attention, outputs)
    ]


def network_products(model, images):
    """All products of `model` on `images`, in execution order (attention
    products after the weight layers), and the model's `T`."""
    _, records = record_forward(model, images)
    backbone = getattr(model, "backbone", model)
    time_steps = backbone.time_steps
    return _weight_products(records) + _attention_products(model, records), time_steps
