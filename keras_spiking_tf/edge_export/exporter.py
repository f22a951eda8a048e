"""Edge export of Spiking Transformer classifiers: LiteRT, ONNX, SavedModel.

The LIF time loop is unrolled at trace time (`layers/lif.py`), so every
format holds the whole T-step network in one graph with a dynamic batch
axis and no while-loop.

Paths used (no hand-written graph code):

- LiteRT: `keras.export.ExportArchive` -> SavedModel ->
  `tf.lite.TFLiteConverter.from_saved_model`, the path of Keras'
  `model.export(format="litert")`, but with `TFLITE_BUILTINS` only: an
  operator without a builtin kernel is a conversion error, never a silent
  Flex (`SELECT_TF_OPS`) fallback (Keras' exporter allows Flex).
- ONNX: Keras' `model.export(format="onnx")` (tf2onnx).
- SavedModel: Keras' `model.export(format="tf_saved_model")`.

Quantization (LiteRT only):

- `None`: float32 weights and arithmetic.
- `"float16"`: float16 weights (DEQUANTIZE operators expand them to
  float32), float32 arithmetic. About 2/3 of the float32 file.
- `"dynamic_int8"`: int8 weights; convolution and dense inputs are quantized
  on the fly per call, everything else float32. No data needed.
- `"int8"`: int8 weights (per channel) and int8 activations, calibrated on
  `representative_images`, for every convolution, dense layer and attention
  matmul; the neuron dynamics stay float32 (below).

`"int8"` is not "every operator in int8", and cannot be for these networks
(measured with TF 2.21 / LiteRT 2.3):

- A LIF neuron's membrane starts at `zeros_like(x)`: calibration gives that
  tensor a zero range, and the int8 `ADD` that charges the membrane then has
  a rescale multiplier the runtime rejects: `allocate_tensors()` aborts the
  process (SIGABRT in `QuantizeMultiplierSmallerThanOneExp`).
- The SPS max pools pad with -inf (design.md §3.1): the pad's calibrated range is
  [-3.4e38, max], and the quantizer ties the producing convolution's output
  scale to it, zeroing that feature map (digits accuracy 10%).

So `"int8"` quantizes the synaptic operators (`CONV_2D`, `FULLY_CONNECTED`,
`BATCH_MATMUL`), whose inputs are spikes ({0, 1}, exact in int8), ternary
values or images, and keeps the LIF charge/fire/reset arithmetic, the
membrane shortcuts and the -inf pools in float32 (selective quantization
with `tf.lite.experimental.QuantizationDebugger`). A convolution whose output
feeds a tensor with a non-finite calibrated range (the -inf pad) stays
float32 too. Inputs and outputs are float32 unless `int8_io=True`.

Every export is written atomically: to a temporary file (or directory) in
the destination's directory, verified there, then renamed into place; an
error at any stage leaves nothing behind.
"""

import errno
import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import keras
import numpy as np

from keras_spiking_tf.atomic_directory import replace_directory
from keras_spiking_tf.atomic_directory import staging_name
from keras_spiking_tf.atomic_directory import sweep_stale_staging
from keras_spiking_tf.edge_export.formats import FORMATS
from keras_spiking_tf.edge_export.formats import OUTPUT_KINDS
from keras_spiking_tf.edge_export.formats import QUANTIZATIONS
from keras_spiking_tf.edge_export.runtime import litert_io_types
from keras_spiking_tf.edge_export.runtime import litert_op_counts
from keras_spiking_tf.edge_export.runtime import litert_op_table
from keras_spiking_tf.edge_export.runtime import load_exported
from keras_spiking_tf.edge_export.runtime import onnx_ops

# Operators `quantization="int8"` runs in int8 (see the module docstring).
INT8_OPERATORS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")
# A per-sample output difference above this is not float rounding of the same
# spikes: some spike differs (see tests/test_export.py).
ROUNDING_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """Conversion failed, or the exported file does not run."""


class ExportVerificationError(ExportError):
    """The exported model disagrees with Keras more than allowed."""


