"""The inference graph (`keras_spiking_tf.optimize_for_inference`): BatchNorm
folding against a float64 NumPy computation, exact pool paddings, and the
whole optimised network against the reference graph.

Backend-agnostic: run under KERAS_BACKEND=tensorflow, jax and torch. Models
are tiny (1 block, D=32, T=2, 16x16 images).
"""

import keras
import numpy as np
import pytest
from conftest import to_numpy

import keras_spiking_tf
from keras_spiking_tf.layers import LIF
from keras_spiking_tf.layers import SpikingBatchNormalization
from keras_spiking_tf.layers import SpikingBlock
from keras_spiking_tf.layers.spiking_patch_splitting import max_pool_3x3_stride_2
from keras_spiking_tf.layers.synapses import SynapticConv2D
from keras_spiking_tf.layers.synapses import TokenDense
from keras_spiking_tf.models import SpikingTransformerBackbone
from keras_spiking_tf.models import SpikingTransformerImageClassifier

HIDDEN_DIM = 32


def random_batch_norm(rng, channels, input_shape):
    bn = SpikingBatchNormalization()
    bn.build(input_shape)
    bn.gamma.assign(rng.uniform(-1.5, 1.5, channels).astype("float32"))
    bn.beta.assign(rng.normal(0, 0.5, channels).astype("float32"))
    bn.moving_mean.assign(rng.normal(0, 0.7, channels).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.01, 3.0, channels).astype("float32"))
    return bn


def numpy_batch_norm(y, bn):
    """BatchNorm at inference in float64, from its float32 variables."""
    value = lambda v: np.asarray(to_numpy(v), "float64")  # noqa: E731
    normalised = (y - value(bn.moving_mean)) / np.sqrt(value(bn.moving_variance) + bn.epsilon)
    return value(bn.gamma) * normalised + value(bn.beta)


@pytest.mark.parametrize("use_bias", [False, True])
def test_dense_folding_matches_float64_numpy(rng, use_bias):
    x = rng.integers(0, 2, (3, 2, 7, 24)).astype("float32")  # spikes (B, T, N, D)
    dense = TokenDense(40, use_bias=use_bias)
    dense.build(x.shape)
    if use_bias:
        dense.bias.assign(rng.normal(0, 1, 40).astype("float32"))
    bn = random_batch_norm(rng, 40, (3, 2, 7, 40))
    kernel = np.asarray(to_numpy(dense.kernel), "float64")
    y = x.astype("float64") @ kernel
    if use_bias:
        y = y + np.asarray(to_numpy(dense.bias), "float64")
    expected = numpy_batch_norm(y, bn)

    dense.fold_batch_norm(bn)
    got = to_numpy(bn(dense(x), training=False))
    assert bn.folded
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-6 * np.abs(expected).max())


def test_conv_folding_matches_float64_numpy(rng):
    x = rng.integers(0, 2, (4, 9, 9, 5)).astype("float32")
    conv = SynapticConv2D(6, 3, padding="same", use_bias=False)
    conv.build(x.shape)
    bn = random_batch_norm(rng, 6, (4, 9, 9, 6))
    kernel = np.asarray(to_numpy(conv.kernel), "float64")
    padded = np.pad(x.astype("float64"), ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = np.zeros((4, 9, 9, 6))
    for i in range(3):
        for j in range(3):
            y += padded[:, i : i + 9, j : j + 9, :] @ kernel[i, j]
    expected = numpy_batch_norm(y, bn)

    conv.fold_batch_norm(bn)
    got = to_numpy(bn(conv(x), training=False))
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-6 * np.abs(expected).max())


def test_folded_batch_norm_refuses_training(rng):
    dense = TokenDense(4)
    dense.build((2, 3))
    bn = random_batch_norm(rng, 4, (2, 4))
    dense.fold_batch_norm(bn)
    with pytest.raises(ValueError, match="folded"):
        bn(np.ones((2, 4), "float32"), training=True)


@pytest.mark.parametrize("size", [8, 9])
def test_pool_paddings_equal_minus_infinity_padding(rng, size):
    membranes = rng.normal(-2, 1, (2, size, size, 3)).astype("float32")  # mostly < 0
    spikes = rng.integers(0, 2, (2, size, size, 3)).astype("float32")
    spikes[0] = 0.0  # windows of zeros only
    reference = to_numpy(max_pool_3x3_stride_2(membranes))
    np.testing.assert_array_equal(to_numpy(max_pool_3x3_stride_2(membranes, "edge")), reference)
    np.testing.assert_array_equal(
        to_numpy(max_pool_3x3_stride_2(spikes, "zero")), to_numpy(max_pool_3x3_stride_2(spikes))
    )
    # Zero padding is *not* -inf padding for negative values: the test can fail.
    assert not np.array_equal(to_numpy(max_pool_3x3_stride_2(membranes, "zero")), reference)


