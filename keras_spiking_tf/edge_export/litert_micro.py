"""LiteRT for microcontrollers (`format="litert_micro"`): a batch-1,
static-shape `.tflite` file for TensorFlow Lite for Microcontrollers (TFLM).

TFLM plans every tensor in one fixed arena before the first invoke, so it
needs static shapes: the `litert` file, with its dynamic batch axis, fails
to allocate there (`RESHAPE ... num_input_elements != num_output_elements`).
`convert` converts the same graph as `litert` (`litert._convert`, builtin
operators only) with a fixed input signature of batch 1, so every shape in
the file is static, then checks that every operator is one the TFLM
interpreter registers (`TFLM_OPERATORS`, those of TFLM's Python op
resolver) and that no shape has a dynamic axis.

Quantization: `None` (float32) or `"int8"`, the selective int8 of `litert`
(per-channel int8 weights, activations calibrated on the representative
images, one image per calibration batch), with more operators in int8
(`MICRO_INT8_OPERATORS`): the attention products (`BATCH_MATMUL`; the
XNNPACK reason for keeping them float in `litert` does not apply to TFLM)
and the data-movement operators (`PAD`, `CONCATENATION`, `RESHAPE`,
`TRANSPOSE`, `MAX_POOL_2D`, `SPLIT`: spikes, and the synapses' outputs
split into time steps before they are dequantized for the neurons), which
cuts the arena (st_2_64_digits, measured: 448,064 bytes with `litert`'s
int8 operators -> 366,816) at 99.7 % top-1 agreement with Keras on the digits
test split (`litert`'s set: 99.7 % too). The neuron step (`FLOOR`, `MINIMUM`, `RELU`, the membrane arithmetic)
stays float32 as in `litert`; TFLM runs all of those in float. TFLM has no
hybrid kernels (`"dynamic_int8"`) and no float16 `DEQUANTIZE`
(`"float16"`): both are refused before anything is written.

The file's suffix is `.tflite`, as LiteRT's: `load_exported` and
`format_of_path` take a `.tflite` file to be a `litert` file, so a micro
file is loaded with `load_exported(path, format="litert_micro")` (it runs in
LiteRT too, at batch 1).

Memory: `arena(path)` runs the file once in the TFLM Python interpreter in a
child process (a TFLM arena that is too small can crash the process) and
returns the arena that interpreter used (its `RecordingMicroAllocator`'s
"Arena allocation total": the `arena_size` to give `MicroInterpreter`, the
minimum, measured), split into head (the planned activations) and tail
(persistent: per-operator data, tensor structs). `peak_tensors` names the
tensors that are live when the activations peak (an estimate from the
file's operator order: the sum of the live non-constant tensors, a lower
bound of the head).

The step model (`export_step_model(..., format="litert_micro")`): one frame
per invoke, every membrane in and out as plain float32 tensors
(`convert_step`, `StepRunner`), the step of `optimize_for_inference`'s graph
(its zero-padded SPS pools quantize; the training graph's -inf padding does
not); `quantization="int8"` calibrates on every time step of the
representative inputs with the state Keras reaches there
(`step_calibration`).

Example:

```python
report = export(model, "digits_micro.tflite", format="litert_micro",
                quantization="int8", representative_images=x_train[:512],
                verification_images=x_test, labels=y_test)
report.file_bytes, report.arena_bytes, report.top1_agreement
run = load_exported("digits_micro.tflite", format="litert_micro")
```
"""

import os
import subprocess
import sys

import numpy as np

from keras_spiking_tf.edge_export import litert
from keras_spiking_tf.edge_export.export_utils import ExportError
from keras_spiking_tf.edge_export.export_utils import cast_images
from keras_spiking_tf.optional_dependencies import require

