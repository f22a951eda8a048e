"""LiteRT (`.tflite`): conversion, quantization, the runtime, the operators.

`convert` follows Keras' own LiteRT export (`keras.export.ExportArchive` ->
SavedModel -> `tf.lite.TFLiteConverter`) but with builtin operators only: an
operator without a builtin kernel is a conversion error, never a silent Flex
(`SELECT_TF_OPS`) fallback. `"int8"` quantizes the synaptic operators
(`INT8_OPERATORS`) selectively (`exporter.py` says why not all).
"""

import collections
import functools
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_spiking_tf.edge_export.export_utils import ExportError
from keras_spiking_tf.edge_export.export_utils import cast_images
from keras_spiking_tf.edge_export.export_utils import quiet
from keras_spiking_tf.optional_dependencies import require

# Operators `quantization="int8"` runs in int8 (see `exporter.py`). Not
# BATCH_MATMUL: XNNPACK does not take an int8 product of two activations, so
# int8 attention products ran on LiteRT's reference kernels (st_2_256_cifar10:
# 3 delegate partitions, batch-1 6.8 ms; float32 products: 1 partition, 4.4 ms).
INT8_OPERATORS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
RUNNING = "Running a LiteRT file (the LiteRT interpreter)"


def convert(graph_model, input_spec, path, quantization=None, representative=None,
            batch_size=64, int8_io=False):
    """Writes `graph_model` as a LiteRT file at `path`."""
    model_bytes = _convert(graph_model, input_spec, quantization, representative, batch_size,
                           int8_io)
    with open(path, "wb") as file:
        file.write(model_bytes)


def _convert(graph_model, input_spec, quantization, representative, batch_size,
                    int8_io=False, int8_operators=None, calibration_batch=None):
    """The LiteRT flatbuffer of `graph_model` (bytes). `int8_operators`: the
    operators `"int8"` quantizes (default `INT8_OPERATORS`);
    `calibration_batch`: images per calibration batch (default
    `min(batch_size, 16)`; 1 for a graph with a static batch of 1)."""
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
        quiet(archive.write_out, saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            if quantization is None:
                return quiet(converter.convert)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantization == "float16":
                converter.target_spec.supported_types = [tf.float16]
                return quiet(converter.convert)
            if quantization == "dynamic_int8":
                return quiet(converter.convert)
            return quiet(_convert_int8, converter, representative,
                         calibration_batch or batch_size, int8_io, int8_operators)
        except Exception as error:
            raise ExportError(
                f"LiteRT conversion (quantization={quantization!r}) with builtin "
                f"operators only failed: {error}\nThis exporter never falls back "
                "to Flex (SELECT_TF_OPS) kernels; an operator without a builtin "
                "LiteRT kernel has to be replaced in the model."
            ) from error


def _convert_int8(converter, representative, batch_size, int8_io=False, int8_operators=None):
    """Selective int8 quantization (module docstring): int8 synapses, or the
    operators `int8_operators`. `representative`: images, or a callable
    returning the calibration samples (each the converter's list of inputs)."""
    import tensorflow as tf

    def dataset():
        if callable(representative):
            return representative()
        return representative_batches(representative, batch_size)

    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    int8_operators = INT8_OPERATORS if int8_operators is None else int8_operators
    denylisted_ops = sorted(set(_builtin_names().values()) - set(int8_operators))
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


def representative_batches(representative, batch_size):
    """The calibration data set: `representative` in order, in batches of
    `min(batch_size, 16)` images, each as the converter's one-input list.
    (Calibration records each tensor's minimum and maximum over all of them,
    so the ranges do not depend on the batching.)"""
    calibration_batch = max(1, min(int(batch_size), 16))
    for start in range(0, len(representative), calibration_batch):
        yield [representative[start : start + calibration_batch]]


def _unbounded_range_producers(calibrated_model):
    """Output tensor names of the operators feeding a tensor whose calibrated
    range is not finite-sized (the -inf pool padding): they stay float."""
    schema = _schema()

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


def probe(path, sample):
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


def describe(path):
    """The file's operators: `ops`, `op_counts` (per operator, by output
    dtype), `flex_ops` (non-builtin ones), and input/output dtypes."""
    with open(path, "rb") as file:
        model_bytes = file.read()
    ops = litert_ops(model_bytes)
    input_types, output_types = litert_io_types(model_bytes)
    return {
        "ops": ops,
        "op_counts": litert_op_counts(model_bytes),
        "flex_ops": sorted({n for n in ops if n.startswith("Flex") or not n.isupper()}),
        "input_dtype": input_types[0],
        "output_dtype": output_types[0],
    }


class Runner:
    def __init__(self, path, num_threads):
        Interpreter = require("ai_edge_litert.interpreter", RUNNING).Interpreter

        self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"'{path}' has {len(inputs)} inputs and {len(outputs)} outputs; "
                "load_exported runs single-input, single-output classifiers."
            )
        self._input_index = inputs[0]["index"]
        self._output_index = outputs[0]["index"]
        self.input_dtype = inputs[0]["dtype"]
        self.input_shape = tuple(
            None if d < 0 else int(d) for d in inputs[0]["shape_signature"]
        )
        self._shape = None

    def __call__(self, images):
        interpreter = self.interpreter
        if self._shape != images.shape:
            interpreter.resize_tensor_input(self._input_index, list(images.shape), strict=True)
            interpreter.allocate_tensors()
            self._shape = images.shape
        detail = interpreter.get_input_details()[0]
        scale, zero_point = detail["quantization"]
        if scale and np.issubdtype(detail["dtype"], np.integer):
            info = np.iinfo(detail["dtype"])
            quantized = np.round(images.astype("float32") / scale + zero_point)
            images = np.clip(quantized, info.min, info.max).astype(detail["dtype"])
        else:
            images = cast_images(images, detail["dtype"])
        interpreter.set_tensor(self._input_index, np.ascontiguousarray(images))
        interpreter.invoke()
        output = interpreter.get_tensor(self._output_index).copy()
        detail = interpreter.get_output_details()[0]
        scale, zero_point = detail["quantization"]
        if scale and np.issubdtype(output.dtype, np.integer):
            output = (output.astype("float32") - zero_point) * scale
        return output.astype("float32", copy=False)


