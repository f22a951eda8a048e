"""Inputs that are probably wrong get a warning that names the likely mistake
and the fix (an error under strict inputs); right inputs get none.

Each mistake is fed where it happens (the classifier's predict, evaluate,
fit and predict_anytime, the analysis functions, an exported model's call),
and each suggested fix is applied and checked against an independent
computation: the fixed batch is accepted without a warning and gives what
the right input gives.
"""

import re
import warnings

import keras
import numpy as np
import pytest

import keras_spiking_tf
from keras_spiking_tf import input_checks
from keras_spiking_tf.analysis import FiringRateMonitor
from keras_spiking_tf.analysis import addition_only_audit
from keras_spiking_tf.analysis import calibrate_batch_norm
from keras_spiking_tf.analysis import energy_report
from keras_spiking_tf.analysis import energy_summary
from keras_spiking_tf.analysis import firing_rates
from keras_spiking_tf.analysis import record_forward
from keras_spiking_tf.edge_export.runtime import ExportedModel
from keras_spiking_tf.input_checks import InputError
from keras_spiking_tf.input_checks import InputWarning
from keras_spiking_tf.input_checks import layout_fix
from keras_spiking_tf.training.datasets import load_digits_arrays


@pytest.fixture(autouse=True)
def default_strictness(monkeypatch):
    """Every test starts with the switch unset and no KST_STRICT_INPUTS."""
    monkeypatch.delenv("KST_STRICT_INPUTS", raising=False)
    input_checks.set_strict_inputs(None)
    yield
    input_checks.set_strict_inputs(None)


@pytest.fixture(scope="module")
def digits():
    """The bundled digits' test split: raw uint8 images (16x16x1), labels."""
    _, _, x_test, y_test = load_digits_arrays()
    return x_test[:16], y_test[:16]


@pytest.fixture(scope="module")
def model():
    return keras_spiking_tf.from_preset("st_2_64_digits")


@pytest.fixture(scope="module")
def tiny():
    """Random weights, one block, T=2, the digits preprocessor."""
    return keras_spiking_tf.from_preset(
        "st_2_64_digits", load_weights=False, num_layers=1, hidden_dim=32, time_steps=2
    )


class NoInputWarnings:
    """A context in which any InputWarning fails the test."""

    def __enter__(self):
        self._context = warnings.catch_warnings()
        self._context.__enter__()
        warnings.simplefilter("error", InputWarning)

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)


def normalised(model, images):
    return np.asarray(keras.ops.convert_to_numpy(model.preprocessor(images.astype("float32"))))


def labels_of(model, images):
    return np.argmax(keras.ops.convert_to_numpy(model.predict(images, verbose=0)), -1)


# --- the switch -----------------------------------------------------------------


def test_strict_switch_and_environment_variable(monkeypatch):
    assert keras_spiking_tf.set_strict_inputs is input_checks.set_strict_inputs
    assert keras_spiking_tf.InputWarning is InputWarning
    assert issubclass(InputWarning, UserWarning) and issubclass(InputError, ValueError)
    assert input_checks.strict_inputs() is False
    monkeypatch.setenv("KST_STRICT_INPUTS", "1")
    assert input_checks.strict_inputs() is True
    input_checks.set_strict_inputs(False)  # the call wins over the environment
    assert input_checks.strict_inputs() is False
    input_checks.set_strict_inputs(None)
    assert input_checks.strict_inputs() is True
    monkeypatch.setenv("KST_STRICT_INPUTS", "maybe")
    with pytest.raises(ValueError, match="KST_STRICT_INPUTS='maybe'.*set it to 1 or 0"):
        input_checks.strict_inputs()
    with pytest.raises(TypeError, match="True, False or None; got 'yes'"):
        input_checks.set_strict_inputs("yes")


# --- predict: raw 0..255 pixels expected ----------------------------------------------


