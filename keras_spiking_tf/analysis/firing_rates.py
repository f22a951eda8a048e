"""Firing rates of every spiking neuron, per time step (design.md §7)."""

import keras
import numpy as np

from keras_spiking_tf.analysis.recording import check_model_and_images
from keras_spiking_tf.analysis.recording import firing_rate
from keras_spiking_tf.analysis.recording import is_ternary_neuron
from keras_spiking_tf.analysis.recording import recorded_forward


def firing_rates(model, images):
    """Per neuron layer: the fraction of non-zero outputs at each time step.

    Args:
        model: any model built from this package's layers (a classifier or
            a backbone).
        images: a batch of `call` inputs (preprocessed images); raw-looking
            pixels get an `InputWarning` (`input_checks.check_call_inputs`).

    Returns:
        `{"layers": {path: {"per_step": [r_0, ..., r_T-1], "mean": r,
        "ternary": bool}}, "mean": mean over layers}`. A ternary neuron's
        -1 counts like a +1.

    Example:

    ```python
    rates = firing_rates(model, model.preprocessor(raw_images))
    rates["layers"]["block_0/attn/q_lif"]["mean"]
    ```
    """
    check_model_and_images(model, images, "firing_rates()")
    return unchecked_firing_rates(model, images)


def unchecked_firing_rates(model, images):
    """`firing_rates` without the input check."""
    _, records = recorded_forward(model, images)
    layers = {}
    for record in records:
        if record.kind != "neuron":
            continue
        spikes = record.value
        per_step = [firing_rate(spikes[:, t]) for t in range(spikes.shape[1])]
        layers[record.name] = {
            "per_step": per_step,
            "mean": firing_rate(spikes),
            "ternary": is_ternary_neuron(record.layer),
        }
    mean = float(np.mean([v["mean"] for v in layers.values()])) if layers else 0.0
    return {"layers": layers, "mean": mean}


def calibrate_batch_norm(model, images):
    """Sets every BatchNorm's moving statistics to those of `images`.

    A randomly initialised model keeps BN's initial statistics (mean 0,
    variance 1), under which its tiny conv outputs never reach threshold;
    SNN papers report random-init firing rates after estimating BN
    statistics on data (design.md §8). One training-mode pass with momentum 0
    does that; weights are untouched.

    `images` are `call` inputs (preprocessed images); raw-looking pixels
    get an `InputWarning` (`input_checks.check_call_inputs`).
    """
    check_model_and_images(model, images, "calibrate_batch_norm()")
    layers = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)


