"""Microcontroller export (`format="litert_micro"`): a batch-1, static-shape
LiteRT file that TFLM's own interpreter (`tflite-micro`, the `micro` extra)
allocates and runs, checked against Keras.

The reference is the Keras model on the same preprocessed images, as in
tests/test_export.py. The int8 micro file quantizes the synapses, the
attention products and the data movement (`MICRO_INT8_OPERATORS`);
measured on the shipped st_2_64_digits, full digits test split (360
images): top-1 agreement 99.72 %, accuracy 98.61 % (Keras) / 98.89 % (TFLM),
file 423 KiB, arena 358 KiB; the int8 step model: 99.44 %, file 250 KiB,
arena 255 KiB (benchmarks/results/export_micro.jsonl). Here 48 test images,
calibrated on 128 training images (about 40 s per export).

Arena: the interpreter's own number (its recording allocator's total,
measured in a child process) is checked against an independent
measurement: a fresh interpreter given exactly that arena runs the file, one
given 1 KiB less fails.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="export converts through TensorFlow"
)
pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite_micro")

import keras_spiking_tf  # noqa: E402
from keras_spiking_tf.edge_export import export  # noqa: E402
from keras_spiking_tf.edge_export import export_step_model  # noqa: E402
from keras_spiking_tf.edge_export import litert_micro  # noqa: E402
from keras_spiking_tf.edge_export import load_exported  # noqa: E402
from keras_spiking_tf.edge_export import load_step_model  # noqa: E402
from keras_spiking_tf.training.datasets import load_dataset  # noqa: E402
from keras_spiking_tf.training.datasets import load_digits_arrays  # noqa: E402

NUM_TEST = 48


@pytest.fixture(scope="module")
def digits():
    """(x_train, y_train, x_test, y_test): uint8 16x16x1 images."""
    return load_digits_arrays()


@pytest.fixture(scope="module")
def shipped():
    return keras_spiking_tf.from_preset("st_2_64_digits")


def test_digits_splits_are_the_ones_load_dataset_gives(digits):
    """The arrays here are `load_dataset("digits")`'s test split."""
    splits = load_dataset("digits")
    assert splits.num_test == len(digits[2]) == 360


_RUN_WITH_ARENA = r"""
import sys
import numpy as np
from tflite_micro import runtime
interpreter = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(),
                                             arena_size=int(sys.argv[2]))
detail = interpreter.get_input_details(0)
interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
interpreter.invoke()
"""


def runs_with_arena(path, arena_size):
    """Whether a fresh TFLM interpreter (child process) runs the file with
    an arena of `arena_size` bytes."""
    result = subprocess.run([sys.executable, "-c", _RUN_WITH_ARENA, str(path), str(arena_size)],
                            capture_output=True, timeout=300)
    return result.returncode == 0


def test_int8_digits_runs_in_tflm_and_agrees_with_keras(shipped, digits, tmp_path):
    x_train, _, x_test, y_test = digits
    path = tmp_path / "digits_micro.tflite"
    calibration = x_train[np.sort(np.random.default_rng(0).permutation(len(x_train))[:128])]
    report = export(shipped, path, format="litert_micro", quantization="int8",
                    representative_images=calibration, verification_images=x_test[:NUM_TEST],
                    labels=y_test[:NUM_TEST])
    print({k: report[k] for k in ("file_bytes", "arena_bytes", "arena_head_bytes",
                                  "arena_tail_bytes", "top1_agreement", "accuracy_keras",
                                  "accuracy_exported")})
    assert report["format"] == "litert_micro" and report["num_samples"] == NUM_TEST
    assert report["top1_agreement"] >= 0.97
    assert report["accuracy_exported"] >= report["accuracy_keras"] - 0.03

    # Every operator is one TFLM registers; every shape static, batch 1.
    model_bytes = path.read_bytes()
    assert set(report["ops"]) <= litert_micro.TFLM_OPERATORS
    assert litert_micro.dynamic_tensors(model_bytes) == []
    assert report["input"]["shape"] == [1, 16, 16, 1]
    assert litert_micro.is_micro_file(path)
    counts = report["op_counts"]
    assert counts["CONV_2D"] == {"int8": 5} and counts["FULLY_CONNECTED"] == {"int8": 13}
    assert set(counts["FLOOR"]) == {"float32"}  # the neurons stay float32

    # Sizes: the file's, and the arena against a fresh interpreter's.
    assert report["file_bytes"] == os.path.getsize(path) <= litert_micro.TARGET_FLASH_BYTES
    arena = report["arena_bytes"]
    assert arena == report["arena_head_bytes"] + report["arena_tail_bytes"]
    assert runs_with_arena(path, arena)
    assert not runs_with_arena(path, arena - 1024)
    assert report["fits_1mb_flash_256kb_ram"] == (arena <= litert_micro.TARGET_RAM_BYTES)
    peak = report["arena_peak_tensors"]
    assert peak and all(t["bytes"] > 0 for t in peak)
    assert peak == sorted(peak, key=lambda t: -t["bytes"])
    assert litert_micro.peak_tensors(model_bytes)["peak_bytes"] <= report["arena_head_bytes"]

    # Run again through load_exported (TFLM, one sample per invoke).
    run = load_exported(path, format="litert_micro")
    images = np.asarray(shipped.preprocessor(x_test[:NUM_TEST].astype("float32")))
    exported = run(images)
    reference = np.asarray(shipped(images, training=False))
    agreement = np.mean(exported.argmax(1) == reference.argmax(1))
    assert agreement == pytest.approx(report["top1_agreement"])


