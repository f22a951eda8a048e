"""Running exported files: LiteRT, ONNX Runtime and SavedModel.

`load_exported(path)` returns an `ExportedModel`: call it on a NumPy batch
of images (in the exported graph's input space: raw 0..255 images when the
preprocessor was baked in, normalised float images otherwise) and it returns
a NumPy array of logits or probabilities. It resizes the dynamic batch
dimension as needed and applies a full-int8 file's input/output quantization
parameters, so callers always pass and receive real values.

`litert_ops(model_bytes)` lists the operators of a LiteRT flatbuffer (custom
and Flex operators by their custom code), read from the file itself, so the
list is independent of the delegates an interpreter would apply.

Example:

```python
run = load_exported("digits.tflite")
logits = run(images)                 # (batch, classes), float32
```
"""

import collections
import os

import numpy as np

from keras_spiking_tf.edge_export.formats import format_of_path

def load_exported(path, format=None, num_threads=None):
    """A callable running an exported file on NumPy batches.

    Args:
        path: a `.tflite` file, an `.onnx` file or a SavedModel directory.
        format: `"litert"`, `"onnx"` or `"saved_model"`; `None` infers it
            from the path.
        num_threads: CPU threads for LiteRT / ONNX Runtime (`None`: the
            runtime's default).

    Returns:
        An `ExportedModel`; `model(images)` returns a float32 array.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No exported model at '{path}'.")
    format = format or format_of_path(path)
    runners = {"litert": _LiteRTRunner, "onnx": _OnnxRunner, "saved_model": _SavedModelRunner}
    if format not in runners:
        raise ValueError(f"Unknown format {format!r}; use one of {sorted(runners)}.")
    return ExportedModel(path, format, runners[format](path, num_threads))


class ExportedModel:
    """An exported model loaded in its runtime.

    Attributes:
        path, format: what was loaded.
        input_dtype: NumPy dtype the graph takes (`float32` or `uint8`;
            `int8` for a LiteRT file with quantized input, which `__call__`
            quantizes for you).
        input_shape: the input shape, `None` for the dynamic batch axis.
    """

    def __init__(self, path, format, runner):
        self.path = path
        self.format = format
        self._runner = runner
        self.input_dtype = runner.input_dtype
        self.input_shape = runner.input_shape

    def __call__(self, images, batch_size=None):
        """Runs the model; `batch_size` splits a large batch into chunks."""
        images = np.asarray(images)
        expected = tuple(self.input_shape[1:])
        if images.ndim != len(self.input_shape) or any(
            e is not None and e != s for e, s in zip(expected, images.shape[1:])
        ):
            raise ValueError(
                f"{self.format} model '{self.path}' takes a batch shaped "
                f"(batch, {', '.join(str(e) for e in expected)}), got "
                f"{images.shape}."
            )
        if batch_size is None or len(images) <= batch_size:
            return self._runner(images)
        return np.concatenate(
            [self._runner(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        )

    def __repr__(self):
        return (
            f"ExportedModel(format={self.format!r}, path={self.path!r}, "
            f"input_shape={self.input_shape}, input_dtype={np.dtype(self.input_dtype).name})"
        )


def _cast_images(images, dtype):
    """Raw images to an integer input dtype (rounded, clipped) or a float."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(images.dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(images), info.min, info.max).astype(dtype)
    return images.astype(dtype, copy=False)


class _LiteRTRunner:
    def __init__(self, path, num_threads):
        from ai_edge_litert.interpreter import Interpreter

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
            images = _cast_images(images, detail["dtype"])
        interpreter.set_tensor(self._input_index, np.ascontiguousarray(images))
        interpreter.invoke()
        output = interpreter.get_tensor(self._output_index).copy()
        detail = interpreter.get_output_details()[0]
        scale, zero_point = detail["quantization"]
        if scale and np.issubdtype(output.dtype, np.integer):
            output = (output.astype("float32") - zero_point) * scale
        return output.astype("float32", copy=False)


_ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}


class _OnnxRunner:
    def __init__(self, path, num_threads):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(self.session.get_outputs()) != 1:
            raise ValueError(
                f"'{path}' is not a single-input, single-output classifier."
            )
        self._input_name = inputs[0].name
        self.input_dtype = np.dtype(_ONNX_TYPES[inputs[0].type])
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)

    def __call__(self, images):
        feed = {self._input_name: np.ascontiguousarray(_cast_images(images, self.input_dtype))}
        return self.session.run(None, feed)[0].astype("float32", copy=False)


class _SavedModelRunner:
    def __init__(self, path, num_threads):
        import tensorflow as tf

        self._loaded = tf.saved_model.load(path)
        self._serve = self._loaded.signatures["serving_default"]
        (name, spec), = self._serve.structured_input_signature[1].items()
        self._input_name = name
        self.input_dtype = np.dtype(spec.dtype.as_numpy_dtype)
        self.input_shape = tuple(spec.shape.as_list())

    def __call__(self, images):
        outputs = self._serve(**{self._input_name: _cast_images(images, self.input_dtype)})
        (output,) = outputs.values()
        return output.numpy().astype("float32", copy=False)


def _builtin_names():
    from ai_edge_litert import schema_py_generated as schema

    return {
        value: name
        for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_") and isinstance(value, int)
    }


def litert_op_table(model_bytes):
    """Operators of a LiteRT flatbuffer: list of `(name, output dtype name)`.

    Custom operators (Flex delegates included: their custom codes start with
    "Flex") are named by their custom code.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(bytearray(model_bytes), 0)
    names = _builtin_names()
    type_names = {
        value: name.lower()
        for name, value in vars(schema.TensorType).items()
        if not name.startswith("_") and isinstance(value, int)
    }
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append((code.CustomCode() or b"CUSTOM").decode())
        else:
            codes.append(names.get(builtin, f"BUILTIN_{builtin}"))
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
    from ai_edge_litert import schema_py_generated as schema

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


def onnx_ops(path):
    """Sorted unique operator types of an ONNX file."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    return sorted({node.op_type for node in model.graph.node})
