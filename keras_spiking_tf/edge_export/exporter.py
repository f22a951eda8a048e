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
  `representative_images`, for every convolution and dense layer; the
  attention products and the neuron dynamics stay float32 (below).

`"int8"` is not "every operator in int8" (measured with TF 2.21 / LiteRT 2.3):

- The neuron step (`floor`, `clip`, the membrane charge and reset) has no
  int8 form that keeps its spikes: `FLOOR` has no int8 kernel, and an int8
  membrane moves every tie with the threshold. It stays float32, with a
  QUANTIZE before each int8 synapse and a DEQUANTIZE after it.
- The attention products (`BATCH_MATMUL` of two activations) stay float32:
  XNNPACK, LiteRT's CPU delegate, takes them only in float, and in int8 they
  ran on the reference kernels, 1.5x slower for the whole network.
- In the training graph (`optimize_graph=False`) a LIF membrane starts at
  `zeros_like(x)`, whose calibrated range is zero (the int8 `ADD` charging it
  then aborts `allocate_tensors()`), and the SPS pools pad with -inf, whose
  range ties the producing convolution's scale to -3.4e38. The inference
  graph has neither; for the training graph the neurons stay float and a
  convolution whose output feeds a non-finite range stays float32 too.

So `"int8"` quantizes the synaptic operators (`CONV_2D`, `FULLY_CONNECTED`),
whose inputs are spikes ({0, 1}, exact in int8), ternary values or images
(selective quantization with `tf.lite.experimental.QuantizationDebugger`).
Inputs and outputs are float32 unless `int8_io=True`.

Every export is written atomically: to a temporary file (or directory) in
the destination's directory, verified there, then renamed into place; an
error at any stage leaves nothing behind.

On JAX and PyTorch the same export runs in a TensorFlow child process on
the model's config and weights (`tensorflow_bridge.py`), and the file is
verified again here against the model as given (`_export_through_tensorflow`).
"""
import dataclasses
import functools
import os
import time

import keras
import numpy as np

from keras_spiking_tf import validation
from keras_spiking_tf.edge_export import export_utils
from keras_spiking_tf.edge_export.export_utils import ExportError
from keras_spiking_tf.edge_export.export_utils import ExportVerificationError
from keras_spiking_tf.edge_export.formats import FORMATS
from keras_spiking_tf.edge_export.formats import OUTPUT_KINDS
from keras_spiking_tf.edge_export.formats import QUANTIZATIONS
from keras_spiking_tf.edge_export.formats import format_module
from keras_spiking_tf.edge_export.report import ExportReport
from keras_spiking_tf.edge_export.verification import verify as verify_against_keras
from keras_spiking_tf.inference_graph import optimize_for_inference
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.optional_dependencies import require


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
    optimize_graph=True,
    num_verification_images=16,
    min_top1_agreement=None,
    batch_size=None,
    seed=0,
):
    """Exports a classifier for edge runtimes, verifies it, returns a report.

    Args:
        model: a classifier of either family (`SpikingTransformerImageClassifier`,
            `MetaSpikeFormerImageClassifier`); any single-input Keras
            classifier taking normalised images works.
        path: destination: a `.tflite` file (LiteRT), an `.onnx` file, or a
            SavedModel directory. Its parent directory is created if needed.
        format: `"litert"`, `"onnx"`, `"saved_model"` or `"litert_micro"`
            (a batch-1, static-shape `.tflite` file for TFLM on
            microcontrollers; `litert_micro.py`).
        quantization: `None`, `"float16"`, `"dynamic_int8"` or `"int8"`
            (LiteRT only, `litert_micro`: `None` or `"int8"`; see the module
            docstring for what each does).
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
        optimize_graph: convert the inference graph of
            `keras_spiking_tf.optimize_for_inference` (BatchNorm folded,
            neurons without comparisons, static shapes; see its module for
            which rewrite changes float32 rounding), not the training graph.
            Verification compares with the model as given either way. A
            model without spiking layers is exported as it is.
        num_verification_images: size of the random verification batch.
        min_top1_agreement: if set, an export whose top-1 agreement with
            Keras is lower raises `ExportVerificationError` and writes nothing.
        batch_size: how many images go through a model at once: the image
            preprocessing, the Keras and exported runs of verification and
            int8 calibration (LiteRT calibrates in batches of
            `min(batch_size, 16)`). Results do not depend on it; memory does.
            `None`: the most images whose largest activation stays within
            256 MiB (`export_utils.default_batch_size`: traced at batch 1,
            e.g. `T x H x W x hidden_dim / 8` float32 values for a Spiking
            Transformer), between 1 and 64: 64 for the CIFAR and digits
            presets, 5 for st_8_512_imagenet (224 x 224, T=4). Lower it
            after an out-of-memory error.
        seed: seed of the random verification images.

    Returns:
        An `ExportReport` (also a mapping): `format`, `quantization`, `output_kind`,
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
        `verify_seconds`, `batch_size` (the one used). Verification fields
        are `None` when `verify=False`.

    Raises:
        ValueError: unknown format/quantization/output_kind, `"int8"` without
            representative images, a quantization for a non-LiteRT format,
            preprocessing requested for a model without a preprocessor, a
            `batch_size` that is not `None` or an integer >= 1. All raised
            before anything is written.
        ImportError: the format's optional packages (the `export` extra)
            are not installed; the message has the pip command.
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
    arguments = dict(locals())  # every argument, by name
    _check_arguments(**arguments)
    purpose = f"export(format={format!r})"
    for module_name in FORMATS[format].converter_modules + (
        FORMATS[format].runtime_modules if verify else ()
    ):
        require(module_name, purpose)
    if keras.backend.backend() != "tensorflow":
        return _export_through_tensorflow(**arguments)
    report, _ = _export_here(**arguments)
    return report