def export(
    model,
    path,
    format="litert",
    quantization=None,
    representative_images=None,
    include_preprocessing=False,
    output_kind="logits",
    verify=True,
    verification_images=None,
    labels=None,
    *,
    input_dtype="uint8",
    int8_io=False,
    raw_image_size=None,
    preprocess_images=True,
    num_verification_images=16,
    min_top1_agreement=None,
    batch_size=64,
    seed=0,
):
    """Exports a classifier for edge runtimes, verifies it, returns a report.

    Args:
        model: a `SpikingTransformerImageClassifier` (any single-input Keras
            classifier taking normalised images works).
        path: destination: a `.tflite` file (LiteRT), an `.onnx` file, or a
            SavedModel directory. Its parent directory is created if needed.
        format: `"litert"`, `"onnx"` or `"saved_model"`.
        quantization: `None`, `"float16"`, `"dynamic_int8"` or `"int8"`
            (LiteRT only; see the module docstring for what each does).
        representative_images: calibration images, required for `"int8"`.
        include_preprocessing: bake the model's preprocessor (resize +
            normalisation) into the graph: the file then takes raw 0..255
            images of dtype `input_dtype`.
        output_kind: `"logits"` or `"probabilities"` (softmax in the graph).
        verify: run the written file in its runtime (LiteRT interpreter,
            ONNX Runtime, TensorFlow) on `verification_images` and compare
            with the Keras model before moving it into place.
        verification_images: images to verify on; `None`:
            `num_verification_images` random images.
        labels: integer labels of `verification_images`, for accuracies.
        input_dtype: with `include_preprocessing`, the raw input dtype,
            `"uint8"` or `"float32"` (0..255 either way).
        int8_io: with `quantization="int8"`, also make the file's input and
            output int8 (scale and zero point in the file; `load_exported`
            applies them). The normalised input then lies on an int8 grid.
            Not with `include_preprocessing` (its input is raw uint8 already).
        raw_image_size: with `include_preprocessing`, `(height, width)` of
            the raw input (default: the model's image size); the baked-in
            resize maps it to the model's size.
        preprocess_images: images passed here are raw 0..255 images (what
            `model.predict` takes). When the exported graph takes normalised
            images they are run through `model.preprocessor` first; pass
            `False` if they are already normalised.
        num_verification_images: size of the random verification batch.
        min_top1_agreement: if set, an export whose top-1 agreement with
            Keras is lower raises `ExportVerificationError` and writes nothing.
        batch_size: batch size for verification runs.
        seed: seed of the random verification images.

    Returns:
        A report dict: `format`, `quantization`, `output_kind`,
        `include_preprocessing`, `path`, `file_bytes`, `input` (name, shape,
        dtype), `ops` (LiteRT operator names / ONNX op types; `None` for
        SavedModel), `op_counts` (LiteRT: per operator, counts by output
        dtype), `flex_ops`, `num_samples`, `top1_agreement`,
        `max_abs_logit_diff` (largest |exported - Keras| output; a
        probability difference when `output_kind="probabilities"`),
        `mean_abs_logit_diff`, `num_samples_over_rounding` (samples whose
        largest difference exceeds `ROUNDING_TOLERANCE`), `accuracy_keras`,
        `accuracy_exported`, `accuracy_change` (accuracies in [0, 1], only
        with `labels`), `batch_sizes_checked`, `convert_seconds`,
        `verify_seconds`. Verification fields are `None` when `verify=False`.

    Raises:
        ValueError: unknown format/quantization/output_kind, `"int8"` without
            representative images, a quantization for a non-LiteRT format,
            preprocessing requested for a model without a preprocessor. All
            raised before anything is written.
        OSError: the destination cannot be written (the message names it).
        ExportError: conversion failed (e.g. an operator without a builtin
            LiteRT kernel) or the file does not run in its runtime.
        ExportVerificationError: agreement below `min_top1_agreement`.

    Example:

    ```python
    model = keras_spiking_tf.from_preset("st_2_64_digits")
    report = export(model, "digits.tflite", quantization="int8",
                    representative_images=x_train[:256],
                    verification_images=x_test, labels=y_test)
    report["top1_agreement"], report["accuracy_exported"]
    ```
    """
    _check_arguments(
        model, format, quantization, representative_images, include_preprocessing,
        output_kind, verification_images, labels, input_dtype, int8_io,
    )
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "keras_spiking_tf.edge_export converts through TensorFlow; run with "
            f"KERAS_BACKEND=tensorflow (current backend: {keras.backend.backend()})."
        )
    model = _in_float32(model)
    graph_model, input_spec = _graph_model(
        model, include_preprocessing, output_kind, input_dtype, raw_image_size
    )
    to_inputs = functools.partial(
        _graph_inputs, model, include_preprocessing, preprocess_images, input_spec
    )
    # Image problems surface here, before the (slow) conversion.
    representative = None
    if quantization == "int8":
        representative = to_inputs(representative_images)
    inputs = None
    if verify:
        if verification_images is None:
            verification_images = _random_images(
                model, include_preprocessing, preprocess_images, input_spec,
                num_verification_images, seed,
            )
        inputs = to_inputs(verification_images)
    path, staging = _reserve(path, format)
    try:
        started = time.perf_counter()
        if format == "litert":
            model_bytes = _convert_litert(
                graph_model, input_spec, quantization, representative, batch_size, int8_io
            )
            with open(staging, "wb") as file:
                file.write(model_bytes)
        elif format == "onnx":
            _convert_onnx(graph_model, input_spec, staging)
        else:
            _quiet(graph_model.export, staging, format="tf_saved_model",
                   verbose=False, input_signature=[input_spec])
        convert_seconds = time.perf_counter() - started

        report = {
            "format": format,
            "quantization": quantization,
            "output_kind": output_kind,
            "include_preprocessing": bool(include_preprocessing),
            "int8_io": bool(int8_io),
            "path": path,
            "file_bytes": _size(staging),
            "input": {
                "name": input_spec.name,
                "shape": [None, *input_spec.shape[1:]],
                "dtype": input_spec.dtype.name,
            },
            "output_dtype": "float32",
            "convert_seconds": round(convert_seconds, 2),
        }
        if format == "litert":
            table = litert_op_table(model_bytes)
            report["ops"] = sorted({name for name, _ in table})
            report["op_counts"] = litert_op_counts(model_bytes)
            input_types, output_types = litert_io_types(model_bytes)
            report["input"]["dtype"] = input_types[0]
            report["output_dtype"] = output_types[0]
            report["flex_ops"] = sorted(
                {n for n in report["ops"] if n.startswith("Flex") or not n.isupper()}
            )
            if report["flex_ops"]:
                raise ExportError(
                    f"The LiteRT model contains non-builtin operators "
                    f"{report['flex_ops']}; only builtin operators are allowed."
                )
        elif format == "onnx":
            report["ops"] = onnx_ops(staging)
            report["op_counts"] = None
            report["flex_ops"] = []
        else:
            report["ops"] = report["op_counts"] = None
            report["flex_ops"] = []

        report.update(_empty_verification())
        if verify:
            started = time.perf_counter()
            if format == "litert":
                _probe_litert(staging, inputs[:1])
            report.update(
                _verify(graph_model, staging, format, inputs, labels, batch_size)
            )
            report["verify_seconds"] = round(time.perf_counter() - started, 2)
            if min_top1_agreement is not None and report["top1_agreement"] < min_top1_agreement:
                raise ExportVerificationError(
                    f"Top-1 agreement with Keras {report['top1_agreement']:.4f} is "
                    f"below min_top1_agreement={min_top1_agreement} on "
                    f"{report['num_samples']} images (max |logit diff| "
                    f"{report['max_abs_logit_diff']:.3g}); nothing written to '{path}'."
                )
        _move_into_place(staging, path, format)
    except BaseException:
        _remove(staging)
        raise
    return report


