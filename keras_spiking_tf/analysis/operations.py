"""Every product of a forward pass, with its operands' kinds and size.

Shared by the energy report and the addition-only audit. A *product* is a
convolution (depthwise ones included), a dense layer (1x1 convs included)
or an attention matrix product. For each we know the FLOPs per image and
time step and whether its streamed operand is real-valued or spikes (judged
from the values recorded in a real forward pass, not from the architecture).
"""

import dataclasses
import math

import keras

from keras_spiking_tf.analysis.recording import attention_layers
from keras_spiking_tf.analysis.recording import firing_rate
from keras_spiking_tf.analysis.recording import operand_kind
from keras_spiking_tf.analysis.recording import recorded_forward


@dataclasses.dataclass
class Product:
    """One product of the network.

    Attributes:
        layer: where it happens (layer path, plus the product for attention).
        operation: `"conv"`, `"depthwise_conv"`, `"dense"` or `"attention"`.
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
    """`H_out W_out k_h k_w C_in C_out` for a convolution; for a depthwise
    one (kernel `(k_h, k_w, C, multiplier)`) the same product of its
    kernel's shape is `H_out W_out k_h k_w C multiplier`: each output
    channel sees one input channel."""
    _, height, width, _ = layer.compute_output_shape(input_shape)
    return height * width * math.prod(layer.kernel.shape)


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
        is_conv = not isinstance(layer, keras.layers.Dense)
        shape = record.value.shape
        flops = _conv_flops(layer, shape) if is_conv else _dense_flops(layer, shape)
        operation = "conv" if is_conv else "dense"
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            operation = "depthwise_conv"
        products.append(
            Product(
                layer=record.name,
                operation=operation,
                operands="input x kernel",
                input_kind=operand_kind(record.value),
                other_kind="real",
                flops=int(flops),
                input_firing_rate=firing_rate(record.value),
            )
        )
    return products


def _attention_products(model, records):
    """Each attention block's own account of its products (`products()`),
    with the streamed operand's kind and rate read off the recorded spikes."""
    outputs = {id(r.layer): r.value for r in records if r.kind == "neuron"}
    return [
        Product(
            layer=f"{attention.path}:{product.operands}",
            operation="attention",
            operands=product.operands,
            input_kind=operand_kind(outputs[id(product.streamed)]),
            other_kind=product.other_kind,
            flops=int(product.flops),
            input_firing_rate=firing_rate(outputs[id(product.streamed)]),
        )
        for attention in attention_layers(model)
        for product in attention.products()
    ]


def network_products(model, images):
    """All products of `model` on `images`, in execution order (attention
    products after the weight layers), and the model's `T`. `images` are
    `call` inputs; they are not checked here (the public analysis
    functions check theirs)."""
    _, records = recorded_forward(model, images)
    backbone = getattr(model, "backbone", model)
    time_steps = backbone.time_steps
    return _weight_products(records) + _attention_products(model, records), time_steps
