"""Frame-sequence input, the one-step-at-a-time model and anytime inference.

Backend-agnostic (tests/run.sh runs it on TensorFlow, JAX and PyTorch):
the step model must reproduce the multi-step classifier exactly, every spike
of every neuron, on each backend.
"""

import keras
import numpy as np
import pytest

from keras_spiking_tf.layers import LIF
from keras_spiking_tf.layers import SDSA
from keras_spiking_tf.models import SpikingTransformerBackbone
from keras_spiking_tf.models import SpikingTransformerImageClassifier
from keras_spiking_tf.models import SpikingTransformerStepModel
from keras_spiking_tf.models import predict_anytime
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_streaming import (
    running_logits,
)
from keras_spiking_tf.training.optimization import TETLoss

STEPS, IMAGE, CHANNELS = 3, 16, 2


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def tiny(input_type="frames", attention="a2os2a", channels=CHANNELS, erode=False, seed=0):
    keras.utils.set_random_seed(seed)
    backbone = SpikingTransformerBackbone(
        num_layers=1, hidden_dim=32, time_steps=STEPS, pooling="0011",
        image_shape=(IMAGE, IMAGE, channels), attention=attention, input_type=input_type,
        erode=erode,
    )
    model = SpikingTransformerImageClassifier(backbone=backbone, num_classes=5)
    rng = np.random.default_rng(seed)
    # Weights large enough that every neuron fires now and then.
    for variable in model.weights:
        if "moving_variance" in variable.path or "gamma" in variable.path:
            variable.assign(np.full(variable.shape, 1.0, "float32"))
        elif "moving_mean" in variable.path:
            variable.assign(np.zeros(variable.shape, "float32"))
        else:
            variable.assign(rng.normal(0, 0.5, variable.shape).astype("float32"))
    return model


def frames(seed=1, batch=3):
    return np.random.default_rng(seed).poisson(0.7, (batch, STEPS, IMAGE, IMAGE, CHANNELS)).astype("float32")


class SpikeRecorder:
    """Records every LIF layer's spikes (wrapping `LIF.call`, test only)."""

    def __init__(self, monkeypatch):
        self.spikes = {}
        original = LIF.call

        def call(layer, inputs):
            out = original(layer, inputs)
            self.spikes.setdefault(id(layer), []).append(to_np(out))
            return out

        monkeypatch.setattr(LIF, "call", call)

    def per_neuron(self):
        """`id(layer)` -> spikes over all recorded calls, concatenated on T."""
        return {k: np.concatenate(v, axis=1) for k, v in self.spikes.items()}


@pytest.mark.parametrize("input_type", ["frames", "image"])
def test_step_model_reproduces_every_spike_of_the_multi_step_model(input_type, monkeypatch):
    model = tiny(input_type, channels=CHANNELS if input_type == "frames" else 3)
    x = frames() if input_type == "frames" else np.random.default_rng(2).normal(
        0, 1, (3, IMAGE, IMAGE, 3)).astype("float32")
    with monkeypatch.context() as patch:
        multi = SpikeRecorder(patch)
        expected = to_np(model(x, training=False))
        multi_spikes = multi.per_neuron()
    step = SpikingTransformerStepModel(model)
    assert len(step.neurons) == len(multi_spikes) and len(step.neurons) > 8
    with monkeypatch.context() as patch:
        stepped = SpikeRecorder(patch)
        state = step.initial_state(len(x))
        for t in range(STEPS):
            logits, step_logits, *state = step([x[:, t] if input_type == "frames" else x, *state])
        step_spikes = stepped.per_neuron()
    fired = 0
    for neuron in step.neurons:
        np.testing.assert_array_equal(step_spikes[id(neuron)], multi_spikes[id(neuron)],
                                      err_msg=neuron.path)
        fired += int(np.any(multi_spikes[id(neuron)] != 0))
    assert fired >= len(step.neurons) - 1  # the comparison is not of silent neurons
    np.testing.assert_allclose(to_np(logits), expected, rtol=1e-6, atol=1e-6)
    assert float(to_np(state[-1])[0, 0]) == STEPS  # the step counter


