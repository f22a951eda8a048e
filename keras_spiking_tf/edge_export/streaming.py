"""Exporting one time step with explicit state: LiteRT and ONNX files that
an event-camera device runs a frame at a time.

The exported graph is `SpikingStepModel` (see `models/streaming.py`), of
a classifier of either family: inputs `frame` and `state_0 ...
state_{n-1}` (every neuron's membrane, then the sum of the step logits so
far and the step count), outputs `logits` (the running prediction),
`step_logits` and `next_state_0 ...`. The state is
plain tensors the caller carries from one call to the next: the file has
no variables for it and no loop. `export_step_model` verifies the written
file by stepping it `T` times on frame sequences and comparing with the
Keras multi-step classifier, and reports the latency of one step.

Example:

```python
report = export_step_model(model, "step.tflite", verification_inputs=frames)
runner = load_step_model("step.tflite")
state = runner.initial_state(batch_size=1)
for frame in sequence:                                   # (1, H, W, C) each
    logits, step_logits, state = runner(frame, state)
```
"""

import os
import statistics
import tempfile
import time

import keras
import numpy as np

from keras_spiking_tf import validation
from keras_spiking_tf.edge_export.export_utils import ExportError
from keras_spiking_tf.edge_export.export_utils import ExportVerificationError
from keras_spiking_tf.edge_export.export_utils import check_batch_size
from keras_spiking_tf.edge_export.export_utils import check_num_threads
from keras_spiking_tf.edge_export.export_utils import default_batch_size
from keras_spiking_tf.edge_export.export_utils import in_batches
from keras_spiking_tf.edge_export.export_utils import in_float32
from keras_spiking_tf.edge_export.export_utils import move_into_place
from keras_spiking_tf.edge_export.export_utils import quiet
from keras_spiking_tf.edge_export.export_utils import remove
from keras_spiking_tf.edge_export.export_utils import reserve
from keras_spiking_tf.edge_export import litert_micro
from keras_spiking_tf.edge_export.formats import FORMATS
from keras_spiking_tf.edge_export.formats import QUANTIZATIONS
from keras_spiking_tf.inference_graph import optimize_for_inference
from keras_spiking_tf.optional_dependencies import require
from keras_spiking_tf.models.streaming import PREDICT_METHODS
from keras_spiking_tf.models.streaming import SpikingStepModel
from keras_spiking_tf.models.streaming import check_classifier
from keras_spiking_tf.models.streaming import running_logits

STEP_FORMATS = ("litert", "onnx", "litert_micro")  # litert_micro: batch 1, static, TFLM
MAX_SEED = 2**32 - 1  # NumPy's seeds


def _signature(step, batch=None):
    import tensorflow as tf

    specs = [tf.TensorSpec((batch, *step.frame_shape), tf.float32, name="frame")]
    specs += [
        tf.TensorSpec((batch, *shape), tf.float32, name=f"state_{i}")
        for i, shape in enumerate(step.state_shapes())
    ]
    return specs


def _serving_function(step):
    def serve(frame, *state):
        logits, step_logits, *next_state = step([frame, *state])
        outputs = {"logits": logits, "step_logits": step_logits}
        outputs.update({f"next_state_{i}": s for i, s in enumerate(next_state)})
        return outputs

    return serve


def _convert(step, format, path, quantization=None, representative=None):
    import tensorflow as tf

    specs = _signature(step, 1 if format == "litert_micro" else None)
    serve = _serving_function(step)
    if format == "onnx":
        tf2onnx = require("tf2onnx", "ONNX export of a step model (format='onnx')")

        function = tf.function(serve, input_signature=specs)
        quiet(tf2onnx.convert.from_function, function, input_signature=specs, opset=17,
               output_path=path)
        return
    with tempfile.TemporaryDirectory(prefix="keras_spiking_tf_step_") as saved_model_dir:
        archive = keras.export.ExportArchive()
        archive.track(step)
        archive.add_endpoint("serve", serve, input_signature=specs)
        quiet(archive.write_out, saved_model_dir, verbose=False)
        if format == "litert_micro":  # one frame per invoke, static shapes, TFLM's operators
            return litert_micro.convert_step(saved_model_dir, path, quantization, representative)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            model_bytes = quiet(converter.convert)
        except Exception as error:
            raise ExportError(f"LiteRT conversion of the step model failed: {error}") from error
    with open(path, "wb") as file:
        file.write(model_bytes)


