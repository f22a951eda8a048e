"""Edge export (keras_spiking_tf.edge_export): LiteRT, ONNX and SavedModel files
run in their own runtimes and agree with the Keras model they came from.

The reference for agreement is always the Keras model itself, called on the
same (preprocessed) images; accuracies are against the true digits labels.

Tolerances. Every neuron compares a membrane with its threshold (`>=`), so
two implementations that round a convolution's sum differently can fire a
different spike when a membrane sits within rounding of threshold (design.md §8:
a few elements per layer lie within 1e-6 of it). Without such a flip the
logits of a float32 export differ from Keras by float32 rounding (< 1e-5);
with one, a sample's logits move by about |w|/T of the head (> 1e-2). So a
sample either matches to `LOGIT_ATOL = 1e-4` or it contains a flipped spike.
Measured on the shipped st_2_64_digits preset, digits test split (360
images), TF 2.21 / LiteRT 2.3 (XNNPACK) / ONNX Runtime 1.32 on x86-64: LiteRT
float32 and ONNX both max |logit diff| 0.0, 0 of 360 samples over 1e-4,
top-1 agreement 100%. Flips do happen on wider layers: on a random-init
st_2_256_cifar10 (BatchNorm calibrated on noise, 32 noise images) 2 of 32
samples differ by 0.11 in both LiteRT and ONNX, which agree with each other
exactly; TensorFlow's oneDNN kernels sum in another order. So the tests
allow up to 2% of samples over 1e-4 (`MAX_FLIPPED_FRACTION`, 7 of 360) for
another CPU's kernels (SIMD widths, summation orders), while a structural
error (wrong BatchNorm mode, shifted pooling, a lost time step) moves nearly
every sample and fails at once. Top-1 agreement must reach 99.5%.
"""

import json
import os
import re
import subprocess

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="export converts through TensorFlow"
)
pytest.importorskip("ai_edge_litert")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

import keras_spiking_tf  # noqa: E402
from conftest import subprocess_env  # noqa: E402
from conftest import tool_command  # noqa: E402
from keras_spiking_tf.edge_export import ExportError  # noqa: E402
from keras_spiking_tf.edge_export import ExportVerificationError  # noqa: E402
from keras_spiking_tf.edge_export import export  # noqa: E402
from keras_spiking_tf.analysis import calibrate_batch_norm  # noqa: E402
from keras_spiking_tf.edge_export import litert_ops  # noqa: E402
from keras_spiking_tf.edge_export import load_exported  # noqa: E402
from keras_spiking_tf.training.datasets import load_digits_arrays  # noqa: E402

LOGIT_ATOL = 1e-4
MAX_FLIPPED_FRACTION = 0.02
MIN_FLOAT_AGREEMENT = 0.995


@pytest.fixture(scope="module")
def digits():
    """(x_train, y_train, x_test, y_test): uint8 16x16x1 images."""
    return load_digits_arrays()


@pytest.fixture(scope="module")
def shipped():
    return keras_spiking_tf.from_preset("st_2_64_digits")