def test_frames_that_repeat_an_image_give_the_image_output():
    image_model = tiny("image", channels=CHANNELS)
    frames_model = tiny("frames", channels=CHANNELS)
    frames_model.set_weights(image_model.get_weights())
    images = np.random.default_rng(3).normal(0, 1, (2, IMAGE, IMAGE, CHANNELS)).astype("float32")
    repeated = np.repeat(images[:, None], STEPS, axis=1)
    np.testing.assert_array_equal(to_np(frames_model.backbone(repeated, training=False)),
                                  to_np(image_model.backbone(images, training=False)))
    np.testing.assert_array_equal(to_np(frames_model(repeated, training=False)),
                                  to_np(image_model(images, training=False)))


def test_running_logits_and_anytime_exit():
    model = tiny()
    x = frames(batch=6)
    per_step = running_logits(model, x)
    assert per_step.shape == (6, STEPS, 5)
    np.testing.assert_allclose(per_step[:, -1], model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    never = predict_anytime(model, x, threshold=1.01)
    assert np.all(never.steps == STEPS)
    np.testing.assert_array_equal(never.labels, per_step[:, -1].argmax(-1))
    always = predict_anytime(model, x, threshold=0.0)
    assert np.all(always.steps == 1)
    np.testing.assert_array_equal(always.labels, per_step[:, 0].argmax(-1))
    middle = predict_anytime(model, x, threshold=0.6)
    probabilities = np.exp(per_step) / np.exp(per_step).sum(-1, keepdims=True)
    for sample in range(6):
        stop = middle.steps[sample] - 1
        confident = probabilities[sample].max(-1) >= 0.6
        expected_stop = int(np.argmax(confident)) if confident.any() else STEPS - 1
        assert stop == expected_stop
        assert middle.labels[sample] == per_step[sample, stop].argmax()


@pytest.mark.parametrize("bad,message", [
    (np.zeros((2, STEPS + 1, IMAGE, IMAGE, CHANNELS)), rf"sequences of T={STEPS} frames.*got {STEPS + 1}"),
    (np.zeros((2, STEPS, IMAGE, IMAGE, 3)), r"Expected 2-channel frame sequences"),
    (np.zeros((2, IMAGE, IMAGE, CHANNELS)), r"not a frame sequence"),
    (np.zeros((2, STEPS, 8, 8, CHANNELS)), r"takes 16x16 frame sequences"),
])
def test_bad_frame_inputs_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny().predict(bad.astype("float32"), verbose=0)


def test_integer_event_counts_are_accepted():
    model = tiny()
    counts = frames().astype("int32")
    np.testing.assert_allclose(model.predict(counts, verbose=0),
                               model.predict(counts.astype("float32"), verbose=0))


def test_erode_is_a_3x3_max_over_each_steps_token_grid():
    attention = SDSA(erode=True)
    attention.build((2, STEPS, 16, 32))
    x = np.random.default_rng(4).normal(0, 1, (2, STEPS, 16, 32)).astype("float32")
    eroded = to_np(attention.eroded(keras.ops.convert_to_tensor(x)))
    grid = x.reshape(2, STEPS, 4, 4, 32)
    padded = np.pad(grid, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    expected = np.max(
        [padded[:, :, i : i + 4, j : j + 4] for i in range(3) for j in range(3)], axis=0
    ).reshape(2, STEPS, 16, 32)
    np.testing.assert_array_equal(eroded, expected)
    assert SDSA().get_config()["erode"] is False
    with pytest.raises(ValueError, match="square token grid"):
        SDSA(erode=True).build((2, STEPS, 12, 32))


def test_tet_loss_matches_its_formula():
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, (4, STEPS, 5)).astype("float32")
    labels = np.eye(5, dtype="float32")[rng.integers(0, 5, 4)]
    lam, phi, smoothing = 0.05, 1.0, 0.1
    target = labels * (1 - smoothing) + smoothing / 5
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    cross_entropy = -(target[:, None] * log_softmax).sum(-1).mean(1)  # mean over T
    mse = ((logits - phi) ** 2).mean(axis=(1, 2))
    expected = np.mean((1 - lam) * cross_entropy + lam * mse)
    got = float(to_np(TETLoss(lam, phi, smoothing)(labels, logits)))
    assert got == pytest.approx(expected, rel=1e-5)