class StepRunner:
    """An exported step file in its runtime (LiteRT, ONNX Runtime, or TFLM
    for a `litert_micro` file: `format=`, or read off a `.tflite` file's
    static batch of 1).

    `runner(frame, state)` returns `(logits, step_logits, next_state)` as
    NumPy arrays; `runner.initial_state(batch_size)` gives the zero state.
    """

    def __init__(self, path, num_threads=None, format=None):
        self.path = os.fspath(path)
        if format is None and self.path.endswith(".tflite") and litert_micro.is_micro_file(self.path):
            format = "litert_micro"  # a static batch-1 step file runs in TFLM
        self.format = format or ("onnx" if self.path.endswith(".onnx") else "litert")
        if self.format == "litert_micro":
            self._micro = litert_micro.StepRunner(self.path)
            self.state_shapes = self._micro.state_shapes
        elif self.format == "onnx":
            onnxruntime = require("onnxruntime", "Running an ONNX step file (ONNX Runtime)")

            options = onnxruntime.SessionOptions()
            if num_threads:
                options.intra_op_num_threads = int(num_threads)
            self._session = onnxruntime.InferenceSession(
                self.path, options, providers=["CPUExecutionProvider"]
            )
            inputs = self._session.get_inputs()
            self.state_shapes = [tuple(i.shape[1:]) for i in inputs if i.name.startswith("state_")]
            self._names = [o.name for o in self._session.get_outputs()]
        else:
            Interpreter = require(
                "ai_edge_litert.interpreter", "Running a LiteRT step file (the LiteRT interpreter)"
            ).Interpreter

            interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
            (signature,) = interpreter.get_signature_list()  # the one exported endpoint
            self._runner = interpreter.get_signature_runner(signature)
            details = self._runner.get_input_details()
            self.state_shapes = [
                tuple(int(d) for d in details[f"state_{i}"]["shape_signature"][1:])
                for i in range(sum(1 for name in details if name.startswith("state_")))
            ]

    def initial_state(self, batch_size):
        return [np.zeros((batch_size, *shape), "float32") for shape in self.state_shapes]

    def __call__(self, frame, state):
        if self.format == "litert_micro":
            return self._micro(frame, state)
        feeds = {"frame": np.asarray(frame, "float32")}
        feeds.update({f"state_{i}": np.asarray(s, "float32") for i, s in enumerate(state)})
        if self.format == "onnx":
            outputs = dict(zip(self._names, self._session.run(None, feeds)))
        else:
            outputs = self._runner(**feeds)
        next_state = [outputs[f"next_state_{i}"] for i in range(len(state))]
        return outputs["logits"], outputs["step_logits"], next_state


def load_step_model(path, num_threads=None):
    """A `StepRunner` for an exported step file (`.tflite` or `.onnx`; a
    `.tflite` step file with a static batch of 1, `format="litert_micro"`'s,
    runs in the TFLM interpreter)."""
    path = validation.check_path("path", path, kind="file")
    check_num_threads("num_threads", num_threads)
    return StepRunner(path, num_threads)


def _step_through(runner, inputs, steps, frames, batch_size):
    """Runs the file over `inputs`, `batch_size` samples at a time; the
    running logits after each step and the seconds one single-sample step
    takes."""

    def run(batch):
        state = runner.initial_state(len(batch))
        history = []
        for t in range(steps):
            logits, _, state = runner(batch[:, t] if frames else batch, state)
            history.append(logits)
        return np.stack(history, axis=1)

    running = in_batches(run, inputs, batch_size)
    one = inputs[:1]
    state = runner.initial_state(1)
    latencies = []
    for t in range(steps):
        started = time.perf_counter()
        _, _, state = runner(one[:, t] if frames else one, state)
        latencies.append(time.perf_counter() - started)
    return running, latencies