@pytest.fixture(scope="module")
def small(digits):
    """A 1-block, width-32, T=2 random model with BatchNorm statistics from
    one momentum-0 training-mode pass over digits (else nothing fires)."""
    keras.utils.set_random_seed(0)
    model = keras_spiking_tf.from_preset(
        "st_2_64_digits", load_weights=False, num_layers=1, hidden_dim=32, time_steps=2
    )
    norms = [
        layer for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in norms:
        layer.momentum = 0.0
    model(preprocess(model, digits[0][:256]), training=True)
    for layer in norms:
        layer.momentum = 0.9
    return model


def preprocess(model, raw):
    return np.asarray(model.preprocessor(raw.astype("float32")), dtype="float32")


def keras_logits(model, raw):
    """The Keras reference: the model on its own preprocessor's output."""
    images = preprocess(model, raw)
    return np.concatenate(
        [np.asarray(model(images[i : i + 128], training=False)) for i in range(0, len(images), 128)]
    )


def assert_parity(exported, reference, min_agreement=MIN_FLOAT_AGREEMENT):
    assert exported.shape == reference.shape
    per_sample = np.abs(exported - reference).max(axis=1)
    flipped = np.mean(per_sample > LOGIT_ATOL)
    assert flipped <= MAX_FLIPPED_FRACTION, (flipped, per_sample.max())
    agreement = np.mean(exported.argmax(1) == reference.argmax(1))
    assert agreement >= min_agreement, agreement
    return agreement


def listing(directory):
    return sorted(os.listdir(directory))


# --- float32 end to end, one per format -------------------------------------


def test_litert_float32_matches_keras_on_digits(shipped, digits, tmp_path):
    _, _, x_test, y_test = digits
    path = tmp_path / "digits.tflite"
    report = export(shipped, path, verification_images=x_test, labels=y_test)

    assert listing(tmp_path) == ["digits.tflite"]
    for key in ("format", "quantization", "num_samples", "top1_agreement",
                "max_abs_logit_diff", "accuracy_keras", "accuracy_exported",
                "path", "file_bytes", "ops"):
        assert key in report, key
    assert report["format"] == "litert" and report["quantization"] is None
    assert report["num_samples"] == 360
    assert report["path"] == str(path) and report["file_bytes"] == path.stat().st_size

    # Builtin operators only: no Flex (SELECT_TF_OPS) or other custom kernels.
    ops = litert_ops(path.read_bytes())
    assert ops == report["ops"]
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM" or not op.isupper()]
    assert {"CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "FLOOR"} <= set(ops)
    # The inference graph: neurons without comparisons, selects or casts, and
    # no run-time shape arithmetic, so that XNNPACK takes the whole graph.
    assert not {"GREATER_EQUAL", "SELECT_V2", "CAST", "SHAPE", "GATHER", "PADV2"} & set(ops)
    assert "WHILE" not in ops  # the T-step loop is unrolled in one graph

    # Independent check of the report: run the file here against Keras.
    run = load_exported(path)
    assert run.input_shape == (None, 16, 16, 1)  # dynamic batch
    reference = keras_logits(shipped, x_test)
    images = preprocess(shipped, x_test)
    exported = run(images, batch_size=64)
    agreement = assert_parity(exported, reference)
    assert report["top1_agreement"] == pytest.approx(agreement)
    assert report["max_abs_logit_diff"] == pytest.approx(np.abs(exported - reference).max())
    for batch in (1, 8):
        np.testing.assert_allclose(run(images[:batch]), reference[:batch], atol=LOGIT_ATOL, rtol=0)

    # Accuracies against the labels: the trained preset, unchanged by export.
    assert report["accuracy_keras"] == pytest.approx(np.mean(reference.argmax(1) == y_test))
    assert report["accuracy_keras"] >= 0.98
    assert abs(report["accuracy_exported"] - report["accuracy_keras"]) <= 0.005


def test_onnx_float32_matches_keras_on_digits(shipped, digits, tmp_path):
    _, _, x_test, y_test = digits
    path = tmp_path / "digits.onnx"
    report = export(shipped, path, format="onnx", verification_images=x_test, labels=y_test)

    assert listing(tmp_path) == ["digits.onnx"]
    assert report["format"] == "onnx" and report["num_samples"] == 360
    assert "Conv" in report["ops"] and "Floor" in report["ops"]
    # The spike step's clip is one Clip, not a Min and a Max (fuse_clips).
    assert "Clip" in report["ops"] and "Min" not in report["ops"]
    assert "Loop" not in report["ops"] and "Scan" not in report["ops"]
    run = load_exported(path)
    assert run.input_shape == (None, 16, 16, 1)
    reference = keras_logits(shipped, x_test)
    images = preprocess(shipped, x_test)
    agreement = assert_parity(run(images, batch_size=64), reference)
    assert report["top1_agreement"] == pytest.approx(agreement)
    for batch in (1, 8):
        np.testing.assert_allclose(run(images[:batch]), reference[:batch], atol=LOGIT_ATOL, rtol=0)
    assert abs(report["accuracy_exported"] - report["accuracy_keras"]) <= 0.005


def test_saved_model_matches_keras(small, digits, tmp_path):
    x_test = digits[2][:64]
    path = tmp_path / "digits_saved_model"
    report = export(small, path, format="saved_model", verification_images=x_test)
    assert listing(tmp_path) == ["digits_saved_model"]
    assert (path / "saved_model.pb").exists() and report["format"] == "saved_model"
    run = load_exported(path)
    exported = run(preprocess(small, x_test))
    np.testing.assert_allclose(exported, keras_logits(small, x_test), atol=LOGIT_ATOL, rtol=0)
    assert report["max_abs_logit_diff"] <= LOGIT_ATOL


# --- preprocessing baked in ------------------------------------------------


def test_litert_with_preprocessing_takes_raw_uint8(small, digits, tmp_path):
    _, _, x_test, _ = digits
    path = tmp_path / "digits_raw.tflite"
    report = export(small, path, include_preprocessing=True, verification_images=x_test[:64])
    assert report["input"] == {"name": "images", "shape": [None, 16, 16, 1], "dtype": "uint8"}
    assert "RESIZE_BILINEAR" in report["ops"]
    run = load_exported(path)
    assert np.dtype(run.input_dtype) == np.uint8
    exported = run(x_test, batch_size=64)  # raw uint8 pixels in
    predicted = small.predict(x_test, batch_size=128, verbose=0)  # applies the preprocessor
    assert_parity(exported, predicted)


def test_onnx_with_preprocessing_returns_probabilities(small, digits, tmp_path):
    x_test = digits[2][:64]
    path = tmp_path / "digits_raw.onnx"
    report = export(small, path, format="onnx", include_preprocessing=True,
                    output_kind="probabilities", verification_images=x_test)
    assert report["output_kind"] == "probabilities"
    run = load_exported(path)
    assert np.dtype(run.input_dtype) == np.uint8
    probabilities = run(x_test)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    expected = keras.ops.convert_to_numpy(
        keras.ops.softmax(small.predict(x_test, verbose=0), axis=-1)
    )
    np.testing.assert_allclose(probabilities, expected, atol=1e-5, rtol=0)
    # A float 0..255 batch is accepted too (rounded to the uint8 input).
    np.testing.assert_allclose(run(x_test.astype("float32")), probabilities, atol=0, rtol=0)


def test_preprocessing_resizes_other_raw_sizes(small, digits, tmp_path):
    """raw_image_size: 32x32 raw images, resized in the graph as the
    preprocessor does for model.predict."""
    raw = keras.ops.convert_to_numpy(
        keras.ops.image.resize(digits[2][:16].astype("float32"), (32, 32))
    ).round().clip(0, 255).astype("uint8")
    path = tmp_path / "digits_32.tflite"
    report = export(small, path, include_preprocessing=True, raw_image_size=(32, 32),
                    verification_images=raw)
    assert report["input"]["shape"] == [None, 32, 32, 1]
    exported = load_exported(path)(raw)
    np.testing.assert_allclose(exported, small.predict(raw, verbose=0), atol=LOGIT_ATOL, rtol=0)


# --- quantization ----------------------------------------------------------


def test_int8_quantizes_synapses_and_stays_within_2_points(shipped, digits, tmp_path):
    """Full-model int8 on the trained preset (about 25 s): the synaptic
    operators (convolutions, dense layers) run in int8, the
    LIF arithmetic in float32 (see keras_spiking_tf/edge_export/exporter.py for
    why), and digits accuracy stays within 2 points of float. Measured with
    these 128 calibration images: accuracy 99.44% -> 99.17-99.44%, top-1
    agreement with Keras 99.2-99.7%, max |logit diff| about 1.5-2."""
    x_train, _, x_test, y_test = digits
    path = tmp_path / "int8.tflite"
    calibration = x_train[np.random.default_rng(0).permutation(len(x_train))[:128]]
    report = export(shipped, path, quantization="int8", representative_images=calibration,
                    verification_images=x_test, labels=y_test)
    print(f"int8: accuracy {report['accuracy_keras']:.4f} -> {report['accuracy_exported']:.4f}, "
          f"agreement {report['top1_agreement']:.4f}, max |logit diff| "
          f"{report['max_abs_logit_diff']:.3f}")
    counts = report["op_counts"]
    # Every synapse int8 (the inference graph has no -inf pad that kept one
    # conv float); the attention products float32, which XNNPACK runs.
    assert counts["CONV_2D"] == {"int8": 5}, counts["CONV_2D"]
    assert counts["FULLY_CONNECTED"] == {"int8": 13} and counts["BATCH_MATMUL"] == {"float32": 4}
    for op in ("ADD", "SUB", "MUL"):  # membrane charge / reset / shortcuts
        assert set(counts[op]) == {"float32"}, (op, counts[op])
    assert not report["flex_ops"]
    assert report["input"]["dtype"] == "float32" and report["output_dtype"] == "float32"
    assert report["file_bytes"] < 0.6 * 898216  # the float32 file of this preset

    run = load_exported(path)
    images = preprocess(shipped, x_test)
    exported = run(images, batch_size=64)
    reference = keras_logits(shipped, x_test)
    agreement = np.mean(exported.argmax(1) == reference.argmax(1))
    assert agreement == pytest.approx(report["top1_agreement"])
    for batch in (1, 8):
        np.testing.assert_allclose(run(images[:batch]), exported[:batch], atol=1e-5, rtol=0)
    assert report["top1_agreement"] >= 0.97
    assert report["accuracy_exported"] >= report["accuracy_keras"] - 0.02


def test_int8_io_file_carries_quantization_parameters(small, digits, tmp_path):
    """int8_io: int8 input and output tensors; load_exported quantizes float
    images with the file's scale/zero point and dequantizes the output, the
    same numbers as driving the interpreter by hand."""
    from ai_edge_litert.interpreter import Interpreter

    x_train, _, x_test, _ = digits
    path = tmp_path / "int8_io.tflite"
    report = export(small, path, quantization="int8", int8_io=True,
                    representative_images=x_train[:64], verification_images=x_test[:32])
    assert report["input"]["dtype"] == "int8" and report["output_dtype"] == "int8"
    images = preprocess(small, x_test[:8])
    run = load_exported(path)
    assert np.dtype(run.input_dtype) == np.int8
    logits = run(images)
    assert logits.dtype == np.float32 and logits.shape == (8, 10)

    interpreter = Interpreter(model_path=str(path))
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [8, 16, 16, 1])
    interpreter.allocate_tensors()
    scale, zero_point = detail["quantization"]
    assert scale > 0
    quantized = np.clip(np.round(images / scale + zero_point), -128, 127).astype("int8")
    interpreter.set_tensor(detail["index"], quantized)
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    raw = interpreter.get_tensor(out["index"])
    assert raw.dtype == np.int8
    out_scale, out_zero_point = out["quantization"]
    dequantized = (raw.astype("float32") - out_zero_point) * out_scale
    np.testing.assert_allclose(logits, dequantized, rtol=0, atol=1e-6)
    # Not a collapsed graph (e.g. a feature map quantized to zero gives the
    # same int8 output everywhere); accuracy is checked on the trained preset.
    assert len(np.unique(raw)) > 10
    assert np.abs(logits - keras_logits(small, x_test[:8])).max() < 0.2


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["float16", "dynamic_int8", "int8_512", "int8_io"])
def test_quantized_litert_accuracy_on_digits(shipped, digits, tmp_path, quantization):
    """Accuracy change of each quantization on the trained preset (about
    15-40 s each; int8_512: int8 calibrated on 512 training images).
    Measured (digits test split, float 99.44%): float16 99.44% (agreement
    100%), dynamic_int8 99.17% (99.72%), int8 99.17-99.44%, int8_io 99.17%."""
    x_train, _, x_test, y_test = digits
    int8 = quantization.startswith("int8")
    calibration = x_train[np.random.default_rng(0).permutation(len(x_train))[:512]]
    report = export(
        shipped, tmp_path / "q.tflite", quantization="int8" if int8 else quantization,
        int8_io=quantization == "int8_io",
        representative_images=calibration if int8 else None,
        verification_images=x_test, labels=y_test,
    )
    print(
        f"{quantization}: accuracy Keras {report['accuracy_keras']:.4f} -> exported "
        f"{report['accuracy_exported']:.4f} (change {report['accuracy_change']:+.4f}); "
        f"top-1 agreement {report['top1_agreement']:.4f}; max |logit diff| "
        f"{report['max_abs_logit_diff']:.3f}; {report['file_bytes']} bytes"
    )
    # Every quantization, full int8 included, stays within 2 points of float.
    assert report["accuracy_exported"] >= report["accuracy_keras"] - 0.02
    assert report["top1_agreement"] >= 0.97
    assert not report["flex_ops"]
    float_bytes = 898216  # the float32 file of this preset (measured)
    assert report["file_bytes"] < 0.8 * float_bytes


