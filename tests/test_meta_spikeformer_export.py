"""Meta-SpikeFormer (SPEC §10) in the inference graph and in edge export:
each block's declared BatchNorm folds (`batch_norm_folds`), RepConv's
`BatchNormAndPad` and its two BatchNorms in a row against a float64 NumPy
computation, the folded classifier against the unfolded one, and LiteRT and
ONNX files against Keras.

Models are tiny: widths (8, 16, 32, 48), one block per stage, T = 2,
32x32 images (a 2x2 token grid in the transformer stages).
"""

import keras
import numpy as np
import pytest
from conftest import to_numpy

import keras_spiking_tf
from keras_spiking_tf.analysis import calibrate_batch_norm
from keras_spiking_tf.analysis import record_forward
from keras_spiking_tf.layers import SpikingBatchNormalization
from keras_spiking_tf.layers import SpikingBlock
from keras_spiking_tf.layers.synapses import SynapticConv2D
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerBackbone
from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerImageClassifier
from keras_spiking_tf.models.meta_spikeformer import RepConv

EMBED_DIMS = (8, 16, 32, 48)
IMAGE = 32
NUM_CLASSES = 5


def tiny_classifier(attention, seed=0):
    """Random weights, BatchNorm statistics calibrated on random images (as
    the README's random-init rows), T = 2, `kd=True`."""
    keras.utils.set_random_seed(seed)
    backbone = MetaSpikeFormerBackbone(
        embed_dims=EMBED_DIMS, num_blocks=(1, 1, 1, 1, 1), num_heads=4, time_steps=2,
        image_shape=(IMAGE, IMAGE, 3), attention=attention,
    )
    model = MetaSpikeFormerImageClassifier(backbone, NUM_CLASSES, kd=True)
    calibrate_batch_norm(model, random_images(32, seed))
    return model


def random_images(count, seed):
    return np.random.default_rng(seed).normal(size=(count, IMAGE, IMAGE, 3)).astype("float32")


def randomize_batch_norm(rng, bn):
    channels = bn.gamma.shape[0]
    bn.gamma.assign(rng.uniform(-1.5, 1.5, channels).astype("float32"))
    bn.beta.assign(rng.normal(0, 0.5, channels).astype("float32"))
    bn.moving_mean.assign(rng.normal(0, 0.7, channels).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.05, 3.0, channels).astype("float32"))


def numpy_batch_norm(y, bn):
    """BatchNorm at inference in float64 from its float32 variables."""
    value = lambda v: np.asarray(to_numpy(v), "float64")  # noqa: E731
    normalised = (y - value(bn.moving_mean)) / np.sqrt(value(bn.moving_variance) + bn.epsilon)
    return value(bn.gamma) * normalised + value(bn.beta)


def numpy_rep_conv(x, rep_conv, outer_bn, border="bn_of_zero"):
    """RepConv, then a BatchNorm, in float64, written from SPEC §10: 1x1 conv,
    BN, a 1-pixel border of BN(0) (or of zeros, to show it matters), 3x3
    depthwise without padding, 1x1 conv, BN, the outer BN."""
    weight = lambda v: np.asarray(to_numpy(v), "float64")  # noqa: E731
    y = x.astype("float64") @ weight(rep_conv.conv1x1.kernel)[0, 0]
    z = numpy_batch_norm(y, rep_conv.bn_pad)
    value = numpy_batch_norm(np.zeros(z.shape[-1]), rep_conv.bn_pad)
    if border == "zero":
        value = np.zeros_like(value)
    batch, height, width, channels = z.shape
    padded = np.broadcast_to(value, (batch, height + 2, width + 2, channels)).copy()
    padded[:, 1:-1, 1:-1] = z
    depthwise = weight(rep_conv.depthwise.kernel)[..., 0]  # (3, 3, C)
    d = sum(padded[:, i : i + height, j : j + width] * depthwise[i, j]
            for i in range(3) for j in range(3))
    p = d @ weight(rep_conv.pointwise.kernel)[0, 0]
    return numpy_batch_norm(numpy_batch_norm(p, rep_conv.bn), outer_bn)