def export_step_model(classifier, path, format="litert", verification_inputs=None,
                      labels=None, min_top1_agreement=None, seed=0, batch_size=None, *,
                      quantization=None, representative_inputs=None):
    """Exports one time step of `classifier` with explicit state, verified.

    Args:
        classifier: an image classifier of either family, as
            `SpikingStepModel` takes (a mixed-precision one is exported as a
            float32 copy).
        path: a `.tflite` (LiteRT) or `.onnx` file.
        format: `"litert"`, `"onnx"` or `"litert_micro"` (batch 1, static
            shapes, for TFLM on microcontrollers: one frame per invoke with
            the state in and out, float32; verified in the TFLM
            interpreter, and the report adds its `arena_bytes`, see
            `litert_micro.memory`).
        verification_inputs: what `predict` takes (raw images, or frame
            sequences `(batch, T, ...)`); `None`: 4 random inputs.
        labels: integer labels of `verification_inputs`, for accuracies.
        min_top1_agreement: if set, a lower agreement with Keras raises
            `ExportVerificationError` and writes nothing.
        seed: of the random verification inputs.
        batch_size: how many inputs go through a model at once in
            verification (Keras and the exported file); results do not
            depend on it. `None`: chosen as `export`'s (the most inputs whose
            largest activation stays within 256 MiB, 1 to 64).
        quantization: `format="litert_micro"` only: `None` (float32) or
            `"int8"` (the step of `optimize_for_inference`'s graph, int8 as
            `export`'s micro files: `litert_micro.MICRO_INT8_OPERATORS`).
        representative_inputs: with `"int8"`: inputs as `predict` takes
            them (training images or frame sequences); every time step of
            each, with the state the Keras step model reaches there, is one
            calibration sample.

    Returns:
        A report dict: `format`, `path`, `file_bytes`, `num_states`,
        `state_shapes`, `time_steps`, `num_samples`, `top1_agreement`,
        `max_abs_logit_diff` (the exported file's running logits against the
        Keras step model's, over every step), `max_abs_diff_to_multi_step`
        (after the last step, against the multi-step classifier's
        `predict`), `accuracy_keras`/`accuracy_exported` (with `labels`),
        `step_latency_ms_median`/`_p90` (one sample, one step). For
        `"litert_micro"` also `quantization`, `arena_bytes`,
        `arena_head_bytes`, `arena_tail_bytes`, `arena_peak_tensors` and
        `fits_1mb_flash_256kb_ram` (`litert_micro.memory`).

    Raises:
        ValueError: an unknown format, a suffix that does not match it, a
            `batch_size` that is not `None` or an integer >= 1 (before
            anything is written).
        ImportError: the format's optional packages are not installed.
        ExportError, ExportVerificationError: as `export`.
    """
    check_classifier("classifier", classifier, PREDICT_METHODS)
    path = validation.check_path_text("path", path)
    validation.check_choice("format", format, STEP_FORMATS)
    suffix = {"litert": ".tflite", "onnx": ".onnx", "litert_micro": ".tflite"}[format]
    if not path.endswith(suffix):
        raise validation.invalid("path", path, f"a '{suffix}' file for format={format!r}")
    validation.check_batch("verification_inputs", verification_inputs, allow_none=True)
    validation.check_batch("labels", labels, allow_none=True)
    validation.check_number("min_top1_agreement", min_top1_agreement, minimum=0.0, maximum=1.0,
                            allow_none=True)
    validation.check_integer("seed", seed, minimum=0, maximum=MAX_SEED)
    check_batch_size(batch_size)
    validation.check_choice("quantization", quantization, QUANTIZATIONS[1:], allow_none=True)
    validation.check_batch("representative_inputs", representative_inputs, allow_none=True)
    if quantization is not None or representative_inputs is not None:
        if format != "litert_micro":
            raise ValueError(
                f"export_step_model quantizes format='litert_micro' only; export "
                f"format={format!r} with quantization=None."
            )
        litert_micro.check_options(quantization)
        if (quantization == "int8") != (representative_inputs is not None):
            raise ValueError(
                "quantization='int8' needs representative_inputs (training inputs to "
                "calibrate on), and representative_inputs are for quantization='int8' only."
            )
    for module_name in FORMATS[format].converter_modules + FORMATS[format].runtime_modules:
        if module_name != "onnx":  # the step export writes with tf2onnx alone
            require(module_name, f"export_step_model(format={format!r})")
    if keras.backend.backend() != "tensorflow":
        return _export_step_model_through_tensorflow(
            classifier, path, format, verification_inputs, labels, min_top1_agreement, seed,
            batch_size, quantization=quantization, representative_inputs=representative_inputs,
        )
    report, _ = _export_step_model_here(
        classifier, path, format, verification_inputs, labels, min_top1_agreement, seed,
        batch_size, quantization=quantization, representative_inputs=representative_inputs,
    )
    return report


