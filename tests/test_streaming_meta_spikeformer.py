"""Meta-SpikeFormer (V2) one time step at a time: `SpikingStepModel`,
`running_logits`, `predict_anytime` and `export_step_model` on the second
model family, through its `step_logits`.

Backend-agnostic like tests/test_streaming.py (the export test converts
through TensorFlow and runs there only). The independent reference for the
running prediction after `t` steps is a classifier built with
`time_steps=t` sharing the weights: the neurons' state after `t` steps of a
`T`-step run is that of a `t`-step run, so its output (its own graph, with
the KD heads averaged over its `t` steps) is the step model's after `t`.
"""

import keras
import numpy as np
import pytest

from keras_spiking_tf.analysis import calibrate_batch_norm
from keras_spiking_tf.models import MetaSpikeFormerBackbone
from keras_spiking_tf.models import MetaSpikeFormerImageClassifier
from keras_spiking_tf.models import SpikingStepModel
from keras_spiking_tf.models import predict_anytime
from keras_spiking_tf.models import running_logits
from test_streaming import SpikeRecorder  # the first family's recorder: it records any LIF

STEPS, IMAGE, CLASSES = 3, 32, 5


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def tiny(time_steps=STEPS, input_type="image", data_format="channels_last", seed=0,
         calibrate=True):
    """A V2 classifier of one block per stage, A2OS2A attention, KD head, on
    32x32 two-channel inputs; random weights, BatchNorm statistics
    calibrated on random inputs and its outputs doubled, so that every
    neuron fires now and then (`calibrate=False`: as initialised, for a
    copy that takes another model's weights)."""
    keras.utils.set_random_seed(seed)
    backbone = MetaSpikeFormerBackbone(
        embed_dims=(8, 16, 32, 48), num_blocks=(1, 1, 1, 1, 1), num_heads=2,
        time_steps=time_steps, image_shape=(IMAGE, IMAGE, 2), attention="a2os2a",
        input_type=input_type, data_format=data_format,
    )
    model = MetaSpikeFormerImageClassifier(backbone, num_classes=CLASSES, kd=True)
    if not calibrate:
        return model
    calibrate_batch_norm(model, (frames if input_type == "frames" else images)(
        seed=seed + 100, batch=16, channels_first=data_format == "channels_first"))
    for variable in model.weights:  # unit-variance BatchNorm outputs, then 2x
        if variable.path.endswith("gamma"):
            variable.assign(2.0 * to_np(variable))
    return model


def sharing_weights(model, time_steps):
    """The same classifier built for `time_steps`, with `model`'s weights."""
    backbone = model.backbone
    other = tiny(time_steps, backbone.input_type, backbone.data_format, calibrate=False)
    other.set_weights(model.get_weights())
    return other


@pytest.fixture(scope="module")
def model():
    """The default tiny classifier (images, channels last), built once."""
    return tiny()


def images(seed=1, batch=4, channels_first=False):
    x = np.random.default_rng(seed).normal(0, 1, (batch, IMAGE, IMAGE, 2)).astype("float32")
    return np.transpose(x, (0, 3, 1, 2)) if channels_first else x


def frames(seed=1, batch=4, channels_first=False):
    x = np.random.default_rng(seed).poisson(0.7, (batch, STEPS, IMAGE, IMAGE, 2)).astype("float32")
    return np.transpose(x, (0, 1, 4, 2, 3)) if channels_first else x


def step_through(step, x, frames_input):
    """`[(logits, step_logits)]` after each of `T` steps from rest."""
    state = step.initial_state(len(x))
    outputs = []
    for t in range(STEPS):
        logits, step_logits, *state = step([x[:, t] if frames_input else x, *state])
        outputs.append((to_np(logits), to_np(step_logits)))
    return outputs, state


def test_every_neuron_of_v2_has_its_state_shape(model):
    step = SpikingStepModel(model)
    # stem has no neuron; 1 + 1 (downsampling) + 2 x 2 (SepConv, conv pair)
    # per conv block, 4 (shortcut, q, k, v) + attention neuron + 2 MLP per
    # MSBlock, head: well over 20.
    assert len(step.neurons) > 20
    for neuron, shape in zip(step.neurons, step.state_shapes()):
        assert shape == tuple(neuron.feature_shape) and None not in shape, neuron.path
    assert step.state_shapes()[-2:] == [(CLASSES,), (1,)]