RUNNING = "Running a LiteRT file for microcontrollers (the TFLM interpreter, format='litert_micro')"
QUANTIZATIONS = (None, "int8")
# Operators `quantization="int8"` runs in int8 in a micro file (module docstring).
MICRO_INT8_OPERATORS = litert.INT8_OPERATORS + (
    "BATCH_MATMUL", "PAD", "CONCATENATION", "MAX_POOL_2D", "RESHAPE", "TRANSPOSE", "SPLIT",
)
# The builtin operators the TFLM Python interpreter's op resolver
# (`PythonOpsResolver`, tflite-micro) registers; a file with another one
# fails to allocate on a microcontroller built with the same kernels.
TFLM_OPERATORS = frozenset((
    "ABS", "ADD", "ADD_N", "ARG_MAX", "ARG_MIN", "ASSIGN_VARIABLE", "AVERAGE_POOL_2D",
    "BATCH_MATMUL", "BATCH_TO_SPACE_ND", "BROADCAST_ARGS", "BROADCAST_TO", "CALL_ONCE",
    "CAST", "CEIL", "CONCATENATION", "CONV_2D", "COS", "CUMSUM", "DEPTHWISE_CONV_2D",
    "DEPTH_TO_SPACE", "DEQUANTIZE", "DIV", "DYNAMIC_UPDATE_SLICE", "ELU",
    "EMBEDDING_LOOKUP", "EQUAL", "EXP", "EXPAND_DIMS", "FILL", "FLOOR", "FLOOR_DIV",
    "FLOOR_MOD", "FULLY_CONNECTED", "GATHER", "GATHER_ND", "GREATER", "GREATER_EQUAL",
    "HARD_SWISH", "IF", "L2_NORMALIZATION", "L2_POOL_2D", "LEAKY_RELU", "LESS",
    "LESS_EQUAL", "LOG", "LOGICAL_AND", "LOGICAL_NOT", "LOGICAL_OR", "LOGISTIC",
    "LOG_SOFTMAX", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MIRROR_PAD", "MUL",
    "NEG", "NOT_EQUAL", "PACK", "PAD", "PADV2", "PRELU", "QUANTIZE", "READ_VARIABLE",
    "REDUCE_ALL", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "REVERSE_V2", "ROUND", "RSQRT",
    "SELECT_V2", "SHAPE", "SIN", "SLICE", "SOFTMAX", "SPACE_TO_BATCH_ND",
    "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQRT", "SQUARE", "SQUARED_DIFFERENCE",
    "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SVDF", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNPACK", "VAR_HANDLE", "WHILE",
    "ZEROS_LIKE",
))
# The target of docs/guides/edge-export.md ("Microcontrollers (TFLM)").
TARGET_FLASH_BYTES = 2**20
TARGET_RAM_BYTES = 256 * 2**10
# The arena the child process measures with (it reports what it used).
MEASURING_ARENA_BYTES = 64 * 2**20