def _check_arguments(model, format, quantization, representative_images,
                     include_preprocessing, output_kind, verification_images, labels,
                     input_dtype, int8_io):
    if format not in FORMATS:
        raise ValueError(f"Unknown format {format!r}; choose one of {list(FORMATS)}.")
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization {quantization!r}; choose one of {list(QUANTIZATIONS)}."
        )
    if quantization not in FORMATS[format].quantizations:
        raise ValueError(
            f"quantization={quantization!r} is implemented for format='litert' "
            f"only; export format={format!r} with quantization=None."
        )
    if quantization == "int8" and (
        representative_images is None or len(representative_images) == 0
    ):
        raise ValueError(
            "quantization='int8' needs representative_images: a few hundred "
            "typical input images to calibrate the int8 ranges (e.g. training "
            "images). Use 'dynamic_int8' to quantize weights only without data."
        )
    if int8_io and (quantization != "int8" or include_preprocessing):
        raise ValueError(
            "int8_io=True needs quantization='int8' and include_preprocessing=False "
            "(a preprocessing graph already takes raw uint8 images)."
        )
    if output_kind not in OUTPUT_KINDS:
        raise ValueError(
            f"Unknown output_kind {output_kind!r}; choose one of {list(OUTPUT_KINDS)}."
        )
    if include_preprocessing and getattr(model, "preprocessor", None) is None:
        raise ValueError(
            "include_preprocessing=True needs a model with a preprocessor "
            "(model.preprocessor is None)."
        )
    if input_dtype not in ("uint8", "float32"):
        raise ValueError(f"input_dtype must be 'uint8' or 'float32', got {input_dtype!r}.")
    if labels is not None:
        if verification_images is None:
            raise ValueError("labels need the verification_images they label.")
        if len(labels) != len(verification_images):
            raise ValueError(
                f"{len(labels)} labels for {len(verification_images)} verification images."
            )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("export supports single-input, single-output models.")


