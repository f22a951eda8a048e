"""Export from the backend you have: `export`, `export_step_model`,
`model.export` and `kst-export` on TensorFlow, JAX and PyTorch write the
same verified files (edge_export/tensorflow_bridge.py).

Run under each backend (`tests/run.sh` does): on JAX and PyTorch every
export converts in a TensorFlow child process (a TensorFlow import and a
model rebuild, 10-40 s each on a small CPU), so the tests are few. The
reference is a TensorFlow-backend export of the same weights (the shipped
st_2_64_digits preset), made in a TensorFlow subprocess (`write_reference`;
in this process on the TensorFlow backend): the backend's file has the same
operators (the LiteRT file the same bytes), and it agrees with the
backend's own `predict` within `ROUNDING_TOLERANCE`, top-1 on every image.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

import keras_spiking_tf  # noqa: E402
from conftest import subprocess_env  # noqa: E402
from conftest import tool_command  # noqa: E402
from keras_spiking_tf.edge_export import ROUNDING_TOLERANCE  # noqa: E402
from keras_spiking_tf.edge_export import ExportError  # noqa: E402
from keras_spiking_tf.edge_export import ExportVerificationError  # noqa: E402
from keras_spiking_tf.edge_export import export  # noqa: E402
from keras_spiking_tf.edge_export import export_step_model  # noqa: E402
from keras_spiking_tf.edge_export import litert_ops  # noqa: E402
from keras_spiking_tf.edge_export import load_exported  # noqa: E402
from keras_spiking_tf.edge_export import load_step_model  # noqa: E402

BACKEND = keras.backend.backend()
PRESET = "st_2_64_digits"
IMAGES = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 1)).astype("uint8")


def onnx_ops(path):
    import onnx

    return sorted({node.op_type for node in onnx.load(str(path)).graph.node})


def file_ops(path):
    path = Path(path)
    if path.suffix == ".onnx":
        return onnx_ops(path)
    return litert_ops(path.read_bytes())


def write_reference(directory):
    """TensorFlow-backend exports of the preset into `directory`: litert,
    onnx and the LiteRT step model; their operators in `ops.json`."""
    model = keras_spiking_tf.from_preset(PRESET)
    directory = Path(directory)
    ops = {}
    for format, name in (("litert", "reference.tflite"), ("onnx", "reference.onnx")):
        report = export(model, directory / name, format=format, verification_images=IMAGES)
        ops[format] = report.ops
    export_step_model(model, directory / "reference_step.tflite")
    ops["step"] = file_ops(directory / "reference_step.tflite")
    (directory / "ops.json").write_text(json.dumps(ops))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """`(directory, ops)` of the TensorFlow-backend reference exports."""
    directory = tmp_path_factory.mktemp("tensorflow_reference")
    if BACKEND == "tensorflow":
        write_reference(directory)
    else:
        program = (
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from test_export_backends import write_reference; write_reference(sys.argv[2])"
        )
        result = subprocess.run(
            [sys.executable, "-c", program, str(Path(__file__).parent), str(directory)],
            env=subprocess_env(), capture_output=True, text=True, timeout=900,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return directory, json.loads((directory / "ops.json").read_text())


@pytest.fixture(scope="module")
def model():
    return keras_spiking_tf.from_preset(PRESET)


def assert_parity_with_predict(model, path):
    """The file on the preprocessed images against this backend's `predict`."""
    logits = np.asarray(model.predict(IMAGES, verbose=0))
    images = np.asarray(model.preprocessor(IMAGES.astype("float32")), dtype="float32")
    exported = load_exported(path)(images)
    assert np.max(np.abs(exported - logits)) <= ROUNDING_TOLERANCE
    assert np.mean(exported.argmax(1) == logits.argmax(1)) == 1.0


def assert_verified(report):
    assert report["top1_agreement"] == 1.0
    assert report["max_abs_logit_diff"] <= ROUNDING_TOLERANCE
    assert report["num_samples_over_rounding"] == 0


SKIP_ON_TENSORFLOW = pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="on TensorFlow this is test_export.py's and test_streaming.py's export",
)


@SKIP_ON_TENSORFLOW
def test_export_writes_the_tensorflow_file(model, reference, tmp_path):
    directory, ops = reference
    path = tmp_path / "digits.tflite"
    report = export(model, path, verification_images=IMAGES)
    assert report.path == str(path) and report.flex_ops == []
    assert report.ops == ops["litert"] == file_ops(path)
    assert path.read_bytes() == (directory / "reference.tflite").read_bytes()
    assert_verified(report)
    assert_parity_with_predict(model, path)
    assert os.listdir(tmp_path) == ["digits.tflite"]