def _export_here(model, path, format, quantization, representative_images,
                 include_preprocessing, output_kind, verify, verification_images, labels,
                 *, input_dtype, int8_io, raw_image_size, preprocess_images, optimize_graph,
                 num_verification_images, min_top1_agreement, batch_size, seed, staging=None):
    """`export`'s work on the TensorFlow backend, the arguments checked;
    returns the report and the graph inputs verified on (`None` without
    verification). With `staging` (an entry the caller reserved with
    `export_utils.reserve`) the file is written there and the caller moves
    it into place or removes it."""
    model = export_utils.in_float32(model)
    reference_model, input_spec = _graph_model(
        model, include_preprocessing, output_kind, input_dtype, raw_image_size
    )
    graph_model = reference_model
    # A model without this library's spiking layers has nothing to rewrite.
    optimize_graph = optimize_graph and any(
        isinstance(layer, LIF) for layer in model._flatten_layers()
    )
    if optimize_graph:
        graph_model, _ = _graph_model(
            optimize_for_inference(model), include_preprocessing, output_kind,
            input_dtype, raw_image_size,
        )
    if batch_size is None:
        batch_size = export_utils.default_batch_size(reference_model, input_spec)
    to_inputs = functools.partial(
        _graph_inputs, model, include_preprocessing, preprocess_images, input_spec,
        batch_size=batch_size,
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
    owns_staging = staging is None
    if owns_staging:
        path, staging = export_utils.reserve(path, format)
    else:
        path = os.path.abspath(os.fspath(path))
    module = format_module(format)
    try:
        started = time.perf_counter()
        module.convert(graph_model, input_spec, staging, quantization=quantization,
                       representative=representative, batch_size=batch_size, int8_io=int8_io)
        convert_seconds = time.perf_counter() - started
        described = module.describe(staging)
        if described["flex_ops"]:
            raise ExportError(
                f"The LiteRT model contains non-builtin operators {described['flex_ops']}; "
                "only builtin operators are allowed."
            )
        report = ExportReport(
            format=format,
            quantization=quantization,
            optimize_graph=bool(optimize_graph),
            output_kind=output_kind,
            include_preprocessing=bool(include_preprocessing),
            int8_io=bool(int8_io),
            path=path,
            file_bytes=export_utils.size(staging),
            input={
                "name": input_spec.name,
                "shape": described.get("input_shape") or [None, *input_spec.shape[1:]],
                "dtype": described["input_dtype"] or input_spec.dtype.name,
            },
            output_dtype=described["output_dtype"],
            ops=described["ops"],
            op_counts=described["op_counts"],
            flex_ops=described["flex_ops"],
            convert_seconds=round(convert_seconds, 2),
            batch_size=int(batch_size),
        )
        if verify:
            started = time.perf_counter()
            if format == "litert":
                module.probe(staging, inputs[:1])
            if format == "litert_micro":  # runs it in TFLM in a child first; the arena
                report = dataclasses.replace(report, **module.memory(staging))
            checks = verify_against_keras(
                reference_model, staging, format, inputs, labels, batch_size
            )
            report = dataclasses.replace(
                report, **checks, verify_seconds=round(time.perf_counter() - started, 2)
            )
            _check_agreement(report, min_top1_agreement, path)
        if owns_staging:
            export_utils.move_into_place(staging, path, format)
    except BaseException:
        if owns_staging:
            export_utils.remove(staging)
        raise
    return report, inputs


def _check_agreement(report, min_top1_agreement, path):
    if min_top1_agreement is not None and report.top1_agreement < min_top1_agreement:
        raise ExportVerificationError(
            f"Top-1 agreement with Keras {report.top1_agreement:.4f} is "
            f"below min_top1_agreement={min_top1_agreement} on "
            f"{report.num_samples} images (max |logit diff| "
            f"{report.max_abs_logit_diff:.3g}); nothing written to '{path}'."
        )


ARRAY_ARGUMENTS = ("representative_images", "verification_images", "labels")


def _export_through_tensorflow(model, path, **options):
    """`export` on JAX or PyTorch (`tensorflow_bridge`): the file is
    converted and verified in a TensorFlow child process from the model's
    config and weights, then verified here against `model` itself on the
    same inputs; the report's agreement is with `model`."""
    from keras_spiking_tf.edge_export import tensorflow_bridge

    format = options["format"]
    arrays = {name: options.pop(name) for name in ARRAY_ARGUMENTS}
    if options["verify"]:  # before anything is written, as on TensorFlow
        reference_model, _, _ = _keras_graph_model(
            export_utils.in_float32(model), options["include_preprocessing"],
            options["output_kind"], options["input_dtype"], options["raw_image_size"],
        )
    with tensorflow_bridge.reserved(path, format) as (path, staging):
        result, returned = tensorflow_bridge.run(
            "export", model, arrays, dict(options, path=path, staging=staging)
        )
        report = ExportReport(**result)
        if options["verify"]:
            started = time.perf_counter()
            checks = verify_against_keras(
                _compiled(reference_model), staging, format, returned["inputs"], arrays["labels"],
                report.batch_size,
            )
            report = dataclasses.replace(
                report, **checks,
                verify_seconds=round(report.verify_seconds + time.perf_counter() - started, 2),
            )
            _check_agreement(report, options["min_top1_agreement"], path)
        export_utils.move_into_place(staging, path, format)
    return report


def _compiled(model):
    """`model` as the verification calls it, `model(batch, training=False)`,
    compiled as `predict` compiles it: on JAX with `jax.jit` (op by op, a
    Spiking Transformer's unrolled time steps take 20-30 s to dispatch the
    first time; the jitted call gives the same values as `model.predict`);
    on the other backends `model` itself."""
    if keras.backend.backend() != "jax":
        return model
    import jax

    function = jax.jit(
        lambda trainable, non_trainable, batch: model.stateless_call(
            trainable, non_trainable, batch, training=False
        )[0]
    )
    trainable = [variable.value for variable in model.trainable_variables]
    non_trainable = [variable.value for variable in model.non_trainable_variables]
    return lambda batch, training=False: function(trainable, non_trainable, batch)


def export_in_child(model, arrays, options):
    """`tensorflow_bridge`'s `"export"` job, in the TensorFlow child."""
    options = dict(options)
    if options.get("raw_image_size") is not None:
        options["raw_image_size"] = tuple(options["raw_image_size"])
    report, inputs = _export_here(
        model, **{name: arrays.get(name) for name in ARRAY_ARGUMENTS}, **options
    )
    return dataclasses.asdict(report), ({} if inputs is None else {"inputs": inputs})


MAX_IMAGE_SIDE = 16384  # raw_image_size's largest height or width
MAX_SEED = 2**32 - 1  # NumPy's seeds


def check_classifier(name, model):
    """`model`, which must be a built Keras model with one input and one output."""
    if not isinstance(model, keras.Model):
        raise validation.invalid(
            name, model, "a Keras model (e.g. from keras_spiking_tf.from_preset)", error=TypeError
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise validation.invalid(name, model, "a single-input, single-output model")
    return model


def _optional_images(name, images):
    return validation.check_batch(name, images, allow_none=True)


def _check_arguments(*, model, path, format, quantization, representative_images,
                     include_preprocessing, output_kind, verify, verification_images, labels,
                     input_dtype, int8_io, raw_image_size, preprocess_images, optimize_graph,
                     num_verification_images, min_top1_agreement, batch_size, seed):
    """Every argument of `export`, each alone, then the combinations; raises
    before anything is built or written."""
    check_classifier("model", model)
    validation.check_path_text("path", path)
    validation.check_choice("format", format, FORMATS)
    validation.check_choice("quantization", quantization, QUANTIZATIONS[1:], allow_none=True)
    _optional_images("representative_images", representative_images)
    for name, value in (("include_preprocessing", include_preprocessing), ("verify", verify),
                        ("int8_io", int8_io), ("preprocess_images", preprocess_images),
                        ("optimize_graph", optimize_graph)):
        validation.check_bool(name, value)
    validation.check_choice("output_kind", output_kind, OUTPUT_KINDS)
    _optional_images("verification_images", verification_images)
    _optional_images("labels", labels)
    validation.check_choice("input_dtype", input_dtype, ("uint8", "float32"))
    if raw_image_size is not None:
        validation.check_int_tuple("raw_image_size", raw_image_size, 2, minimum=1,
                                   maximum=MAX_IMAGE_SIDE)
    validation.check_integer("num_verification_images", num_verification_images, minimum=1,
                             maximum=export_utils.MAX_BATCH_SIZE)
    validation.check_number("min_top1_agreement", min_top1_agreement, minimum=0.0, maximum=1.0,
                            allow_none=True)
    export_utils.check_batch_size(batch_size)
    validation.check_integer("seed", seed, minimum=0, maximum=MAX_SEED)
    # Combinations.
    if format == "litert_micro":
        format_module(format).check_options(quantization)
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
    if include_preprocessing and getattr(model, "preprocessor", None) is None:
        raise ValueError(
            "include_preprocessing=True needs a model with a preprocessor "
            "(model.preprocessor is None)."
        )
    if labels is not None:
        if verification_images is None:
            raise ValueError("labels need the verification_images they label.")
        if len(labels) != len(verification_images):
            raise ValueError(
                f"{len(labels)} labels for {len(verification_images)} verification images."
            )


def _graph_model(model, include_preprocessing, output_kind, input_dtype, raw_image_size):
    """The Keras model to convert and its input `tf.TensorSpec`."""
    import tensorflow as tf

    wrapper, shape, dtype = _keras_graph_model(
        model, include_preprocessing, output_kind, input_dtype, raw_image_size
    )
    return wrapper, tf.TensorSpec((None, *shape), tf.as_dtype(dtype), name="images")


def _keras_graph_model(model, include_preprocessing, output_kind, input_dtype, raw_image_size):
    """The Keras model whose outputs the exported graph computes (on any
    backend), its input shape (without the batch axis) and input dtype."""
    image_shape = tuple(model.inputs[0].shape[1:])
    activation = getattr(model, "activation", None)
    if output_kind == "logits" and activation not in (None, "linear"):
        raise ValueError(
            f"The model ends in activation={activation!r}; it has no logits to "
            "export. Use output_kind='probabilities' or a model without activation."
        )
    add_softmax = output_kind == "probabilities" and activation != "softmax"
    if not include_preprocessing and not add_softmax:
        return model, image_shape, "float32"
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
    return wrapper, shape, inputs.dtype


def _graph_inputs(model, include_preprocessing, preprocess_images, input_spec, images,
                  batch_size):
    """User images (raw unless `preprocess_images=False`) -> graph inputs,
    preprocessed `batch_size` images at a time."""
    images = np.asarray(images)
    expected = tuple(input_spec.shape[1:])
    if include_preprocessing:
        inputs = export_utils.cast_images(images, input_spec.dtype.as_numpy_dtype)
    elif preprocess_images and getattr(model, "preprocessor", None) is not None:
        inputs = export_utils.in_batches(
            lambda batch: np.asarray(model.preprocessor(batch.astype("float32")), dtype="float32"),
            images, batch_size,
        )
    else:
        inputs = images.astype("float32")
    if inputs.ndim != len(expected) + 1 or tuple(inputs.shape[1:]) != expected:  # frames: 5-D
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