def _computes_in_float32(model):
    return all(
        keras.dtype_policies.get(layer.dtype_policy).compute_dtype == "float32"
        for layer in model._flatten_layers()
    )


def _as_float32_policy(config):
    """`config` with every dtype policy replaced by float32."""
    if isinstance(config, list):
        return [_as_float32_policy(item) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        return {**config, "config": {**config.get("config", {}), "name": "float32"}}
    converted = {key: _as_float32_policy(value) for key, value in config.items()}
    if isinstance(converted.get("dtype"), str) and converted["dtype"].startswith("mixed_"):
        converted["dtype"] = "float32"
    return converted


def _in_float32(model):
    """`model`, or a float32 copy with its weights if it computes in another
    dtype (a model trained under `mixed_bfloat16`): the exported graphs are
    float32 (quantization is the export's own option), and LiteRT has no
    bfloat16 kernels."""
    if _computes_in_float32(model):
        return model
    config = _as_float32_policy(keras.saving.serialize_keras_object(model))
    config.pop("compile_config", None)  # an export needs no optimizer or loss
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def _graph_model(model, include_preprocessing, output_kind, input_dtype, raw_image_size):
    """The Keras model to convert and its input `tf.TensorSpec`."""
    import tensorflow as tf

    image_shape = tuple(model.inputs[0].shape[1:])
    activation = getattr(model, "activation", None)
    if output_kind == "logits" and activation not in (None, "linear"):
        raise ValueError(
            f"The model ends in activation={activation!r}; it has no logits to "
            "export. Use output_kind='probabilities' or a model without activation."
        )
    add_softmax = output_kind == "probabilities" and activation != "softmax"
    if not include_preprocessing and not add_softmax:
        return model, tf.TensorSpec((None, *image_shape), tf.float32, name="images")
    if include_preprocessing:
        height, width = raw_image_size or image_shape[:2]
        shape = (int(height), int(width), image_shape[-1])
        inputs = keras.Input(shape, dtype=input_dtype, name="images")
        images = model.preprocessor.image_converter(keras.ops.cast(inputs, "float32"))
    else:
        shape = image_shape
        inputs = images = keras.Input(shape, dtype="float32", name="images")
    # An explicit training=False: without it, the image converter's Resizing
    # layer (whose `call` defaults to training=True) switches the nested
    # classifier's BatchNorm to batch statistics when an exporter calls the
    # wrapper without a training argument (Keras' ONNX/SavedModel export).
    outputs = model(images, training=False)
    if add_softmax:
        outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(outputs)
    wrapper = keras.Model(inputs, outputs, name=f"{model.name}_export")
    return wrapper, tf.TensorSpec((None, *shape), tf.as_dtype(inputs.dtype), name="images")


def _graph_inputs(model, include_preprocessing, preprocess_images, input_spec, images):
    """User images (raw unless `preprocess_images=False`) -> graph inputs."""
    images = np.asarray(images)
    expected = tuple(input_spec.shape[1:])
    if include_preprocessing:
        from keras_spiking_tf.edge_export.runtime import _cast_images

        inputs = _cast_images(images, input_spec.dtype.as_numpy_dtype)
    elif preprocess_images and getattr(model, "preprocessor", None) is not None:
        inputs = np.asarray(model.preprocessor(images.astype("float32")), dtype="float32")
    else:
        inputs = images.astype("float32")
    if inputs.ndim != 4 or tuple(inputs.shape[1:]) != expected:
        raise ValueError(
            f"Images shaped {images.shape} give graph inputs shaped "
            f"{inputs.shape}; the exported graph takes (batch, "
            f"{', '.join(map(str, expected))})."
        )
    return inputs


def _random_images(model, include_preprocessing, preprocess_images, input_spec, count, seed):
    rng = np.random.default_rng(seed)
    shape = (count, *input_spec.shape[1:])
    if include_preprocessing or (preprocess_images and getattr(model, "preprocessor", None)):
        if not include_preprocessing:
            shape = (count, *model.inputs[0].shape[1:])
        return rng.integers(0, 256, shape).astype("uint8")
    return rng.normal(size=shape).astype("float32")


def _reserve(path, format):
    """Absolute destination and a staging path beside it (created empty)."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    if not FORMATS[format].is_directory and os.path.isdir(path):
        raise IsADirectoryError(
            f"Cannot write the {format} export to '{path}': it is a directory."
        )
    if FORMATS[format].is_directory and os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(
            f"Cannot write the SavedModel to '{path}': a file of that name exists."
        )
    blocker = parent
    while blocker and not os.path.exists(blocker):
        blocker = os.path.dirname(blocker)
    if blocker and not os.path.isdir(blocker):
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"Cannot write the {format} export to '{path}': '{blocker}' is a "
            "file, not a directory",
            path,
        )
    try:
        os.makedirs(parent, exist_ok=True)
        sweep_stale_staging(parent, [".partial"])  # left by an interrupted export
        while True:
            staging = os.path.join(parent, f"{staging_name('.partial')}.{name}{FORMATS[format].suffix}")
            try:
                # Default permissions (0o666/0o777 less the umask), unlike
                # tempfile's private 0o600/0o700: the staging entry becomes
                # the export itself.
                if FORMATS[format].is_directory:
                    os.mkdir(staging)
                else:
                    open(staging, "xb").close()
                return path, staging
            except FileExistsError:
                continue
    except OSError as error:
        raise type(error)(
            error.errno,
            f"Cannot write the {format} export to '{path}': {error.strerror or error}",
            path,
        ) from error


def _move_into_place(staging, path, format):
    if FORMATS[format].is_directory:
        replace_directory(staging, path)
    else:
        os.replace(staging, path)


def _remove(staging):
    if os.path.isdir(staging):
        shutil.rmtree(staging, ignore_errors=True)
    elif os.path.exists(staging):
        os.remove(staging)


def _size(path):
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, f))
            for root, _, files in os.walk(path)
            for f in files
        )
    return os.path.getsize(path)


def _quiet(fn, *args, **kwargs):
    """Calls `fn` with TensorFlow/tf2onnx/absl chatter turned down."""
    loggers = [logging.getLogger(n) for n in ("tf2onnx", "tensorflow", "absl")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _convert_litert(graph_model, input_spec, quantization, representative, batch_size,
                    int8_io=False):
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="keras_spiking_tf_export_") as saved_model_dir:
        # As Keras' LiteRT exporter: ExportArchive -> SavedModel -> converter.
        archive = keras.export.ExportArchive()
        archive.track(graph_model)
        archive.add_endpoint(
            "serve",
            functools.partial(graph_model.__call__, training=False),
            input_signature=[input_spec],
        )
        _quiet(archive.write_out, saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            if quantization is None:
                return _quiet(converter.convert)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantization == "float16":
                converter.target_spec.supported_types = [tf.float16]
                return _quiet(converter.convert)
            if quantization == "dynamic_int8":
                return _quiet(converter.convert)
            return _quiet(_convert_int8, converter, representative, batch_size, int8_io)
        except Exception as error:
            raise ExportError(
                f"LiteRT conversion (quantization={quantization!r}) with builtin "
                f"operators only failed: {error}\nThis exporter never falls back "
                "to Flex (SELECT_TF_OPS) kernels; an operator without a builtin "
                "LiteRT kernel has to be replaced in the model."
            ) from error


def _convert_int8(converter, representative, batch_size, int8_io=False):
    """Selective int8 quantization (module docstring): int8 synapses."""
    import tensorflow as tf

    calibration_batch = max(1, min(batch_size, 16))

    def dataset():
        for start in range(0, len(representative), calibration_batch):
            yield [representative[start : start + calibration_batch]]

    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    from keras_spiking_tf.edge_export.runtime import _builtin_names

    denylisted_ops = sorted(set(_builtin_names().values()) - set(INT8_OPERATORS))
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=denylisted_ops, fully_quantize=int8_io
    )
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=dataset, debug_options=options
    )
    nodes = _unbounded_range_producers(debugger.calibrated_model)
    if nodes:
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_ops=denylisted_ops, denylisted_nodes=nodes, fully_quantize=int8_io
        )
    return debugger.get_nondebug_quantized_model()


def _unbounded_range_producers(calibrated_model):
    """Output tensor names of the operators feeding a tensor whose calibrated
    range is not finite-sized (the -inf pool padding): they stay float."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(bytearray(calibrated_model), 0)
    names = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        producer = {}
        for o in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(o)
            for k in range(operator.OutputsLength()):
                producer[operator.Outputs(k)] = operator
        for o in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(o)
            if not operator.OutputsLength() or not operator.InputsLength():
                continue
            quantization = subgraph.Tensors(operator.Outputs(0)).Quantization()
            if quantization is None or quantization.MinLength() == 0:
                continue
            low = quantization.MinAsNumpy()
            high = quantization.MaxAsNumpy()
            if np.all(np.abs(low) < 1e30) and np.all(np.abs(high) < 1e30):
                continue
            source = producer.get(operator.Inputs(0))
            if source is not None and source.OutputsLength():
                names.append(subgraph.Tensors(source.Outputs(0)).Name().decode())
    return sorted(set(names))


def _convert_onnx(graph_model, input_spec, staging):
    _quiet(graph_model.export, staging, format="onnx", verbose=False,
           input_signature=[input_spec])


_PROBE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1])
detail = interpreter.get_input_details()[0]
sample = np.load(sys.argv[2])
interpreter.resize_tensor_input(detail["index"], list(sample.shape), strict=True)
interpreter.allocate_tensors()
interpreter.set_tensor(detail["index"], sample.astype(detail["dtype"]))
interpreter.invoke()
"""


def _probe_litert(path, sample):
    """Runs the file once in a child process first: a model the LiteRT runtime
    aborts on (SIGABRT in `allocate_tensors`, as all-op int8 SNNs do) becomes
    an `ExportError` instead of killing this process."""
    with tempfile.TemporaryDirectory(prefix="keras_spiking_tf_probe_") as directory:
        sample_path = os.path.join(directory, "sample.npy")
        np.save(sample_path, sample)
        result = subprocess.run(
            [sys.executable, "-c", _PROBE, path, sample_path],
            capture_output=True, text=True, timeout=600,
        )
    if result.returncode != 0:
        how = (
            f"was killed by signal {-result.returncode}"
            if result.returncode < 0
            else f"exited with status {result.returncode}"
        )
        raise ExportError(
            f"The converted LiteRT model does not run: the LiteRT interpreter "
            f"{how} on one sample.\n{result.stderr[-2000:]}"
        )


def _keras_outputs(graph_model, inputs, batch_size):
    outputs = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        outputs.append(keras.ops.convert_to_numpy(graph_model(batch, training=False)))
    return np.concatenate(outputs).astype("float32")


def _empty_verification():
    return {
        "num_samples": None,
        "top1_agreement": None,
        "max_abs_logit_diff": None,
        "mean_abs_logit_diff": None,
        "num_samples_over_rounding": None,
        "accuracy_keras": None,
        "accuracy_exported": None,
        "accuracy_change": None,
        "batch_sizes_checked": None,
        "verify_seconds": None,
    }


def _verify(graph_model, staging, format, inputs, labels, batch_size):
    try:
        runner = load_exported(staging, format=format)
        exported = runner(inputs, batch_size=batch_size)
        single = runner(inputs[:1])
    except Exception as error:
        raise ExportError(
            f"The exported {format} model failed to run in its runtime: {error}"
        ) from error
    reference = _keras_outputs(graph_model, inputs, batch_size)
    if exported.shape != reference.shape:
        raise ExportError(
            f"The exported model returns shape {exported.shape}, Keras {reference.shape}."
        )
    if not np.allclose(single, exported[:1], rtol=0, atol=1e-5):
        raise ExportError(
            "The exported model gives a different result for the same image at "
            "batch size 1 and at batch size "
            f"{min(len(inputs), batch_size)}: its batch axis is not independent."
        )
    difference = np.abs(exported - reference)
    per_sample = difference.max(axis=1)
    report = {
        "num_samples": int(len(inputs)),
        "top1_agreement": float(np.mean(exported.argmax(1) == reference.argmax(1))),
        "max_abs_logit_diff": float(difference.max()),
        "mean_abs_logit_diff": float(difference.mean()),
        "num_samples_over_rounding": int(np.sum(per_sample > ROUNDING_TOLERANCE)),
        "batch_sizes_checked": sorted({1, min(len(inputs), batch_size)}),
    }
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        keras_accuracy = float(np.mean(reference.argmax(1) == labels))
        exported_accuracy = float(np.mean(exported.argmax(1) == labels))
        report.update(
            {
                "accuracy_keras": keras_accuracy,
                "accuracy_exported": exported_accuracy,
                "accuracy_change": exported_accuracy - keras_accuracy,
            }
        )
    else:
        report.update({"accuracy_keras": None, "accuracy_exported": None, "accuracy_change": None})
    return report