def test_raw_digits_and_other_right_inputs_do_not_warn(model, digits):
    images, _ = digits
    assert images.dtype == np.uint8
    with NoInputWarnings():
        model.predict(images, verbose=0)
        model.predict(images.astype("float32"), verbose=0)
        model.predict(np.zeros((2, 16, 16, 1), "float32"), verbose=0)  # constant: black
        model.predict(np.full((2, 16, 16, 1), 255, "uint8"), verbose=0)  # constant: white
        rng = np.random.default_rng(0)
        model.predict(rng.uniform(0, 255, (2, 16, 16, 1)).astype("float32"), verbose=0)


def test_images_in_0_1_warn_and_times_255_is_the_fix(model, digits):
    images, labels = digits
    scaled = images.astype("float32") / 255.0
    with pytest.warns(InputWarning, match=r"x \(dtype float32.*lie in \[0, 1\], but predict\(\) "
                                          r"takes raw 0\.\.255 pixels.*multiply them by 255"):
        model.predict(scaled, verbose=0)
    with NoInputWarnings():
        fixed = labels_of(model, scaled * 255)
    np.testing.assert_array_equal(fixed, labels_of(model, images))
    assert np.mean(fixed == labels) > 0.8  # the shipped weights on their own data
    input_checks.set_strict_inputs(True)
    with pytest.raises(InputError, match=r"lie in \[0, 1\]"):
        model.predict(scaled, verbose=0)


def test_images_in_minus_1_1_warn_with_the_mapping_back(model, digits):
    images, _ = digits
    signed = images.astype("float32") / 127.5 - 1
    with pytest.warns(InputWarning, match=r"lie in \[-1, 1\].*\(x \+ 1\) \* 127\.5") as record:
        model.predict(signed, verbose=0)
    code = re.search(r"with (\(x \+ 1\) \* 127\.5)", str(record[0].message)).group(1)
    np.testing.assert_allclose(eval(code, {"x": signed}), images, atol=1e-3)


def test_normalised_images_into_predict_warn_with_the_inverse(model, digits):
    images, _ = digits
    batch = normalised(model, images)
    with pytest.warns(InputWarning, match=r"already normalised.*predict\(\) takes raw 0\.\.255 "
                                          r"pixels.*undo it: ") as record:
        model.predict(batch, verbose=0)
    message = str(record[0].message)
    # The reachable range, independently: digits mean/std give
    # [(0 - mean) / std, (1 - mean) / std] = offset, 255 scale + offset.
    converter = model.preprocessor.image_converter
    low, high = converter.offset[0], 255 * converter.scale[0] + converter.offset[0]
    assert f"[{low:.3g}, {high:.3g}]" in message
    code = re.search(r"undo it: (.*)\.$", message).group(1)
    restored = eval(code, {"x": batch, "np": np})
    np.testing.assert_allclose(restored, images, atol=0.05)
    input_checks.set_strict_inputs(True)
    with pytest.raises(InputError, match="already normalised"):
        model.predict(batch, verbose=0)


def test_tensor_inputs_are_checked_too(model, digits):
    images, _ = digits
    with pytest.warns(InputWarning, match=r"lie in \[0, 1\]"):
        model.predict(keras.ops.convert_to_tensor(images.astype("float32") / 255), verbose=0)