def _export_step_model_here(classifier, path, format, verification_inputs, labels,
                            min_top1_agreement, seed, batch_size, staging=None,
                            quantization=None, representative_inputs=None):
    """`export_step_model`'s work on the TensorFlow backend, the arguments
    checked; returns the report and the verification inputs. With `staging`
    (reserved by the caller) the file is written there and the caller moves
    it into place or removes it."""
    model = in_float32(classifier)
    backbone = model.backbone
    frames = backbone.input_type == "frames"
    steps = backbone.time_steps
    if verification_inputs is None:
        rng = np.random.default_rng(seed)
        height, width, channels = backbone.image_shape
        if frames:
            verification_inputs = rng.poisson(0.3, (4, steps, height, width, channels)).astype("float32")
        else:
            verification_inputs = rng.integers(0, 256, (4, height, width, channels)).astype("uint8")
    model.check_images(verification_inputs)
    if batch_size is None:
        batch_size = default_batch_size(model)
    keras_outputs = _keras_step_outputs(model, verification_inputs, batch_size)

    step = SpikingStepModel(model)
    representative = None
    if format == "litert_micro":  # the inference graph (its zero-padded pools quantize)
        step = SpikingStepModel(optimize_for_inference(model, jit_compile=False))
        if quantization == "int8":
            representative = litert_micro.step_calibration(
                step, model, representative_inputs, batch_size
            )
    owns_staging = staging is None
    if owns_staging:
        path, staging = reserve(path, format)
    else:
        path = os.path.abspath(os.fspath(path))
    try:
        _convert(step, format, staging, quantization, representative)
        memory = {}
        if format == "litert_micro":
            memory = {"quantization": quantization, **litert_micro.memory(staging)}
        report = {
            "format": format,
            "path": path,
            "file_bytes": os.path.getsize(staging),
            "num_states": len(step.state_shapes()),
            "state_shapes": [list(shape) for shape in step.state_shapes()],
            "time_steps": steps,
            **_verify_step_file(model, staging, verification_inputs, labels, batch_size,
                                keras_outputs),
            "batch_size": int(batch_size),
            **memory,
        }
        _check_step_agreement(report, min_top1_agreement, path)
        if owns_staging:
            move_into_place(staging, path, format)
    except BaseException:
        if owns_staging:
            remove(staging)
        raise
    return report, verification_inputs


def _keras_step_outputs(model, verification_inputs, batch_size):
    """The Keras references: the step model's running logits and the
    multi-step classifier's `predict`."""
    keras_running = running_logits(model, verification_inputs, batch_size=batch_size)
    multi_step = np.asarray(model.predict(verification_inputs, batch_size=batch_size, verbose=0))
    return keras_running, multi_step


