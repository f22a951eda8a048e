"""The inference graph built for deployment: `optimize_for_inference`.

A trained network is rewritten for inference in four ways; `export` uses the
result by default, and it can be used for Keras `predict` as well:

1. **BatchNorm folded** into the convolution or dense layer before it
   (`FoldsBatchNorm`), as each block declares it
   (`SpikingBlock.batch_norm_folds`, whatever the model family; BatchNorms
   in a row are composed first): one weight product instead of a product, a
   subtraction, a multiplication and an addition per element. The kernel and
   bias are computed in float64 and rounded once to float32, so the folded
   graph computes the same function with *different float32 rounding*: a
   membrane that lies within a few float32 units of a threshold can fire in
   one graph and not the other, which moves that sample's logits by about
   |w|/T. Measured: on the trained digits preset no spike of the 360 test
   images flips (logits equal to 1e-6); on a random-init st_2_256_cifar10
   (membranes crowd the thresholds) one image in 16 moves by ~0.04. The
   LiteRT and ONNX converters fold an unfolded BatchNorm themselves, so
   folding here buys no measurable speed in those files.
2. **Neurons without comparisons** (`LIFCell.fire_and_reset_without_comparison`):
   `H >= V_th` as `clip(floor(H - V_th) + 1, 0, 1)`, for an integer
   threshold `clip(floor(H) + 1 - V_th, 0, 1)`, and the reset as a product;
   the time steps split and concatenated instead of unstacked and stacked,
   the first step charged from rest without a zero tensor and the last one
   not reset (`integrate_for_inference`). The same spikes bit for bit; the
   LiteRT CPU delegate (XNNPACK) runs all of it, where a comparison, select
   or cast falls back to LiteRT's reference kernels and splits the graph.
3. **SPS pooling padding** (`max_pool_3x3_stride_2`): zeros for the pooled
   spikes (>= 0), copies of the border for the pooled membrane: the same
   values as PyTorch's `-inf` padding, which the delegate does not take.
4. **Token products with static shapes** (`TokenDense`): Keras' `Dense` on
   a `(batch, T, N, D)` tensor computes its reshapes at run time, which also
   splits the delegated graph; the same values.

The copy is float32 (the deployment graphs are; quantization is `export`'s
option) and for inference only: a folded BatchNorm refuses `training=True`.

For Keras `predict` on TensorFlow the copy is also set to compile whole with
XLA (`jit_compile`), which Keras otherwise leaves off on a CPU: XLA fuses
the unrolled neuron arithmetic into few loops, where the plain `tf.function`
runs each elementwise operation over the whole tensor on its own
(`benchmarks/export_benchmark.py`, variant `keras+optimized_xla`;
docs/guides/edge-export.md). JAX compiles with XLA anyway; on PyTorch the copy keeps
Keras' default (eager), `torch.compile` was not measured here.
"""

import keras

from keras_spiking_tf import validation
from keras_spiking_tf.layers.batch_norm import SpikingBatchNormalization
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.layers.spiking_block import SpikingBlock
from keras_spiking_tf.layers.spiking_patch_splitting import SpikingPatchSplitting
from keras_spiking_tf.layers.synapses import INFERENCE_FORMS


def _as_float32_policy(config):
    """`config` with every dtype policy replaced by float32."""
    if isinstance(config, list):
        return [_as_float32_policy(item) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        return {**config, "config": {**config.get("config", {}), "name": "float32"}}
    converted = {key: _as_float32_policy(value) for key, value in config.items()}
    if isinstance(converted.get("dtype"), str) and converted["dtype"].startswith("mixed_"):
        converted["dtype"] = "float32"
    return converted


def float32_copy(model):
    """A copy of `model` with its weights that computes in float32 (also
    when `model` was built under a mixed-precision policy)."""
    config = _as_float32_policy(keras.saving.serialize_keras_object(model))
    config.pop("compile_config", None)  # a copy for inference needs no optimizer or loss
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def check_every_batch_norm_folded(model):
    """Raises if a `SpikingBatchNormalization` of `model` was left unfolded:
    no block declared it (`SpikingBlock.batch_norm_folds`)."""
    left = [
        layer.path
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, SpikingBatchNormalization) and not layer.folded
    ]
    if left:
        raise ValueError(
            f"BatchNorm {', '.join(left)} is not folded: no block declares it in "
            "`batch_norm_folds()`. Declare it in its block, or pass fold_batch_norm=False."
        )


def optimize_for_inference(model, fold_batch_norm=True, jit_compile="auto"):
    """A float32 copy of `model` with the inference graph of the module
    docstring; `model` itself is unchanged.

    Args:
        model: a classifier or backbone of this library (any Keras model
            whose spiking layers are this library's).
        fold_batch_norm: fold every BatchNorm into its synapse (rewrite 1,
            the one that changes float32 rounding); `False` keeps the
            BatchNorms and so the reference graph's values bit for bit.
        jit_compile: what the copy's `predict` compiles with, as in
            `keras.Model.compile`. `"auto"`: XLA (`True`) on TensorFlow,
            Keras' own choice on the other backends (JAX: XLA; PyTorch:
            eager). It changes only how `predict` runs, not the graph that
            `export` converts.

    Returns:
        The new model (inference only).

    Raises:
        ValueError: with `fold_batch_norm`, a BatchNorm that no block
            declares in `batch_norm_folds()` (nothing is left half folded:
            `model` itself is unchanged).

    Example:

    ```python
    classifier = keras_spiking_tf.from_preset("st_2_64_digits")
    deployed = keras_spiking_tf.optimize_for_inference(classifier)
    logits = deployed.predict(images)
    ```
    """
    if not isinstance(model, keras.Model):
        raise validation.invalid("model", model, "a Keras model of this library's layers",
                                 error=TypeError)
    validation.check_bool("fold_batch_norm", fold_batch_norm)
    validation.check_bool_or_choice("jit_compile", jit_compile, ("auto",))
    copy = float32_copy(model)
    for layer in copy._flatten_layers(include_self=False):
        if type(layer) in INFERENCE_FORMS:
            # Its inference form: a subclass with the same state (synapses.py).
            layer.__class__ = INFERENCE_FORMS[type(layer)]
    for layer in copy._flatten_layers(include_self=False):
        if isinstance(layer, (LIF, SpikingPatchSplitting)):
            layer.inference_graph = True
        if fold_batch_norm and isinstance(layer, SpikingBlock):
            for synapse, batch_norms in layer.batch_norm_folds():
                synapse.fold_batch_norm(*batch_norms)
    if fold_batch_norm:
        check_every_batch_norm_folded(copy)
    if jit_compile == "auto" and keras.backend.backend() == "tensorflow":
        jit_compile = True
    if jit_compile != "auto":
        copy.jit_compile = jit_compile  # what `predict` reads; no optimizer needed
    return copy