# --- errors: clear messages, nothing written --------------------------------


def test_unknown_format_is_a_value_error_listing_formats(small, tmp_path):
    with pytest.raises(ValueError, match=r"'coreml'.*litert.*onnx.*saved_model"):
        export(small, tmp_path / "m.mlmodel", format="coreml")
    assert listing(tmp_path) == []


def test_int8_without_representative_data_fails_before_writing(small, tmp_path):
    for missing in (None, np.zeros((0, 16, 16, 1), "uint8")):
        with pytest.raises(ValueError, match="representative_images"):
            export(small, tmp_path / "m.tflite", quantization="int8", representative_images=missing)
    with pytest.raises(ValueError, match="litert"):
        export(small, tmp_path / "m.onnx", format="onnx", quantization="float16")
    assert listing(tmp_path) == []


def test_unwritable_path_is_an_os_error_naming_it(small, tmp_path):
    blocker = tmp_path / "not_a_directory"
    blocker.write_bytes(b"a regular file")
    target = blocker / "model.tflite"
    with pytest.raises(OSError, match=re.escape(str(target))) as error:
        export(small, target)
    assert "not a directory" in str(error.value)
    assert listing(tmp_path) == ["not_a_directory"]
    assert blocker.read_bytes() == b"a regular file"


def test_failure_after_conversion_leaves_no_partial_file(small, digits, tmp_path, monkeypatch):
    """The file is converted and written to a staging file, then verification
    fails (made to report no agreement): the staging file is removed and an
    existing export survives."""
    from keras_spiking_tf.edge_export import exporter

    verify = exporter.verify_against_keras
    monkeypatch.setattr(exporter, "verify_against_keras",
                        lambda *args: {**verify(*args), "top1_agreement": 0.0})
    path = tmp_path / "model.tflite"
    path.write_bytes(b"previous export")
    with pytest.raises(ExportVerificationError, match="min_top1_agreement"):
        export(small, path, verification_images=digits[2][:16], min_top1_agreement=0.5)
    assert listing(tmp_path) == ["model.tflite"]
    assert path.read_bytes() == b"previous export"