def _schema():
    """LiteRT's flatbuffer schema module (reads operators of a `.tflite`)."""
    return require("ai_edge_litert.schema_py_generated", "Reading a LiteRT file's operators")


def _builtin_names():
    schema = _schema()

    return {
        value: name
        for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_") and isinstance(value, int)
    }


def operator_code_names(model):
    """The operator name of each operator code of a parsed LiteRT `Model`
    (an operator's `OpcodeIndex()` indexes this list). Custom operators
    (Flex delegates included: their custom codes start with "Flex") are
    named by their custom code."""
    schema = _schema()

    names = _builtin_names()
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append((code.CustomCode() or b"CUSTOM").decode())
        else:
            codes.append(names.get(builtin, f"BUILTIN_{builtin}"))
    return codes


def litert_op_table(model_bytes):
    """Operators of a LiteRT flatbuffer: list of `(name, output dtype name)`.

    Custom operators (Flex delegates included: their custom codes start with
    "Flex") are named by their custom code.
    """
    schema = _schema()

    model = schema.Model.GetRootAs(bytearray(model_bytes), 0)
    type_names = {
        value: name.lower()
        for name, value in vars(schema.TensorType).items()
        if not name.startswith("_") and isinstance(value, int)
    }
    codes = operator_code_names(model)
    table = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(o)
            output_type = None
            if operator.OutputsLength():
                tensor = subgraph.Tensors(operator.Outputs(0))
                output_type = type_names.get(tensor.Type())
            table.append((codes[operator.OpcodeIndex()], output_type))
    return table


def litert_io_types(model_bytes):
    """`(input dtype names, output dtype names)` of a LiteRT flatbuffer's
    main subgraph, e.g. `(["float32"], ["float32"])`."""
    schema = _schema()

    model = schema.Model.GetRootAs(bytearray(model_bytes), 0)
    type_names = {
        value: name.lower()
        for name, value in vars(schema.TensorType).items()
        if not name.startswith("_") and isinstance(value, int)
    }
    subgraph = model.Subgraphs(0)
    inputs = [
        type_names[subgraph.Tensors(subgraph.Inputs(i)).Type()]
        for i in range(subgraph.InputsLength())
    ]
    outputs = [
        type_names[subgraph.Tensors(subgraph.Outputs(i)).Type()]
        for i in range(subgraph.OutputsLength())
    ]
    return inputs, outputs


def litert_ops(model_bytes):
    """Sorted unique operator names of a LiteRT flatbuffer."""
    return sorted({name for name, _ in litert_op_table(model_bytes)})


def litert_op_counts(model_bytes):
    """`{op name: {output dtype: count}}` of a LiteRT flatbuffer."""
    counts = collections.defaultdict(collections.Counter)
    for name, dtype in litert_op_table(model_bytes):
        counts[name][dtype] += 1
    return {name: dict(sorted(c.items())) for name, c in sorted(counts.items())}


