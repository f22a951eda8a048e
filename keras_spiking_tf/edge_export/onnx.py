"""ONNX (`.onnx`): conversion (Keras' `model.export(format="onnx")`, i.e.
tf2onnx, then `fuse_clips`), the ONNX Runtime runner, the operators."""

import collections

import keras
import numpy as np

from keras_spiking_tf.edge_export.export_utils import cast_images
from keras_spiking_tf.edge_export.export_utils import quiet
from keras_spiking_tf.optional_dependencies import require

EXPORTING = "ONNX export (format='onnx')"
RUNNING = "Running an ONNX file (ONNX Runtime)"


def convert(graph_model, input_spec, path, **unused):
    """Writes `graph_model` as an ONNX file at `path`."""
    require("tf2onnx", EXPORTING)  # what Keras' ONNX export converts with
    onnx = require("onnx", EXPORTING)
    # Keras' own exporter, not the classifier's `export` override (which calls `export`).
    quiet(keras.Model.export, graph_model, path, format="onnx", verbose=False,
          input_signature=[input_spec])

    model = onnx.load(path)
    if fuse_clips(model.graph):
        onnx.save(model, path)


def fuse_clips(graph):
    """Rewrites each `Min(Max(x, lo), hi)` or `Max(Min(x, hi), lo)` with
    scalar constants `lo <= hi`
    (what `keras.ops.clip` becomes through tf2onnx, e.g. the neurons' spike
    step) as one `Clip(x, lo, hi)`: the same values, one pass over memory
    instead of two in ONNX Runtime. Returns the number of rewrites."""
    helper = require("onnx.helper", EXPORTING)
    numpy_helper = require("onnx.numpy_helper", EXPORTING)

    scalars = {
        tensor.name: numpy_helper.to_array(tensor)
        for tensor in graph.initializer
        if len(tensor.dims) == 0 or (len(tensor.dims) == 1 and tensor.dims[0] == 1)
    }
    consumers = collections.Counter(name for node in graph.node for name in node.input)
    consumers.update(output.name for output in graph.output)
    producers = {output: node for node in graph.node for output in node.output}

    def split(node):  # (tensor input, scalar value) of a binary Max/Min
        if len(node.input) != 2:
            return None
        for data, constant in (node.input, reversed(node.input)):
            if constant in scalars and data not in scalars:
                return data, scalars[constant]
        return None

    fused = 0
    nodes = []
    dropped = set()
    clip_outputs = set()
    for node in graph.node:
        outer = split(node) if node.op_type in ("Min", "Max") else None
        inner = producers.get(outer[0]) if outer else None
        if (inner is not None and {node.op_type, inner.op_type} == {"Min", "Max"}
                and split(inner) and consumers[inner.output[0]] == 1
                and inner.output[0] not in clip_outputs):
            x, inner_bound = split(inner)
            outer_bound = outer[1]
            low, high = ((inner_bound, outer_bound) if inner.op_type == "Max"
                         else (outer_bound, inner_bound))
            if low.dtype == high.dtype and float(low) <= float(high):
                names = [f"{node.output[0]}__clip_{bound}" for bound in ("min", "max")]
                for name, value in zip(names, (low, high)):
                    graph.initializer.append(numpy_helper.from_array(value.reshape(()), name))
                nodes.append(helper.make_node(
                    "Clip", [x, *names], list(node.output), name=f"{node.name}__clip"))
                dropped.add(inner.output[0])
                clip_outputs.add(node.output[0])
                fused += 1
                continue
        nodes.append(node)
    if fused:
        kept = [node for node in nodes if node.output[0] not in dropped]
        del graph.node[:]
        graph.node.extend(kept)
        used = {name for node in kept for name in node.input}
        unused = [tensor for tensor in graph.initializer if tensor.name not in used]
        for tensor in unused:
            graph.initializer.remove(tensor)
    return fused


def describe(path):
    """The file's operator types (`ops`) and input/output dtypes."""
    return {"ops": onnx_ops(path), "op_counts": None, "flex_ops": [],
            "input_dtype": None, "output_dtype": "float32"}


_ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}


class Runner:
    """An ONNX Runtime session on the CPU with every graph optimisation
    (ORT's fusions and layout transforms, `ORT_ENABLE_ALL`); `num_threads`
    intra-op threads, one inter-op thread (the graph is one chain).
    `profile_prefix` turns on ORT's profiler (see `profile.py`)."""

    def __init__(self, path, num_threads, profile_prefix=None):
        onnxruntime = require("onnxruntime", RUNNING)

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
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
        feed = {self._input_name: np.ascontiguousarray(cast_images(images, self.input_dtype))}
        return self.session.run(None, feed)[0].astype("float32", copy=False)


def onnx_ops(path):
    """Sorted unique operator types of an ONNX file."""
    onnx = require("onnx", "Reading an ONNX file's operators")

    model = onnx.load(path, load_external_data=False)
    return sorted({node.op_type for node in model.graph.node})