def test_operator_without_builtin_kernel_fails_loudly(tmp_path):
    """No silent Flex fallback: a matrix determinant has no builtin LiteRT
    kernel, so conversion fails and nothing is written."""
    inputs = keras.Input((4, 4, 1), name="images")
    outputs = keras.layers.Lambda(
        lambda x: keras.ops.reshape(keras.ops.linalg.det(x[..., 0]), (-1, 1))
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(outputs))
    with pytest.raises(ExportError, match="builtin"):
        export(model, tmp_path / "det.tflite")
    assert listing(tmp_path) == []


# --- batches: memory, not results ------------------------------------------


VERIFICATION_FIELDS = ("num_samples", "top1_agreement", "max_abs_logit_diff",
                       "mean_abs_logit_diff", "num_samples_over_rounding", "accuracy_keras",
                       "accuracy_exported", "accuracy_change")


def test_verification_in_batches_reports_what_one_batch_does(small, digits, tmp_path):
    """batch_size=7 (6 batches, the last one short) and one batch of all 40
    images give the same report numbers, and both are the numbers computed
    here independently (all images at once through Keras and the file)."""
    _, _, x_test, y_test = digits
    images, labels = x_test[:40], y_test[:40]
    reports = {
        batch_size: export(small, tmp_path / f"b{batch_size}.onnx", format="onnx",
                           verification_images=images, labels=labels, batch_size=batch_size)
        for batch_size in (7, 40)
    }
    # Counts and accuracies equal; the logit differences equal up to the
    # rounding of ONNX Runtime's kernels, which block a batch of 7 and one
    # of 40 differently (measured: 6.5e-9 apart).
    for field in VERIFICATION_FIELDS:
        assert reports[7][field] == pytest.approx(reports[40][field], rel=1e-6, abs=1e-8), field
    for field in ("num_samples", "top1_agreement", "num_samples_over_rounding", "accuracy_keras",
                  "accuracy_exported", "accuracy_change"):
        assert reports[7][field] == reports[40][field], field
    assert reports[7]["batch_size"] == 7 and reports[40]["batch_size"] == 40
    assert reports[7]["batch_sizes_checked"] == [1, 7]
    reference = keras_logits(small, images)
    exported = load_exported(tmp_path / "b40.onnx")(preprocess(small, images))
    difference = np.abs(exported - reference)
    # Keras' own batches round as differently as the runtime's (float32:
    # a few 1e-9 on these logits), hence an absolute tolerance of 1e-7.
    assert reports[7]["max_abs_logit_diff"] == pytest.approx(difference.max(), rel=1e-6, abs=1e-7)
    assert reports[7]["mean_abs_logit_diff"] == pytest.approx(difference.mean(), rel=1e-5, abs=1e-7)
    assert reports[7]["top1_agreement"] == np.mean(exported.argmax(1) == reference.argmax(1))
    assert reports[7]["accuracy_keras"] == np.mean(reference.argmax(1) == labels)