def check_options(quantization=None, **unused):
    """Refuses what a micro file cannot be (before anything is written)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"format='litert_micro' takes quantization=None (float32) or 'int8'; got "
            f"{quantization!r}: TFLM has no hybrid ('dynamic_int8') kernels and no float16 "
            "DEQUANTIZE ('float16'). Use quantization='int8' for a small file, or "
            "format='litert' for a LiteRT file with that quantization."
        )


def _static(spec):
    import tensorflow as tf

    return tf.TensorSpec((1, *spec.shape[1:]), spec.dtype, name=spec.name)


def convert(graph_model, input_spec, path, quantization=None, representative=None,
            batch_size=64, int8_io=False):
    """Writes `graph_model` at batch 1 with static shapes as a micro file."""
    check_options(quantization)
    model_bytes = litert._convert(
        graph_model, _static(input_spec), quantization, representative, batch_size, int8_io,
        int8_operators=MICRO_INT8_OPERATORS, calibration_batch=1,
    )
    check_file(model_bytes)
    with open(path, "wb") as file:
        file.write(model_bytes)


def check_file(model_bytes):
    """Raises `ExportError` for an operator TFLM does not register or a
    tensor with a dynamic axis."""
    missing = sorted(set(litert.litert_ops(model_bytes)) - TFLM_OPERATORS)
    if missing:
        raise ExportError(
            f"The micro file has operators the TFLM interpreter does not register: {missing}; "
            "they have to be replaced in the model (TFLM's own operator set: "
            "litert_micro.TFLM_OPERATORS)."
        )
    dynamic = dynamic_tensors(model_bytes)
    if dynamic:
        raise ExportError(
            f"The micro file has tensors with a dynamic axis (TFLM needs static shapes): "
            f"{dynamic[:5]}."
        )


def _model(model_bytes):
    return litert._schema().Model.GetRootAs(bytearray(model_bytes), 0)


def dynamic_tensors(model_bytes):
    """Names of the tensors whose shape signature has a -1 (none in a micro file)."""
    model = _model(model_bytes)
    names = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            if tensor.ShapeSignatureLength() and np.any(tensor.ShapeSignatureAsNumpy() < 0):
                names.append(tensor.Name().decode())
    return names


def is_micro_file(path):
    """Whether the `.tflite` file at `path` has the static batch-1 inputs
    of a micro file (a `litert` file's batch axis is dynamic). `False`
    for a file that is not a LiteRT flatbuffer (its runtime says why)."""
    with open(path, "rb") as file:
        model_bytes = file.read()
    schema = litert._schema()  # ImportError: the `export` extra is missing
    try:
        subgraph = schema.Model.GetRootAs(bytearray(model_bytes), 0).Subgraphs(0)
        for i in range(subgraph.InputsLength()):
            tensor = subgraph.Tensors(subgraph.Inputs(i))
            shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else np.zeros(0)
            signature = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else shape
            if not len(shape) or shape[0] != 1 or np.any(signature < 0):
                return False
        return subgraph.InputsLength() > 0
    except Exception:  # not a flatbuffer
        return False


def describe(path):
    """`litert.describe` plus the input's static shape (`input_shape`)."""
    described = litert.describe(path)
    with open(path, "rb") as file:
        model_bytes = file.read()
    subgraph = _model(model_bytes).Subgraphs(0)
    described["input_shape"] = [int(d) for d in subgraph.Tensors(subgraph.Inputs(0)).ShapeAsNumpy()]
    return described


_DTYPE_BYTES = {"float32": 4, "int32": 4, "int8": 1, "uint8": 1, "int16": 2, "int64": 8,
                "bool": 1, "float16": 2, "float64": 8, "uint16": 2, "uint32": 4}


def peak_tensors(model_bytes, top=8):
    """The tensors live where the file's activations peak (an estimate).

    Each non-constant tensor of the main subgraph is live from the operator
    producing it (the start, for an input) to the last one reading it (the
    end, for an output); `peak_bytes` is the largest sum of live tensors
    over the operators, a lower bound of the arena's head that TFLM's
    memory planner reaches or exceeds.

    Returns:
        `{"peak_bytes", "operator": (index, name), "tensors": [{"name",
        "shape", "dtype", "bytes"}, ...]}`: the `top` largest tensors live
        at the peak, largest first.
    """
    model = _model(model_bytes)
    subgraph = model.Subgraphs(0)
    codes = litert.operator_code_names(model)
    schema = litert._schema()
    type_names = {value: name.lower() for name, value in vars(schema.TensorType).items()
                  if not name.startswith("_") and isinstance(value, int)}
    count = subgraph.OperatorsLength()

    def constant(index):
        buffer = model.Buffers(subgraph.Tensors(index).Buffer())
        return buffer is not None and (buffer.DataLength() > 0 or buffer.Size() > 0)

    first, last = {}, {}
    for i in range(subgraph.InputsLength()):
        first[subgraph.Inputs(i)] = 0
    for o in range(count):
        operator = subgraph.Operators(o)
        for k in range(operator.InputsLength()):
            index = operator.Inputs(k)
            if index >= 0 and not constant(index):
                last[index] = o
                first.setdefault(index, 0)
        for k in range(operator.OutputsLength()):
            index = operator.Outputs(k)
            first.setdefault(index, o)
            last[index] = max(last.get(index, o), o)
    for i in range(subgraph.OutputsLength()):
        last[subgraph.Outputs(i)] = max(count - 1, 0)

    def info(index):
        tensor = subgraph.Tensors(index)
        dtype = type_names.get(tensor.Type(), "unknown")
        shape = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
        # A fused tensor is named by all its sources ("a;b;..."): the first.
        return {"name": tensor.Name().decode().split(";")[0], "shape": shape, "dtype": dtype,
                "bytes": int(np.prod(shape, dtype=np.int64)) * _DTYPE_BYTES.get(dtype, 4)}

    infos = {index: info(index) for index in first}
    usage = np.zeros(max(count, 1), np.int64)
    for index, start in first.items():
        usage[start : last.get(index, start) + 1] += infos[index]["bytes"]
    peak = int(usage.argmax())
    live = [infos[i] for i in first if first[i] <= peak <= last.get(i, first[i])]
    live.sort(key=lambda item: -item["bytes"])
    name = codes[subgraph.Operators(peak).OpcodeIndex()] if count else None
    return {"peak_bytes": int(usage[peak]), "operator": [peak, name], "tensors": live[:top]}


_MEASURE = r"""
import sys
import numpy as np
from tflite_micro import runtime
with open(sys.argv[1], "rb") as file:
    data = file.read()
interpreter = runtime.Interpreter.from_bytes(data, arena_size=int(sys.argv[2]))
index = 0
while True:
    try:
        detail = interpreter.get_input_details(index)
    except Exception:
        break
    interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), index)
    index += 1
interpreter.invoke()
interpreter.print_allocations()
"""


def arena(path, arena_size=MEASURING_ARENA_BYTES):
    """The tensor arena the TFLM interpreter needs for the file at `path`:
    runs it once (zero inputs) in a child process and reads what TFLM's
    recording allocator reports.

    Returns:
        `{"arena_bytes", "arena_head_bytes", "arena_tail_bytes"}`:
        `arena_bytes` is the `arena_size` the interpreter needs (head: the
        planned activations, reused between operators; tail: persistent
        per-operator data and tensor structs).

    Raises:
        ExportError: the file does not allocate or run in TFLM (the message
            has TFLM's own words and the tensors live at the activations'
            peak, `peak_tensors`).
    """
    require("tflite_micro", RUNNING)
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, os.fspath(path), str(int(arena_size))],
        capture_output=True, text=True, timeout=600,
    )
    totals = {}
    for line in (result.stdout + result.stderr).splitlines():
        if "Arena allocation" in line:
            key = line.split("Arena allocation", 1)[1].split()[0]
            totals[key] = int(line.split()[-2])
    if result.returncode != 0 or "total" not in totals:
        how = (f"was killed by signal {-result.returncode}" if result.returncode < 0
               else f"exited with status {result.returncode}")
        with open(path, "rb") as file:
            peak = peak_tensors(file.read())
        tensors = "; ".join(
            f"{t['name'][-80:]} {t['shape']} {t['dtype']} {t['bytes']} B" for t in peak["tensors"]
        )
        raise ExportError(
            f"The micro file does not run in the TFLM interpreter (arena of {arena_size} bytes): "
            f"the interpreter {how}.\n{(result.stderr + result.stdout)[-1500:]}\n"
            f"Largest tensors live at the activations' peak ({peak['peak_bytes']} bytes at "
            f"operator {peak['operator']}): {tensors}"
        )
    return {"arena_bytes": totals["total"], "arena_head_bytes": totals.get("head"),
            "arena_tail_bytes": totals.get("tail")}