def tiny_classifier(rng, attention="a2os2a", pooling="1111", input_type="image"):
    backbone = SpikingTransformerBackbone(
        num_layers=1, hidden_dim=HIDDEN_DIM, time_steps=2, pooling=pooling,
        image_shape=(16, 16, 2), attention=attention, input_type=input_type,
    )
    model = SpikingTransformerImageClassifier(backbone=backbone, num_classes=5)
    for weight in model.weights:  # O(1) effects, random BatchNorm statistics
        shape = tuple(weight.shape)
        if len(shape) >= 2:
            value = rng.normal(0.0, 1.5 / np.sqrt(np.prod(shape[:-1])), shape)
        elif "variance" in weight.path:
            value = rng.uniform(0.3, 2.0, shape)
        elif "gamma" in weight.path:
            value = rng.uniform(0.8, 1.6, shape)
        else:
            value = rng.normal(0.0, 0.3, shape)
        weight.assign(value.astype("float32"))
    return model


@pytest.mark.parametrize(
    "attention,pooling,input_type",
    [("a2os2a", "1111", "image"), ("sdsa", "0011", "image"),
     ("ssa", "0101", "image"), ("a2os2a", "1111", "frames")],
)
def test_unfolded_inference_graph_equals_reference_bit_for_bit(rng, attention, pooling, input_type):
    model = tiny_classifier(rng, attention, pooling, input_type)
    shape = (16, *model.input_shape[1:]) if input_type == "image" else (16, 2, 16, 16, 2)
    x = rng.normal(0, 1.5, shape).astype("float32")
    reference = to_numpy(model(x, training=False))
    optimised = keras_spiking_tf.optimize_for_inference(model, fold_batch_norm=False)
    lifs = [layer for layer in optimised._flatten_layers() if isinstance(layer, LIF)]
    assert lifs and all(layer.inference_graph for layer in lifs)
    assert not any(getattr(layer, "inference_graph", False)
                   for layer in model._flatten_layers()), "the original is unchanged"
    np.testing.assert_array_equal(to_numpy(optimised(x, training=False)), reference)


def test_folded_inference_graph_folds_every_batch_norm_and_keeps_the_spikes(rng):
    model = tiny_classifier(rng)
    x = rng.normal(0, 1.5, (64, 16, 16, 2)).astype("float32")
    reference = to_numpy(model(x, training=False))
    optimised = keras_spiking_tf.optimize_for_inference(model)
    batch_norms = [l for l in optimised._flatten_layers() if isinstance(l, SpikingBatchNormalization)]
    assert len(batch_norms) == 5 + 4 + 2 and all(bn.folded for bn in batch_norms)
    pairs = [pair for layer in optimised._flatten_layers() if isinstance(layer, SpikingBlock)
             for pair in layer.synapse_batch_norm_pairs()]
    assert sorted(bn.name for _, bn in pairs) == sorted(bn.name for bn in batch_norms)
    got = to_numpy(optimised(x, training=False))
    # Logits are averages of the head's products with the last spikes: any
    # difference at all means some spike differs. Folding changes float32
    # rounding only, so almost every sample keeps every spike.
    same = np.all(got == reference, axis=1)
    assert same.mean() >= 0.9
    np.testing.assert_array_equal(got.argmax(1)[same], reference.argmax(1)[same])


def test_optimized_model_is_float32_under_mixed_precision(rng):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = tiny_classifier(rng)
    finally:
        keras.config.set_dtype_policy("float32")
    optimised = keras_spiking_tf.optimize_for_inference(model)
    assert all(layer.compute_dtype == "float32" for layer in optimised._flatten_layers())
    assert to_numpy(optimised(np.zeros((2, 16, 16, 2), "float32"))).dtype == np.float32


def test_inference_graph_and_xla_predict_keep_the_trained_digits_predictions():
    """On the shipped digits preset (digits test split, 360 images): the
    folded inference graph (whose `predict` is XLA-compiled on TensorFlow)
    and the XLA-compiled reference `predict` give every image the same class
    as the reference model, logits within 1e-4 (measured: 1e-6), and so the
    same accuracy against the labels."""
    from keras_spiking_tf.training.datasets import load_digits_arrays

    _, _, x_test, y_test = load_digits_arrays()
    model = keras_spiking_tf.from_preset("st_2_64_digits")
    reference = model.predict(x_test, verbose=0)
    accuracy = np.mean(reference.argmax(1) == y_test)
    assert accuracy >= 0.98

    optimized = keras_spiking_tf.optimize_for_inference(model)
    # "auto": XLA on TensorFlow (Keras would leave it off on a CPU) and on
    # JAX (Keras' own choice), eager on PyTorch.
    assert optimized.jit_compile is (keras.backend.backend() != "torch")
    assert keras_spiking_tf.optimize_for_inference(model, jit_compile=False).jit_compile is False
    got = optimized.predict(x_test, verbose=0)
    np.testing.assert_array_equal(got.argmax(1), reference.argmax(1))
    np.testing.assert_allclose(got, reference, atol=1e-4, rtol=0)

    if keras.backend.backend() == "tensorflow":
        model.compile(jit_compile=True)
        compiled = model.predict(x_test, verbose=0)
        np.testing.assert_array_equal(compiled.argmax(1), reference.argmax(1))
        np.testing.assert_allclose(compiled, reference, atol=1e-4, rtol=0)