def test_int8_calibration_in_batches_sees_every_sample_once_in_order(small, digits, tmp_path):
    """The representative data set is the calibration images, in order, in
    batches of min(batch_size, 16); calibrating in batches of 5 and of 16
    writes the same file, byte for byte."""
    from keras_spiking_tf.edge_export.litert import representative_batches

    representative = np.arange(37 * 2, dtype="float32").reshape(37, 2, 1, 1)
    for batch_size in (1, 5, 16, 64, 37):
        batches = [batch for (batch,) in representative_batches(representative, batch_size)]
        assert [len(b) for b in batches[:-1]] == [min(batch_size, 16)] * (len(batches) - 1)
        np.testing.assert_array_equal(np.concatenate(batches), representative)

    x_train = digits[0][:48]
    files = {}
    for batch_size in (5, 64):
        path = tmp_path / f"int8_{batch_size}.tflite"
        export(small, path, quantization="int8", representative_images=x_train,
               verification_images=digits[2][:8], batch_size=batch_size)
        files[batch_size] = path.read_bytes()
    assert files[5] == files[64]


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "8"])
def test_a_bad_batch_size_is_refused_before_anything_is_written(small, tmp_path, batch_size):
    from keras_spiking_tf.edge_export import export_step_model

    message = re.escape(f"`batch_size` must be an integer >= 1 and <= {2**20} or None; "
                        f"got {batch_size!r}.")
    with pytest.raises((TypeError, ValueError), match=message):
        export(small, tmp_path / "m.tflite", batch_size=batch_size)
    with pytest.raises((TypeError, ValueError), match=message):
        export_step_model(small, tmp_path / "step.tflite", batch_size=batch_size)
    assert listing(tmp_path) == []