def memory(path):
    """The report fields of a micro file: `arena(path)`, the tensors live
    at the activations' peak (`arena_peak_tensors`, see `peak_tensors`),
    and whether file and arena fit the 1 MB flash / 256 KB RAM target."""
    fields = arena(path)
    with open(path, "rb") as file:
        peak = peak_tensors(file.read())
    fields["arena_peak_tensors"] = peak["tensors"]
    fields["fits_1mb_flash_256kb_ram"] = bool(
        os.path.getsize(path) <= TARGET_FLASH_BYTES and fields["arena_bytes"] <= TARGET_RAM_BYTES
    )
    return fields


def _interpreter(path):
    """A TFLM interpreter for `path` in this process, with the arena
    measured in a child first (too small an arena can crash a process)."""
    runtime = require("tflite_micro", RUNNING).runtime
    needed = arena(path)["arena_bytes"]
    with open(path, "rb") as file:
        model_bytes = file.read()
    return runtime.Interpreter.from_bytes(model_bytes, arena_size=needed + 4096), model_bytes


def _quantize(values, detail):
    parameters = detail["quantization_parameters"]
    dtype = np.dtype(detail["dtype"])
    if len(parameters["scales"]) and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        quantized = np.round(np.asarray(values, "float32") / parameters["scales"][0]
                             + parameters["zero_points"][0])
        return np.clip(quantized, info.min, info.max).astype(dtype)
    return cast_images(np.asarray(values), dtype)


def _dequantize(values, detail):
    parameters = detail["quantization_parameters"]
    if len(parameters["scales"]) and np.issubdtype(values.dtype, np.integer):
        return (values.astype("float32") - parameters["zero_points"][0]) * parameters["scales"][0]
    return values.astype("float32", copy=False)


class Runner:
    """A micro file in the TFLM Python interpreter: a batch goes through
    one sample per invoke (the file's batch is 1); int8 inputs and outputs
    are quantized and dequantized with the file's parameters. `num_threads`
    is ignored (TFLM runs on one core)."""

    def __init__(self, path, num_threads=None):
        self.interpreter, _ = _interpreter(path)
        self._input = self.interpreter.get_input_details(0)
        self._output = self.interpreter.get_output_details(0)
        self.input_dtype = np.dtype(self._input["dtype"])
        shape = [int(d) for d in self._input["shape"]]
        # The batch axis is the runner's: any batch runs, one sample per invoke.
        self.input_shape = (None, *shape[1:])

    def __call__(self, images):
        outputs = []
        for sample in np.asarray(images):
            self.interpreter.set_input(_quantize(sample[None], self._input), 0)
            self.interpreter.invoke()
            outputs.append(_dequantize(np.array(self.interpreter.get_output(0)), self._output))
        return np.concatenate(outputs).astype("float32", copy=False)


# The step model (streaming.py): one frame per invoke, the state in and out.