def test_stepping_v2_gives_the_classifier_output_every_spike_equal(model, monkeypatch):
    x = images()
    with monkeypatch.context() as patch:
        multi = SpikeRecorder(patch)
        expected = to_np(model(x, training=False))
        multi_spikes = multi.per_neuron()
    step = SpikingStepModel(model)
    assert len(step.neurons) == len(multi_spikes)
    with monkeypatch.context() as patch:
        stepped = SpikeRecorder(patch)
        outputs, state = step_through(step, x, frames_input=False)
        step_spikes = stepped.per_neuron()
    fired = 0
    for neuron in step.neurons:
        np.testing.assert_array_equal(step_spikes[id(neuron)], multi_spikes[id(neuron)],
                                      err_msg=neuron.path)
        spikes = multi_spikes[id(neuron)]
        fired += int(np.any(spikes != 0) and np.any(spikes == 0))
    assert fired >= len(step.neurons) - 2  # the comparison is not of silent or saturated neurons
    np.testing.assert_allclose(outputs[-1][0], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs[-1][0], model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert float(to_np(state[-1])[0, 0]) == STEPS


def test_v2_running_logits_after_t_steps_are_a_t_step_classifier_with_kd(model):
    x = images(batch=5)
    per_step = running_logits(model, x)
    assert per_step.shape == (5, STEPS, CLASSES)
    for t in range(1, STEPS + 1):
        shorter = model if t == STEPS else sharing_weights(model, t)
        reference = to_np(shorter(x, training=False))
        np.testing.assert_allclose(per_step[:, t - 1], reference, rtol=1e-5, atol=1e-5,
                                   err_msg=f"after {t} steps")
        # The KD average, from the two heads' own outputs over t steps.
        head, head_kd = (to_np(h) for h in shorter.head_outputs_model()(x, training=False))
        np.testing.assert_allclose(per_step[:, t - 1], (head + head_kd) / 2, rtol=1e-5,
                                   atol=1e-5, err_msg=f"KD after {t} steps")
    # The steps differ: a check of the running mean, not of a constant.
    assert np.max(np.abs(per_step[:, 0] - per_step[:, -1])) > 1e-2


def test_v2_step_logits_average_both_heads(model):
    """One step from rest: `step_logits` is `(head + head_kd) / 2` of the
    head neuron's spikes, recomputed here in NumPy from the head's weights."""
    x = images(batch=3)
    step = SpikingStepModel(model)
    _, step_logits, *_ = step([x, *step.initial_state(3)])
    features = model.backbone.predict(x, verbose=0)[:, 0].mean(axis=1)  # step 1, token mean
    cell = model.head_lif.cell
    assert (cell.tau, cell.v_threshold, cell.decay_input) == (2.0, 1.0, True)  # design.md §2.1
    spikes = (features / 2.0 >= 1.0).astype("float32")  # from rest: h = x / tau, threshold 1
    kernel, bias = (to_np(w) for w in model.output_dense.weights)
    kd_kernel, kd_bias = (to_np(w) for w in model.kd_dense.weights)
    expected = ((spikes @ kernel + bias) + (spikes @ kd_kernel + kd_bias)) / 2
    np.testing.assert_allclose(to_np(step_logits), expected, rtol=1e-5, atol=1e-5)
    assert 0 < spikes.mean() < 1


@pytest.mark.parametrize("input_type,data_format", [
    ("frames", "channels_last"), ("image", "channels_first"), ("frames", "channels_first"),
])
def test_v2_frames_and_channels_first_step_like_the_classifier(input_type, data_format):
    model = tiny(input_type=input_type, data_format=data_format)
    channels_first = data_format == "channels_first"
    x = (frames if input_type == "frames" else images)(channels_first=channels_first)
    step = SpikingStepModel(model)
    assert step.frame_shape == ((2, IMAGE, IMAGE) if channels_first else (IMAGE, IMAGE, 2))
    outputs, _ = step_through(step, x, frames_input=input_type == "frames")
    np.testing.assert_allclose(outputs[-1][0], to_np(model(x, training=False)),
                               rtol=1e-5, atol=1e-5)


def test_v2_predict_anytime_without_early_exit_is_predict(model):
    x = images(batch=5)
    expected = model.predict(x, verbose=0)
    result = predict_anytime(model, x, threshold=1.01)
    assert np.all(result.steps == STEPS)
    np.testing.assert_allclose(result.logits_per_step[:, -1], expected, rtol=1e-5, atol=1e-5)
    shifted = np.exp(expected - expected.max(-1, keepdims=True))
    np.testing.assert_allclose(result.probabilities, shifted / shifted.sum(-1, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.labels, expected.argmax(-1))
    everybody_at_once = predict_anytime(model, x, threshold=0.0)
    assert np.all(everybody_at_once.steps == 1)


@pytest.mark.slow  # about 90 s on two shared CPU cores, most of it the LiteRT conversion
@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="export converts through TensorFlow (as tests/test_export.py)")
def test_v2_step_model_exports_to_litert_and_steps_like_keras(model, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from keras_spiking_tf.edge_export import export_step_model
    from keras_spiking_tf.edge_export import load_step_model

    x = images(batch=3)
    path = tmp_path / "step.tflite"
    report = export_step_model(model, str(path), verification_inputs=x, batch_size=2)
    assert report["num_states"] == len(SpikingStepModel(model).state_shapes())
    assert report["top1_agreement"] == 1.0 and report["max_abs_logit_diff"] <= 1e-4
    runner = load_step_model(str(path))
    state = runner.initial_state(len(x))
    for _ in range(STEPS):
        logits, _, state = runner(x, state)
    np.testing.assert_allclose(logits, model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("function", ["SpikingStepModel", "running_logits", "predict_anytime",
                                      "export_step_model"])
def test_a_model_without_step_logits_is_refused_by_name(function):
    from keras_spiking_tf.edge_export import export_step_model

    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    call = {
        "SpikingStepModel": lambda: SpikingStepModel(plain),
        "running_logits": lambda: running_logits(plain, np.zeros((1, 4))),
        "predict_anytime": lambda: predict_anytime(plain, np.zeros((1, 4))),
        "export_step_model": lambda: export_step_model(plain, "never_written.tflite"),
    }[function]
    with pytest.raises(TypeError, match=r"`classifier` must be .*`backbone`.*`step_logits`"
                                        r".*got a Sequential, which lacks `step_logits`"):
        call()
