"""Recording what flows through a model during one eager forward pass.

`record_forward(model, images)` runs `model` once, eagerly, and returns, in
execution order, every spiking neuron's output and the input of every
convolution (depthwise ones too) and dense layer, as NumPy arrays. It
temporarily wraps the `call` of those layers; the model itself is not
changed. Works with any model built from this package's layers, in every
backend.
"""

import contextlib
import dataclasses

import keras
import numpy as np

from keras_spiking_tf import validation
from keras_spiking_tf.input_checks import check_call_inputs
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.layers.lif import TernaryLIF
from keras_spiking_tf.layers.spiking_self_attention import SpikingSelfAttention


# The layers whose input `record_forward` records: the weight products.
WEIGHT_PRODUCT_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


@dataclasses.dataclass
class Record:
    """One recorded tensor.

    Attributes:
        name: the layer's path (e.g. `".../block_0/attn/q_lif"`).
        layer: the layer object.
        kind: `"neuron"` (the value is its output spikes, `(B, T, ...)`) or
            `"product"` (the value is the input of a Conv2D, DepthwiseConv2D
            or Dense).
        value: the tensor as a NumPy array.
    """

    name: str
    layer: keras.layers.Layer
    kind: str
    value: np.ndarray


def operand_kind(values):
    """`"binary"` ({0,1}), `"ternary"` ({-1,0,1}) or `"real"`."""
    values = np.asarray(values)
    if np.all((values == 0) | (values == 1)):
        return "binary"
    if np.all((values == 0) | (values == 1) | (values == -1)):
        return "ternary"
    return "real"


def firing_rate(values):
    """Fraction of non-zero elements (a ternary -1 counts like a +1)."""
    return float(np.count_nonzero(np.asarray(values)) / np.asarray(values).size)


@contextlib.contextmanager
def _wrapped_calls(model, records):
    wrapped = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, LIF):
            kind = "neuron"
        elif isinstance(layer, WEIGHT_PRODUCT_LAYERS):
            kind = "product"
        else:
            continue
        original = layer.call

        def call(*args, _layer=layer, _kind=kind, _original=original, **kwargs):
            outputs = _original(*args, **kwargs)
            value = outputs if _kind == "neuron" else args[0]
            records.append(Record(_layer.path, _layer, _kind, keras.ops.convert_to_numpy(value)))
            return outputs

        layer.call = call
        wrapped.append(layer)
    try:
        yield
    finally:
        for layer in wrapped:
            del layer.call


def check_model_and_images(model, images, receiver, stacklevel=3):
    """The public analysis functions' common arguments: `model` a Keras
    model or layer, `images` a batch (`validation.check_batch`), then the
    `InputWarning` check of their values (`check_call_inputs`)."""
    if not isinstance(model, keras.layers.Layer):
        raise validation.invalid(
            "model", model, "a Keras model built from this package's layers (a classifier or "
            "backbone)", error=TypeError)
    validation.check_batch("images", images)
    check_call_inputs(model, images, receiver, stacklevel=stacklevel + 1)


def record_forward(model, images):
    """Runs `model(images)` eagerly; returns `(outputs, [Record, ...])`.

    `images` are the model's `call` inputs (preprocessed for a classifier);
    raw-looking pixels get an `InputWarning` (`input_checks.check_call_inputs`).
    """
    check_model_and_images(model, images, "record_forward()")
    return recorded_forward(model, images)


def recorded_forward(model, images):
    """`record_forward` without the input check (for the analysis
    functions, which check their inputs themselves)."""
    records = []
    with _wrapped_calls(model, records):
        outputs = model(images, training=False)
    return keras.ops.convert_to_numpy(outputs), records


def attention_layers(model):
    """Every attention sub-block in `model`."""
    layers = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, SpikingSelfAttention)
    ]
    return sorted(layers, key=lambda layer: layer.path)


def is_ternary_neuron(layer):
    return isinstance(layer, TernaryLIF)