def test_evaluate_fit_and_predict_anytime_check_arrays(tiny, digits):
    images, labels = digits
    scaled = images.astype("float32") / 255
    tiny.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.warns(InputWarning, match=r"evaluate\(\) takes raw 0\.\.255 pixels"):
        tiny.evaluate(scaled, labels, verbose=0)
    with pytest.warns(InputWarning, match=r"this classifier \(predict, fit, evaluate, "
                                          r"predict_anytime\) takes raw 0\.\.255"):
        keras_spiking_tf.predict_anytime(tiny, scaled[:2])
    with NoInputWarnings():
        tiny.evaluate(images, labels, verbose=0)
    weights = tiny.get_weights()
    input_checks.set_strict_inputs(True)
    with pytest.raises(InputError, match=r"fit\(\) takes raw 0\.\.255 pixels"):
        tiny.fit(scaled, labels, epochs=1, verbose=0)
    # Refused before any training step: the weights are untouched.
    for before, after in zip(weights, tiny.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_classifier_without_preprocessor_warns_on_raw_floats(digits):
    bare = keras_spiking_tf.from_preset(
        "st_2_64_digits", load_weights=False, num_layers=1, hidden_dim=32, time_steps=2
    )
    bare.preprocessor = None
    images, _ = digits
    with pytest.warns(InputWarning, match=r"look like raw 0\.\.255 pixels.*takes normalised floats"):
        bare.predict(images.astype("float32"), verbose=0)
    with NoInputWarnings():
        bare.predict(np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype("float32"),
                     verbose=0)


def test_event_counts_are_not_value_checked():
    backbone = keras_spiking_tf.models.SpikingTransformerBackbone(
        num_layers=1, hidden_dim=16, time_steps=2, pooling="0011", image_shape=(16, 16, 2),
        input_type="frames",
    )
    model = keras_spiking_tf.models.SpikingTransformerImageClassifier(backbone, num_classes=3)
    counts = np.random.default_rng(0).poisson(30.0, (2, 2, 16, 16, 2)).astype("int32")
    with NoInputWarnings():
        model.predict(counts, verbose=0)  # large integer counts are legitimate
        model.predict((counts > 30).astype("float32"), verbose=0)  # and so are 0/1 frames


# --- analysis functions: preprocessed (normalised) inputs expected -----------------------


ANALYSES = {
    "energy_report()": lambda model, x: energy_report(model, x),
    "energy_summary()": lambda model, x: energy_summary(model, x, "test"),
    "firing_rates()": lambda model, x: firing_rates(model, x),
    "addition_only_audit()": lambda model, x: addition_only_audit(model, x),
    "record_forward()": lambda model, x: record_forward(model, x),
    "calibrate_batch_norm()": lambda model, x: calibrate_batch_norm(model, x),
    "FiringRateMonitor()": lambda model, x: FiringRateMonitor(x).set_model(model),
}


@pytest.mark.parametrize("name", list(ANALYSES))
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_analysis_on_raw_images_warns(tiny, digits, name, dtype):
    images, _ = digits
    given = "integer images look like raw pixels" if dtype == "uint8" else "look like raw 0..255"
    with pytest.warns(InputWarning, match=rf"{re.escape(given)}.*{re.escape(name)} takes "
                                          r"normalised floats \(in \[-0\.812, 1\.85\].*"
                                          r"model\.preprocessor\(images\)"):
        ANALYSES[name](tiny, images[:4].astype(dtype))
    with NoInputWarnings():
        ANALYSES[name](tiny, normalised(tiny, images[:4]))


def test_energy_of_raw_images_is_not_the_energy_of_the_images(model, digits):
    """Why it matters: the figure on raw pixels is another number."""
    images, _ = digits
    with pytest.warns(InputWarning):
        raw = energy_report(model, images.astype("float32")).energy_mj
    with NoInputWarnings():
        right = energy_report(model, normalised(model, images)).energy_mj
    assert abs(raw - right) > 0.05 * right


def test_analysis_of_models_without_known_inputs_is_not_checked():
    from keras_spiking_tf.layers import LIF

    sequential = keras.Sequential([keras.Input((4, 6)), LIF(name="lif")])
    with NoInputWarnings():
        firing_rates(sequential, np.full((2, 4, 6), 200, "int32").astype("float32"))
        firing_rates(sequential, np.arange(48, dtype="float32").reshape(2, 4, 6) * 10)


def test_standard_normal_batches_stay_below_the_raw_threshold(tiny):
    """The analysis tests feed standard normal batches: not raw pixels."""
    batch = np.random.default_rng(0).normal(size=(8, 16, 16, 1)).astype("float32")
    assert batch.max() < input_checks.normalised_limit(
        input_checks.model_input_space(tiny)
    )
    with NoInputWarnings():
        energy_report(tiny, batch)


# --- exported models: the input space follows the input dtype ------------------------


class FakeRunner:
    """Stands in for a LiteRT/ONNX runner: records what it is given."""

    def __init__(self, dtype, shape=(None, 16, 16, 1)):
        self.input_dtype = np.dtype(dtype)
        self.input_shape = shape
        self.calls = []

    def __call__(self, images):
        self.calls.append(images)
        return np.zeros((len(images), 10), "float32")


def exported(dtype, shape=(None, 16, 16, 1)):
    runner = FakeRunner(dtype, shape)
    return ExportedModel("model.onnx", "onnx", runner), runner


def test_raw_uint8_into_a_normalised_export_warns(digits):
    images, _ = digits
    run, runner = exported("float32")
    assert run.input_space == "normalised"
    with pytest.warns(InputWarning, match=r"images \(dtype uint8.*integer images look like raw "
                                          r"pixels, but the onnx model 'model\.onnx' \(float32 "
                                          r"input\) takes normalised floats.*"
                                          r"include_preprocessing=True"):
        run(images)
    with NoInputWarnings():
        run(np.random.default_rng(0).normal(size=(4, 16, 16, 1)).astype("float32"))
        # Raw float pixels are what a float32 file with the preprocessor
        # baked in takes: unchecked until the file's input space is given.
        run(images.astype("float32"))
    run.input_space = "normalised"
    with pytest.warns(InputWarning, match="look like raw 0..255 pixels"):
        run(images.astype("float32"))
    input_checks.set_strict_inputs(True)
    runner.calls.clear()
    with pytest.raises(InputError, match="integer images look like raw pixels"):
        run(images)
    assert runner.calls == []  # refused before running


def test_an_export_with_preprocessing_takes_raw_pixels(digits):
    images, _ = digits
    run, _ = exported("uint8")
    assert run.input_space == "raw"
    with pytest.warns(InputWarning, match=r"lie in \[0, 1\], but the onnx model 'model\.onnx' "
                                          r"\(uint8 input\) takes raw 0\.\.255 pixels"):
        run(images / 255.0)
    with NoInputWarnings():
        run(images)
    # A float32 file with the preprocessor baked in: say so, and raw is right.
    run, _ = exported("float32")
    run.input_space = "raw"
    with NoInputWarnings():
        run(images.astype("float32"))
    with pytest.raises(ValueError, match="input_space must be 'raw'"):
        run.input_space = "pixels"


def test_int8_io_export_takes_normalised_floats(digits):
    images, _ = digits
    run, _ = exported("int8")
    assert run.input_space == "normalised"
    with pytest.warns(InputWarning, match=r"\(int8 input\) takes normalised floats"):
        run(images)


def test_exported_layout_hint_is_verified(digits):
    images, _ = digits
    run, runner = exported("uint8")
    nchw = np.transpose(images, (0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"takes a batch shaped \(batch, 16, 16, 1\), got "
                                         r"\(16, 1, 16, 16\)") as raised:
        run(nchw)
    code = re.search(r"`([^`]+)`", str(raised.value)).group(1)
    assert code == "np.transpose(x, (0, 2, 3, 1))"
    fixed = eval(code, {"np": np, "x": nchw})
    np.testing.assert_array_equal(fixed, images)
    run(fixed)
    assert runner.calls[-1].shape == (16, 16, 16, 1)


# --- layout_fix on its own -------------------------------------------------------------


@pytest.mark.parametrize("shape, expected, kwargs, code", [
    ((2, 1, 16, 16), (None, 16, 16, 1), {}, "np.transpose(x, (0, 2, 3, 1))"),
    ((2, 16, 16, 3), (None, 3, 16, 16), {"channels_first": True}, "np.transpose(x, (0, 3, 1, 2))"),
    ((2, 16, 16), (None, 16, 16, 1), {}, "x[..., None]"),
    ((2, 16, 16), (None, 1, 16, 16), {"channels_first": True}, "x[:, None]"),
    ((16, 16, 1), (None, 16, 16, 1), {}, "x[None]"),
    ((16, 16), (None, 16, 16, 1), {}, "x[None, ..., None]"),
    ((2, 16, 16, 1), (None, 16, 16, 3), {}, "np.repeat(x, 3, axis=-1)"),
    ((2, 3, 2, 16, 16), (None, 3, 16, 16, 2), {"fixed_axes": 2}, "np.transpose(x, (0, 1, 3, 4, 2))"),
    ((3, 32, 32), (None, 224, 224, 3), {"loose_expected": (None, None, None, 3)},
     "np.transpose(x[None], (0, 2, 3, 1))"),
])
def test_layout_fix_gives_the_expected_shape(shape, expected, kwargs, code):
    fix = layout_fix(shape, expected, **kwargs)
    assert fix is not None and fix.code == code
    result = eval(fix.code, {"np": np, "x": np.zeros(shape, "uint8")}).shape
    assert result == fix.shape
    wanted = kwargs.get("loose_expected", expected) if "loose_expected" in kwargs else expected
    assert len(result) == len(wanted)
    assert all(w is None or w == r for w, r in zip(wanted, result))


@pytest.mark.parametrize("shape, expected", [
    ((2, 16, 16, 2), (None, 16, 16, 3)),     # 2 channels: no reshaping makes 3
    ((2, 8, 8, 1), (None, 16, 16, 1)),       # the wrong size: no reshaping resizes
    ((2, 2, 2, 16, 16, 1), (None, 16, 16, 1)),
])
def test_layout_fix_suggests_nothing_it_cannot_verify(shape, expected):
    assert layout_fix(shape, expected) is None


def test_layout_fix_never_suggests_a_wrong_shape():
    """Every suggestion, over many shapes, gives the expected shape when
    applied (the transpose is computed, not looked up)."""
    rng = np.random.default_rng(0)
    suggestions = 0
    for _ in range(300):
        expected = (None, *rng.choice([1, 2, 3, 8], 3).tolist())
        shape = tuple(rng.permutation([4, *expected[1:]]).tolist())[: rng.integers(2, 5)]
        fix = layout_fix(shape, expected)
        if fix is None:
            continue
        suggestions += 1
        result = eval(fix.code, {"np": np, "x": np.zeros(shape, "uint8")}).shape
        assert result == fix.shape
        assert all(e is None or e == r for e, r in zip(expected, result)) and len(result) == 4
    assert suggestions > 50


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on TF")
def test_real_exports_check_what_their_graph_takes(model, digits, tmp_path):
    from keras_spiking_tf.edge_export import export
    from keras_spiking_tf.edge_export import load_exported

    images, _ = digits
    input_checks.set_strict_inputs(True)  # export's own verification runs must pass
    export(model, tmp_path / "normalised.onnx", format="onnx", verification_images=images)
    export(model, tmp_path / "raw.onnx", format="onnx", include_preprocessing=True,
           verification_images=images)
    export(model, tmp_path / "raw_float.onnx", format="onnx", include_preprocessing=True,
           input_dtype="float32", verification_images=images)
    input_checks.set_strict_inputs(None)

    run = load_exported(tmp_path / "normalised.onnx")
    with pytest.warns(InputWarning, match="integer images look like raw pixels"):
        wrong = run(images)
    with NoInputWarnings():
        right = run(normalised(model, images))
    expected = keras.ops.convert_to_numpy(model.predict(images, verbose=0))
    np.testing.assert_allclose(right, expected, atol=1e-3)
    assert not np.allclose(wrong, expected, atol=1e-3)

    run = load_exported(tmp_path / "raw.onnx")
    with pytest.warns(InputWarning, match=r"lie in \[0, 1\].*\(uint8 input\) takes raw"):
        run(images / 255.0)
    with NoInputWarnings():
        np.testing.assert_allclose(run(images), expected, atol=1e-3)

    run = load_exported(tmp_path / "raw_float.onnx")
    with NoInputWarnings():
        np.testing.assert_allclose(run(images.astype("float32")), expected, atol=1e-3)