def test_step_model_runs_one_frame_per_invoke_in_tflm(shipped, digits, tmp_path):
    """The step model (state in and out) in TFLM matches the Keras step
    model spike for spike (float32)."""
    _, _, x_test, y_test = digits
    path = tmp_path / "step_micro.tflite"
    report = export_step_model(shipped, str(path), format="litert_micro",
                               verification_inputs=x_test[:6], labels=y_test[:6])
    assert report["format"] == "litert_micro" and report["top1_agreement"] == 1.0
    assert report["max_abs_logit_diff"] < 1e-4
    assert report["file_bytes"] == os.path.getsize(path)
    assert runs_with_arena(path, report["arena_bytes"])
    runner = load_step_model(str(path))
    assert runner.format == "litert_micro"
    assert [tuple(s) for s in report["state_shapes"]] == runner.state_shapes
    model_bytes = path.read_bytes()
    assert set(litert_micro.litert.litert_ops(model_bytes)) <= litert_micro.TFLM_OPERATORS
    assert litert_micro.dynamic_tensors(model_bytes) == []
    # One frame: batch 1 in, the state out with the shapes it came in with.
    frame = np.asarray(shipped.preprocessor(x_test[:1].astype("float32")))
    logits, _, state = runner(frame, runner.initial_state(1))
    assert logits.shape == (1, 10)
    assert [s.shape[1:] for s in state] == runner.state_shapes


@pytest.mark.slow  # the float step model above keeps TFLM stepping in CI
def test_int8_step_model_in_tflm(shipped, digits, tmp_path):
    """The int8 step model (synapses, attention products and spike data
    movement int8; membranes and state float32), calibrated on every time
    step of 64 training images with the state Keras reaches there."""
    x_train, _, x_test, y_test = digits
    path = tmp_path / "step_int8.tflite"
    calibration = x_train[np.sort(np.random.default_rng(0).permutation(len(x_train))[:64])]
    report = export_step_model(shipped, str(path), format="litert_micro",
                               verification_inputs=x_test[:24], labels=y_test[:24],
                               quantization="int8", representative_inputs=calibration)
    print({k: report[k] for k in ("file_bytes", "arena_bytes", "top1_agreement")})
    assert report["quantization"] == "int8" and report["top1_agreement"] >= 0.9
    model_bytes = path.read_bytes()
    counts = litert_micro.litert.litert_op_counts(model_bytes)
    assert counts["CONV_2D"] == {"int8": 5} and counts["FULLY_CONNECTED"] == {"int8": 13}
    assert set(litert_micro.litert.litert_ops(model_bytes)) <= litert_micro.TFLM_OPERATORS
    assert report["file_bytes"] == os.path.getsize(path) <= litert_micro.TARGET_FLASH_BYTES
    assert runs_with_arena(path, report["arena_bytes"])
    assert not runs_with_arena(path, report["arena_bytes"] - 1024)


@pytest.mark.parametrize("format,options,match", [
    ("litert", {"quantization": "int8"}, "quantizes format='litert_micro' only"),
    ("litert_micro", {"quantization": "int8"}, "needs representative_inputs"),
    ("litert_micro", {"quantization": "dynamic_int8"}, "takes quantization=None"),
])
def test_step_quantization_options_are_checked_before_writing(shipped, tmp_path, format,
                                                              options, match):
    with pytest.raises(ValueError, match=match):
        export_step_model(shipped, str(tmp_path / "step.tflite"), format=format, **options)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("quantization", ["dynamic_int8", "float16"])
def test_a_quantization_tflm_cannot_run_is_refused_before_writing(shipped, tmp_path,
                                                                   quantization):
    path = tmp_path / "out" / "digits_micro.tflite"
    with pytest.raises(ValueError, match="format='litert_micro' takes quantization=None") as info:
        export(shipped, path, format="litert_micro", quantization=quantization,
               representative_images=np.zeros((4, 16, 16, 1), "uint8"))
    assert "quantization='int8'" in str(info.value) and "format='litert'" in str(info.value)
    assert not path.exists() and not path.parent.exists()


def test_a_step_file_of_the_wrong_suffix_is_refused(shipped, tmp_path):
    with pytest.raises(ValueError, match="'.tflite' file for format='litert_micro'"):
        export_step_model(shipped, str(tmp_path / "step.onnx"), format="litert_micro")
    assert os.listdir(tmp_path) == []


@pytest.mark.slow  # the int8 export above keeps the format in CI
def test_export_tool_writes_a_micro_file_and_its_arena(tmp_path):
    """`kst-export --format litert_micro`: the report has the arena; a
    quantization TFLM cannot run is one `error:` line, nothing written."""
    import json

    from conftest import subprocess_env
    from conftest import tool_command

    output, report_path = tmp_path / "digits_micro.tflite", tmp_path / "digits_micro.json"
    command = [*tool_command("kst-export"), "--preset", "st_2_64_digits", "--format",
               "litert_micro", "--quantization", "int8", "--dataset", "digits",
               "--num_verification_images", "16", "--num_calibration_images", "64",
               "--output", str(output), "--report", str(report_path)]
    result = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["format"] == "litert_micro" and report["input"]["shape"] == [1, 16, 16, 1]
    assert report["file_bytes"] == os.path.getsize(output)
    assert report["arena_bytes"] > 0 and "TFLM tensor arena" in result.stdout
    refused = tmp_path / "refused.tflite"
    result = subprocess.run([*tool_command("kst-export"), "--format", "litert_micro",
                             "--quantization", "dynamic_int8", "--output", str(refused)],
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and not refused.exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "quantization='int8'" in errors[0], result.stderr[-2000:]


def test_missing_tflite_micro_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tflite_micro", None)
    with pytest.raises(ImportError, match=r'pip install "keras-spiking-tf\[micro\]"'):
        litert_micro.arena(tmp_path / "missing.tflite")