def _verify_step_file(model, path, verification_inputs, labels, batch_size, keras_outputs):
    """The report's verification fields: the file at `path` stepped over
    `verification_inputs` against `keras_outputs` (`_keras_step_outputs`)."""
    keras_running, multi_step = keras_outputs
    backbone = model.backbone
    frames = backbone.input_type == "frames"
    inputs = np.asarray(verification_inputs, "float32")
    if not frames and model.preprocessor is not None:
        inputs = in_batches(lambda batch: np.asarray(model.preprocessor(batch)), inputs, batch_size)
    runner = StepRunner(path)
    exported, latencies = _step_through(runner, inputs, backbone.time_steps, frames, batch_size)
    report = {
        "num_samples": len(inputs),
        "top1_agreement": float(
            np.mean(exported[:, -1].argmax(-1) == keras_running[:, -1].argmax(-1))
        ),
        "max_abs_logit_diff": float(np.max(np.abs(exported - keras_running))),
        "max_abs_diff_to_multi_step": float(np.max(np.abs(exported[:, -1] - multi_step))),
        "accuracy_keras": None,
        "accuracy_exported": None,
        "step_latency_ms_median": 1e3 * statistics.median(latencies),
        "step_latency_ms_p90": 1e3 * float(np.percentile(latencies, 90)),
    }
    if labels is not None:
        labels = np.asarray(labels)
        report["accuracy_keras"] = float(np.mean(multi_step.argmax(-1) == labels))
        report["accuracy_exported"] = float(np.mean(exported[:, -1].argmax(-1) == labels))
    return report


def _check_step_agreement(report, min_top1_agreement, path):
    agreement = report["top1_agreement"]
    if min_top1_agreement is not None and agreement < min_top1_agreement:
        raise ExportVerificationError(
            f"Top-1 agreement of the stepped file with Keras is {agreement:.4f}, below "
            f"{min_top1_agreement}; nothing written to '{path}'."
        )


def _export_step_model_through_tensorflow(classifier, path, format, verification_inputs,
                                          labels, min_top1_agreement, seed, batch_size,
                                          quantization=None, representative_inputs=None):
    """`export_step_model` on JAX or PyTorch (`tensorflow_bridge`): converted
    and verified in a TensorFlow child process, then verified here against
    `classifier` itself on the same inputs (the report's agreement and
    differences are with it)."""
    from keras_spiking_tf.edge_export import tensorflow_bridge

    model = in_float32(classifier)
    if verification_inputs is not None:  # before anything is written, as on TensorFlow
        model.check_images(verification_inputs)
    with tensorflow_bridge.reserved(path, format) as (path, staging):
        report, returned = tensorflow_bridge.run(
            "export_step_model", classifier,
            {"verification_inputs": verification_inputs, "labels": labels,
             "representative_inputs": representative_inputs},
            {"path": path, "format": format, "min_top1_agreement": min_top1_agreement,
             "seed": seed, "batch_size": batch_size, "staging": staging,
             "quantization": quantization},
        )
        verification_inputs = returned["verification_inputs"]
        batch_size = report["batch_size"]
        report.update(_verify_step_file(
            model, staging, verification_inputs, labels, batch_size,
            _keras_step_outputs(model, verification_inputs, batch_size),
        ))
        _check_step_agreement(report, min_top1_agreement, path)
        move_into_place(staging, path, format)
    return report


def export_step_model_in_child(classifier, arrays, options):
    """`tensorflow_bridge`'s `"export_step_model"` job, in the TensorFlow child."""
    report, verification_inputs = _export_step_model_here(
        classifier, verification_inputs=arrays.get("verification_inputs"),
        labels=arrays.get("labels"), representative_inputs=arrays.get("representative_inputs"),
        **options,
    )
    return report, {"verification_inputs": np.asarray(verification_inputs)}
