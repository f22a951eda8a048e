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
from keras_spiking_tf.models import SpikingStepModel
from keras_spiking_tf.models import predict_anytime
from keras_spiking_tf.models import running_logits
from keras_spiking_tf.models import streaming
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
    step = SpikingStepModel(model)
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


def softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def exit_rule(per_step, threshold):
    """The exit rule on all T steps, independently: `(steps, probabilities)`."""
    probabilities = softmax(per_step)
    confident = probabilities.max(-1) >= threshold
    confident[:, -1] = True
    stop = confident.argmax(1)
    return stop + 1, probabilities[np.arange(len(stop)), stop]


def between(values):
    """A threshold in the middle gap between the distinct `values`, away from
    every one (a probability at the threshold could go either way by float
    rounding; many samples can share one probability, e.g. when a preset's
    first step fires the same few spikes for them)."""
    values = np.unique(values)
    assert len(values) > 1, f"all samples have the same probability {values}"
    middle = len(values) // 2
    return float((values[middle - 1] + values[middle]) / 2)


class RowCounter:
    """The batch size of each step call (wrapping `predict_on_batch`, test only)."""

    def __init__(self, monkeypatch):
        self.rows = []
        original = SpikingStepModel.predict_on_batch

        def predict_on_batch(step, inputs):
            self.rows.append(len(inputs[0]))
            return original(step, inputs)

        monkeypatch.setattr(SpikingStepModel, "predict_on_batch", predict_on_batch)


def check_early_exit(model, x, per_step, threshold, batch_size, monkeypatch):
    """`predict_anytime` equals the exit rule applied to every step computed
    (`per_step`, from `running_logits`), and computes only the rows still
    running: returns the steps used."""
    steps, probabilities = exit_rule(per_step, threshold)
    with monkeypatch.context() as patch:
        counter = RowCounter(patch)
        result = predict_anytime(model, x, threshold=threshold, batch_size=batch_size)
    np.testing.assert_array_equal(result.steps, steps)
    np.testing.assert_array_equal(result.labels, probabilities.argmax(-1))
    np.testing.assert_allclose(result.probabilities, probabilities, rtol=1e-5, atol=1e-6)
    used = np.arange(per_step.shape[1]) < steps[:, None]
    np.testing.assert_allclose(result.logits_per_step[used], per_step[used], rtol=1e-5, atol=1e-6)
    assert np.all(np.isnan(result.logits_per_step[~used]))
    chunks = [min(batch_size, len(x) - start) for start in range(0, len(x), batch_size)]
    if streaming._compiles_per_batch_shape(streaming._step_model_of(model)):
        # Padded to powers of two: at most twice the rows still running.
        assert all(r in chunks or r & (r - 1) == 0 for r in counter.rows)
        assert steps.sum() <= sum(counter.rows) <= 2 * steps.sum()
    else:
        assert sum(counter.rows) == steps.sum()  # exactly the steps used
    assert sum(counter.rows) <= len(x) * per_step.shape[1]
    # A batch ends when all of its samples have exited.
    expected_calls = sum(int(steps[start : start + n].max())
                         for start, n in zip(range(0, len(x), batch_size), chunks))
    assert len(counter.rows) == expected_calls
    return steps


@pytest.mark.parametrize("padded", [False, True], ids=["exact", "padded"])
@pytest.mark.parametrize("input_type", ["frames", "image"])
def test_early_exit_equals_all_steps_and_drops_exited_rows(input_type, padded, monkeypatch):
    model = tiny(input_type, channels=CHANNELS if input_type == "frames" else 3)
    native = streaming._compiles_per_batch_shape(streaming._step_model_of(model))
    if padded != native and keras.backend.backend() != "tensorflow":
        pytest.skip("the other batch policy runs on TensorFlow (where both are cheap)")
    x = frames(batch=10) if input_type == "frames" else np.random.default_rng(2).normal(
        0, 1, (10, IMAGE, IMAGE, 3)).astype("float32")
    monkeypatch.setattr(streaming, "_compiles_per_batch_shape", lambda step: padded)
    per_step = running_logits(model, x, batch_size=4)
    check = lambda threshold: check_early_exit(model, x, per_step, threshold, 4, monkeypatch)  # noqa: E731
    assert np.all(check(1.01) == STEPS)  # nobody early
    assert np.all(check(0.0) == 1)  # everybody at step 1
    mixed = check(between(softmax(per_step[:, 0]).max(-1)))
    assert 1 in mixed and np.any(mixed > 1)


def test_dropping_rows_leaves_the_other_rows_exact():
    """What the early exit relies on: every layer of a step acts on each
    sample alone (BatchNormalization at inference included), so stepping a
    subset of the rows with their state gives those rows' results."""
    model = tiny()
    for variable in model.weights:  # BatchNormalization statistics that matter
        if "moving_mean" in variable.path:
            variable.assign(np.random.default_rng(6).normal(0, 0.5, variable.shape))
        elif "moving_variance" in variable.path:
            variable.assign(np.random.default_rng(7).uniform(0.5, 2, variable.shape))
    x = frames(batch=6)
    step = SpikingStepModel(model)
    _, _, *state = step([x[:, 0], *step.initial_state(6)])
    state = [to_np(s) for s in state]
    full = [to_np(t) for t in step([x[:, 1], *state])]
    rows = np.array([1, 4, 5])
    part = [to_np(t) for t in step([x[rows, 1], *[s[rows] for s in state]])]
    for got, expected in zip(part, full):
        np.testing.assert_allclose(got, expected[rows], rtol=1e-6, atol=1e-6)
    charged = sum(int(np.any(membrane != 0)) for membrane in part[2:-2])
    assert charged >= len(step.neurons) // 2  # the comparison is not of empty state


def test_the_step_model_is_made_once_and_not_saved_with_the_classifier(tmp_path):
    model = tiny()
    model.save_weights(str(tmp_path / "before.weights.h5"))
    predict_anytime(model, frames(), threshold=0.5)
    step = streaming._step_model_of(model)
    assert streaming._step_model_of(model) is step
    running_logits(model, frames())
    assert streaming._step_model_of(model) is step
    assert step not in model._flatten_layers()
    model.save_weights(str(tmp_path / "after.weights.h5"))
    import h5py

    def names(path):
        found = []
        with h5py.File(path) as file:
            file.visit(found.append)
        return found

    assert names(tmp_path / "after.weights.h5") == names(tmp_path / "before.weights.h5")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="trained presets on TF (the tiny models above run on each backend)")
@pytest.mark.parametrize("preset", ["st_2_64_digits", "st_2_64_event_digits"])
def test_early_exit_of_the_shipped_presets_equals_all_steps(preset, monkeypatch):
    import keras_spiking_tf
    from keras_spiking_tf.training.datasets import load_digits_arrays

    model = keras_spiking_tf.from_preset(preset)
    if model.backbone.input_type == "frames":  # synthetic event counts
        x = np.random.default_rng(8).poisson(
            0.3, (16, model.backbone.time_steps, 16, 16, 2)).astype("float32")
    else:
        x = load_digits_arrays()[2][:16]
    per_step = running_logits(model, x, batch_size=8)
    check = lambda threshold: check_early_exit(model, x, per_step, threshold, 8, monkeypatch)  # noqa: E731
    assert np.all(check(1.01) == model.backbone.time_steps)  # nobody early
    assert np.all(check(0.0) == 1)  # everybody at step 1
    mixed = check(between(softmax(per_step[:, 0]).max(-1)))
    assert 1 in mixed and np.any(mixed > 1)


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