def test_the_default_batch_size_bounds_the_largest_activation():
    """st_8_512_imagenet's largest activation is SPS stage 0's output padded
    for its 3x3 max pool: T x 226 x 226 x hidden_dim/8 float32 values per
    image; 256 MiB hold 5 of them. Small presets get the cap, 64."""
    from keras_spiking_tf.edge_export.export_utils import ACTIVATION_BUDGET_BYTES
    from keras_spiking_tf.edge_export.export_utils import default_batch_size
    from keras_spiking_tf.edge_export.export_utils import largest_activation_bytes

    imagenet = keras_spiking_tf.from_preset("st_8_512_imagenet", load_weights=False)
    per_image = 4 * 226 * 226 * (512 // 8) * 4
    assert largest_activation_bytes(imagenet) == per_image
    assert default_batch_size(imagenet) == ACTIVATION_BUDGET_BYTES // per_image == 5
    assert default_batch_size(imagenet, budget_bytes=per_image - 1) == 1
    digits_model = keras_spiking_tf.from_preset("st_2_64_digits", load_weights=False)
    assert default_batch_size(digits_model) == 64


# --- command line ------------------------------------------------------------


def test_export_tool_writes_report(tmp_path):
    output, report_path = tmp_path / "out" / "digits.tflite", tmp_path / "report.json"
    result = subprocess.run(
        [*tool_command("kst-export"), "--preset", "st_2_64_digits",
         "--format", "litert", "--dataset", "digits", "--num_verification_images", "64",
         "--output", str(output), "--report", str(report_path)],
        env=subprocess_env(), capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["preset"] == "st_2_64_digits" and report["weights"] == "trained"
    assert report["path"] == str(output) and output.stat().st_size == report["file_bytes"]
    assert report["num_samples"] == 64 and report["top1_agreement"] >= 0.98
    assert report["batch_size"] == 64  # the default for 16 x 16 images
    assert report["accuracy_keras"] >= 0.95 and report["accuracy_exported"] >= 0.95
    assert "top-1 agreement" in result.stdout
    assert listing(output.parent) == ["digits.tflite"]


# --- the step model: one frame per call, explicit state -----------------------------


@pytest.mark.parametrize("format,suffix", [("litert", ".tflite"), ("onnx", ".onnx")])
def test_exported_step_model_steps_like_the_keras_multi_step_model(tmp_path, format, suffix):
    from keras_spiking_tf.edge_export import export_step_model
    from keras_spiking_tf.edge_export import load_step_model

    keras.utils.set_random_seed(0)  # the same random weights every run: no chance near-tie
    model = keras_spiking_tf.from_preset("st_2_64_event_digits", load_weights=False, num_layers=1,
                                         hidden_dim=32, time_steps=3)
    rng = np.random.default_rng(0)
    frames = rng.poisson(0.8, (6, 3, 16, 16, 2)).astype("float32")
    calibrate_batch_norm(model, frames)  # random weights: give the neurons realistic inputs
    path = tmp_path / f"step{suffix}"
    # Verification in batches of 4 (the last one short): the same checks hold.
    report = export_step_model(model, str(path), format=format, verification_inputs=frames,
                               batch_size=4)
    assert report["batch_size"] == 4 and report["num_samples"] == 6
    assert report["top1_agreement"] == 1.0 and report["max_abs_logit_diff"] <= 1e-5
    assert report["max_abs_diff_to_multi_step"] <= 1e-5
    assert report["num_states"] == len(report["state_shapes"]) > 10
    assert report["step_latency_ms_median"] > 0
    ops = litert_ops(path.read_bytes()) if format == "litert" else _onnx_op_types(path)
    assert not {"WHILE", "Loop", "Scan", "VAR_HANDLE", "READ_VARIABLE"} & set(ops)
    # Stepping the file by hand: the state goes in and out explicitly.
    runner = load_step_model(str(path))
    state = runner.initial_state(len(frames))
    for t in range(3):
        logits, _, state = runner(frames[:, t], state)
    np.testing.assert_allclose(logits, model.predict(frames, verbose=0), atol=1e-5, rtol=0)
    assert listing(tmp_path) == [path.name]


def _onnx_op_types(path):
    import onnx

    return [node.op_type for node in onnx.load(str(path)).graph.node]


def _clip_graph(outer, inner, low, high, inner_used_twice=False):
    """x -> inner(x, a) -> outer(., b) [-> + inner's output again]."""
    from onnx import TensorProto
    from onnx import helper
    from onnx import numpy_helper

    a, b = (high, low) if inner == "Min" else (low, high)
    nodes = [helper.make_node(inner, ["x", "a"], ["y"]), helper.make_node(outer, ["y", "b"], ["z"])]
    output = "z"
    if inner_used_twice:
        nodes.append(helper.make_node("Add", ["z", "y"], ["w"]))
        output = "w"
    graph = helper.make_graph(
        nodes, "clip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 5])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [None, 5])],
        initializer=[numpy_helper.from_array(np.float32(a), "a"),
                     numpy_helper.from_array(np.float32(b), "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


@pytest.mark.parametrize("outer, inner", [("Min", "Max"), ("Max", "Min")])
@pytest.mark.parametrize("inner_used_twice", [False, True])
def test_fuse_clips_rewrites_min_max_pairs_only_where_exact(outer, inner, inner_used_twice,
                                                           tmp_path):
    import onnx
    import onnxruntime

    from keras_spiking_tf.edge_export.onnx import fuse_clips

    model = _clip_graph(outer, inner, 0.0, 1.0, inner_used_twice)
    expected_fused = 0 if inner_used_twice else 1
    assert fuse_clips(model.graph) == expected_fused
    onnx.checker.check_model(model)
    ops = [node.op_type for node in model.graph.node]
    assert ("Clip" in ops) == (not inner_used_twice)
    assert ("Min" in ops) == inner_used_twice
    x = np.array([[-2.0, -0.0, 0.5, 1.0, 3.0]] * 2, dtype=np.float32)
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[0]
    clipped = np.minimum(np.maximum(x, 0.0), 1.0)  # both orders equal for 0 <= 1
    expected = clipped + (np.maximum(x, 0.0) if inner == "Max" else np.minimum(x, 1.0)) \
        if inner_used_twice else clipped
    np.testing.assert_array_equal(got, expected)


def test_fuse_clips_leaves_empty_ranges_alone():
    from keras_spiking_tf.edge_export.onnx import fuse_clips

    # max(min(x, 0), 1) is the constant 1, not a clip to [1, 0].
    model = _clip_graph("Max", "Min", 1.0, 0.0)
    assert fuse_clips(model.graph) == 0
    assert [node.op_type for node in model.graph.node] == ["Min", "Max"]