def _signature_indices(model_bytes):
    """`(inputs, outputs)`: signature name -> position among the main
    subgraph's inputs (outputs), from the file's signature definition."""
    model = _model(model_bytes)
    subgraph = model.Subgraphs(0)
    input_positions = {subgraph.Inputs(i): i for i in range(subgraph.InputsLength())}
    output_positions = {subgraph.Outputs(i): i for i in range(subgraph.OutputsLength())}
    signature = model.SignatureDefs(0)
    inputs = {signature.Inputs(i).Name().decode(): input_positions[signature.Inputs(i).TensorIndex()]
              for i in range(signature.InputsLength())}
    outputs = {signature.Outputs(i).Name().decode():
               output_positions[signature.Outputs(i).TensorIndex()]
               for i in range(signature.OutputsLength())}
    return inputs, outputs


def step_calibration(step, classifier, inputs, batch_size):
    """The calibration samples of a step model, as a callable returning a
    generator: every time step of every input (what `classifier.predict`
    takes; preprocessed here), each a batch-1 dict `{"frame", "state_0",
    ...}` with the state the Keras `step` reaches there. Stepped
    `batch_size` inputs at a time as the converter asks for them."""
    backbone = classifier.backbone
    frames = backbone.input_type == "frames"
    inputs = np.asarray(inputs, "float32")

    def samples():
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            if not frames and classifier.preprocessor is not None:
                batch = np.asarray(classifier.preprocessor(batch), "float32")
            state = [np.asarray(s) for s in step.initial_state(len(batch))]
            for t in range(backbone.time_steps):
                frame = batch[:, t] if frames else batch
                for b in range(len(batch)):
                    sample = {"frame": frame[b : b + 1]}
                    sample.update({f"state_{i}": s[b : b + 1] for i, s in enumerate(state)})
                    yield sample
                _, _, *state = step([frame, *state])
                state = [np.asarray(s, "float32") for s in state]

    return samples


def convert_step(saved_model_dir, path, quantization=None, representative=None):
    """Writes the step model saved (with a batch-1 signature) in
    `saved_model_dir` as a micro file. `representative`: for `"int8"`, a
    callable returning the calibration samples, each a dict of the
    signature's inputs (`frame`, `state_0`, ...) for one step."""
    import tensorflow as tf

    check_options(quantization)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        if quantization is None:
            model_bytes = litert.quiet(converter.convert)
        else:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            model_bytes = litert.quiet(litert._convert_int8, converter, representative, 1,
                                       False, MICRO_INT8_OPERATORS)
    except Exception as error:
        raise ExportError(f"Conversion of the step model to a micro file failed: {error}") from error
    check_file(model_bytes)
    with open(path, "wb") as file:
        file.write(model_bytes)


class StepRunner:
    """A micro step file in the TFLM interpreter: `runner(frame, state)`
    returns `(logits, step_logits, next_state)` as `streaming.StepRunner`
    does, one sample per invoke; `initial_state(batch_size)` the zeros."""

    format = "litert_micro"

    def __init__(self, path, num_threads=None):
        self.path = os.fspath(path)
        self.interpreter, model_bytes = _interpreter(self.path)
        self._inputs, self._outputs = _signature_indices(model_bytes)
        count = sum(1 for name in self._inputs if name.startswith("state_"))
        self.state_shapes = [
            tuple(int(d) for d in self.interpreter.get_input_details(
                self._inputs[f"state_{i}"])["shape"][1:])
            for i in range(count)
        ]

    def initial_state(self, batch_size):
        return [np.zeros((batch_size, *shape), "float32") for shape in self.state_shapes]

    def _one(self, feeds):
        interpreter = self.interpreter
        for name, value in feeds.items():
            position = self._inputs[name]
            interpreter.set_input(_quantize(value, interpreter.get_input_details(position)),
                                  position)
        interpreter.invoke()
        return {
            name: _dequantize(np.array(interpreter.get_output(position)),
                              interpreter.get_output_details(position))
            for name, position in self._outputs.items()
        }

    def __call__(self, frame, state):
        frame = np.asarray(frame, "float32")
        results = []
        for b in range(len(frame)):
            feeds = {"frame": frame[b : b + 1]}
            feeds.update({f"state_{i}": np.asarray(s, "float32")[b : b + 1]
                          for i, s in enumerate(state)})
            results.append(self._one(feeds))
        outputs = {name: np.concatenate([r[name] for r in results]) for name in results[0]}
        next_state = [outputs[f"next_state_{i}"] for i in range(len(state))]
        return outputs["logits"], outputs["step_logits"], next_state