def test_rep_conv_with_its_batch_norm_and_pad_and_an_outer_batch_norm_folds_exactly(rng):
    x = rng.integers(0, 2, (3, 5, 6, 8)).astype("float32")  # spikes, not square
    rep_conv = RepConv(12)
    rep_conv.build(x.shape)
    outer = SpikingBatchNormalization()
    outer.build((3, 5, 6, 12))
    for bn in (rep_conv.bn_pad, rep_conv.bn, outer):
        randomize_batch_norm(rng, bn)
    expected = numpy_rep_conv(x, rep_conv, outer)
    scale = np.abs(expected).max()
    unfolded = to_numpy(outer(rep_conv(x, training=False), training=False))
    np.testing.assert_allclose(unfolded, expected, rtol=0, atol=2e-6 * scale)
    # The border of BN(0) matters: with zeros the border pixels differ.
    zero_border = numpy_rep_conv(x, rep_conv, outer, border="zero")
    assert np.abs(zero_border - expected)[:, 0].max() > 1e-2 * scale

    for layer in (rep_conv.conv1x1, rep_conv.pointwise):  # their inference form
        layer.__class__ = SynapticConv2D
    folds = rep_conv.batch_norm_folds(following=(outer,))
    assert [(s.name, [bn.name for bn in bns]) for s, bns in folds] == [
        ("conv1x1", ["bn_pad"]), ("pointwise", ["bn", outer.name])]
    for synapse, batch_norms in folds:
        synapse.fold_batch_norm(*batch_norms)
    assert rep_conv.bn_pad.folded and rep_conv.bn.folded and outer.folded
    folded = to_numpy(outer(rep_conv(x, training=False), training=False))
    np.testing.assert_allclose(folded, expected, rtol=0, atol=2e-6 * scale)
    # Folded once more: refused, nothing changes twice.
    with pytest.raises(ValueError, match="folded already"):
        rep_conv.pointwise.fold_batch_norm(rep_conv.bn)


def test_every_batch_norm_of_the_classifier_is_declared_once():
    model = tiny_classifier("ssa")
    optimised = keras_spiking_tf.optimize_for_inference(model)
    batch_norms = [layer for layer in optimised._flatten_layers()
                   if isinstance(layer, SpikingBatchNormalization)]
    # 5 downsamplings; 3 conv blocks of 2 + 2; 2 transformer blocks of
    # 4 x (BatchNormAndPad, RepConv BN, outer BN) + 2 in the MLP.
    assert len(batch_norms) == 5 + 3 * 4 + 2 * (4 * 3 + 2) == 45
    assert all(bn.folded for bn in batch_norms)
    declared = [bn for layer in optimised._flatten_layers() if isinstance(layer, SpikingBlock)
                for _, bns in layer.batch_norm_folds() for bn in bns]
    assert sorted(id(bn) for bn in declared) == sorted(id(bn) for bn in batch_norms)
    assert not any(getattr(bn, "folded", False) for bn in model._flatten_layers()), \
        "the original keeps its BatchNorms"


def test_a_batch_norm_no_block_declares_is_refused():
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, RepConv(3)(inputs))  # a RepConv outside any block
    with pytest.raises(ValueError, match="bn_pad.*not folded.*batch_norm_folds"):
        keras_spiking_tf.optimize_for_inference(model)
    optimised = keras_spiking_tf.optimize_for_inference(model, fold_batch_norm=False)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    np.testing.assert_array_equal(to_numpy(optimised(x)), to_numpy(model(x)))


@pytest.mark.parametrize("attention", ["ssa", "a2os2a"])
def test_folded_classifier_keeps_the_spikes_and_the_logits(attention):
    model = tiny_classifier(attention)
    x = random_images(16, seed=1)
    reference, reference_records = record_forward(model, x)
    optimised = keras_spiking_tf.optimize_for_inference(model)
    got, records = record_forward(optimised, x)
    spikes = [(a.value, b.value) for a, b in zip(reference_records, records) if a.kind == "neuron"]
    assert len(spikes) == sum(r.kind == "neuron" for r in records) > 20
    assert all(a.any() for a, _ in spikes[:3]), "the neurons fire (calibrated BatchNorm)"
    # Folding changes float32 rounding only; a membrane within rounding of
    # its threshold could flip (inference_graph.py). Measured on this CPU:
    # no spike of any neuron differs, logits differ by < 1e-6.
    flipped = sum(np.count_nonzero(a != b) for a, b in spikes)
    assert flipped <= 1e-4 * sum(a.size for a, _ in spikes), flipped
    assert np.std(reference) > 1e-3
    if flipped == 0:
        np.testing.assert_allclose(got, reference, rtol=0, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="export converts through TensorFlow")
@pytest.mark.parametrize(
    "format,suffix,attention",
    [("litert", ".tflite", "a2os2a"),
     ("onnx", ".onnx", "ssa"),  # ~10 s each on a quiet machine
     pytest.param("litert", ".tflite", "ssa", marks=pytest.mark.slow),
     pytest.param("onnx", ".onnx", "a2os2a", marks=pytest.mark.slow)],
)
def test_export_of_the_folded_graph_matches_keras(tmp_path, format, suffix, attention):
    pytest.importorskip("ai_edge_litert" if format == "litert" else "onnxruntime")
    from keras_spiking_tf.edge_export import export
    from keras_spiking_tf.edge_export import load_exported

    model = tiny_classifier(attention)
    x = random_images(8, seed=2)
    path = tmp_path / f"tiny{suffix}"
    report = export(model, path, format=format, verification_images=x, preprocess_images=False)
    reference = to_numpy(model(x, training=False))
    got = load_exported(path)(x)
    assert got.shape == (8, NUM_CLASSES) and np.std(reference) > 1e-3
    # Float32 rounding only (no spike flips on these 8 images, measured).
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-4)
    assert report["top1_agreement"] == 1.0
    assert report["max_abs_logit_diff"] == pytest.approx(np.abs(got - reference).max(), abs=1e-6)