def test_model_export_goes_through_the_verified_export(model, reference, tmp_path, capsys):
    _, ops = reference
    with pytest.raises(ValueError, match="openvino.*is not a format keras_spiking_tf exports"):
        model.export(tmp_path / "x", format="openvino")
    with pytest.raises(ValueError, match="input_signature"):
        model.export(tmp_path / "x.onnx", format="onnx", input_signature=[None])
    path = tmp_path / "digits.onnx"
    report = model.export(path, format="onnx", verification_images=IMAGES)
    assert "Saved artifact at" in capsys.readouterr().out
    assert report.format == "onnx" and report.optimize_graph
    assert report.ops == ops["onnx"] == file_ops(path)
    assert_verified(report)
    assert_parity_with_predict(model, path)
    assert os.listdir(tmp_path) == ["digits.onnx"]


@SKIP_ON_TENSORFLOW
@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="CI time: the step file goes through the same bridge as on PyTorch, where it runs",
)
def test_export_step_model_writes_the_tensorflow_step_file(model, reference, tmp_path):
    directory, ops = reference
    path = tmp_path / "step.tflite"
    report = export_step_model(model, path)
    assert file_ops(path) == ops["step"]
    assert report["top1_agreement"] == 1.0
    assert report["max_abs_logit_diff"] <= ROUNDING_TOLERANCE
    assert report["max_abs_diff_to_multi_step"] <= ROUNDING_TOLERANCE
    runner = load_step_model(path)
    state = runner.initial_state(2)
    images = np.asarray(model.preprocessor(IMAGES[:2].astype("float32")), dtype="float32")
    for _ in range(model.backbone.time_steps):
        logits, _, state = runner(images, state)
    predicted = np.asarray(model.predict(IMAGES[:2], verbose=0))
    assert np.max(np.abs(logits - predicted)) <= ROUNDING_TOLERANCE


def test_an_error_in_the_conversion_comes_back_as_itself_and_writes_nothing(model, tmp_path):
    wrong = np.zeros((2, 8, 8, 1), "float32")
    expected = (
        "Images shaped (2, 8, 8, 1) give graph inputs shaped (2, 8, 8, 1); the exported "
        "graph takes (batch, 16, 16, 1)."
    )
    with pytest.raises(ValueError) as raised:
        export(model, tmp_path / "new" / "digits.tflite", verification_images=wrong,
               preprocess_images=False)
    assert type(raised.value) is ValueError and str(raised.value) == expected
    if BACKEND != "tensorflow":
        assert "TensorFlow process" in "\n".join(raised.value.__notes__)
    assert os.listdir(tmp_path) == []


def test_errors_are_rebuilt_as_the_same_type_with_the_same_message():
    from keras_spiking_tf.edge_export.tensorflow_bridge import _error_info
    from keras_spiking_tf.edge_export.tensorflow_bridge import _rebuild_error

    class Unknown(Exception):
        pass

    errors = [
        ExportVerificationError("Top-1 agreement with Keras 0.5000 is below 0.9"),
        FileNotFoundError(2, "No such file or directory", "/nowhere/x.tflite"),
        KeyError("state_0"),
        Unknown("from a library"),
    ]
    for error in errors:
        try:
            raise error
        except Exception as raised:
            info = json.loads(json.dumps(_error_info(raised)))
        rebuilt = _rebuild_error(info, "")
        if isinstance(error, Unknown):
            assert type(rebuilt) is ExportError
            assert str(rebuilt).endswith("Unknown: from a library")
        else:
            assert type(rebuilt) is type(error) and str(rebuilt) == str(error)


@pytest.mark.skipif(BACKEND != "jax", reason="runs kst-export under JAX once, in the JAX pass")
def test_kst_export_under_jax_writes_the_tensorflow_file(reference, tmp_path):
    directory, ops = reference
    output = tmp_path / "digits.tflite"
    result = subprocess.run(
        [*tool_command("kst-export"), "--preset", PRESET, "--format", "litert",
         "--output", str(output), "--num_verification_images", "8",
         "--report", str(tmp_path / "report.json")],
        env=subprocess_env(KERAS_BACKEND="jax"), capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.strip() == "", result.stderr
    assert "top-1 agreement 1.0000" in result.stdout
    assert output.read_bytes() == (directory / "reference.tflite").read_bytes()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ops"] == ops["litert"] and report["top1_agreement"] == 1.0
    assert load_exported(output)(np.zeros((1, 16, 16, 1), "float32")).shape == (1, 10)
