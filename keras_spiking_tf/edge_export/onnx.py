"""ONNX (`.onnx`): conversion (Keras' `model.export(format="onnx")`, i.e.
tf2onnx), the ONNX Runtime runner, the operators."""

import numpy as np

from keras_spiking_tf.edge_export.export_utils import cast_images
from keras_spiking_tf.edge_export.export_utils import quiet


def convert(graph_model, input_spec, path, **unused):
    """Writes `graph_model` as an ONNX file at `path`."""
    quiet(graph_model.export, path, format="onnx", verbose=False, input_signature=[input_spec])


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
        import onnxruntime

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
    import onnx

    model = onnx.load(path, load_external_data=False)
    return sorted({node.op_type for node in model.graph.node})
