"""TensorFlow SavedModel (a directory): conversion (Keras'
`model.export(format="tf_saved_model")`) and the runner."""

import keras
import numpy as np

from keras_spiking_tf.edge_export.export_utils import cast_images
from keras_spiking_tf.edge_export.export_utils import quiet


def convert(graph_model, input_spec, path, **unused):
    """Writes `graph_model` as a SavedModel directory at `path`."""
    # Keras' own exporter, not the classifier's `export` override (which calls `export`).
    quiet(keras.Model.export, graph_model, path, format="tf_saved_model", verbose=False,
          input_signature=[input_spec])


def describe(path):
    return {"ops": None, "op_counts": None, "flex_ops": [], "input_dtype": None,
            "output_dtype": "float32"}


class Runner:
    def __init__(self, path, num_threads):
        import tensorflow as tf

        self._loaded = tf.saved_model.load(path)
        self._serve = self._loaded.signatures["serving_default"]
        (name, spec), = self._serve.structured_input_signature[1].items()
        self._input_name = name
        self.input_dtype = np.dtype(spec.dtype.as_numpy_dtype)
        self.input_shape = tuple(spec.shape.as_list())

    def __call__(self, images):
        outputs = self._serve(**{self._input_name: cast_images(images, self.input_dtype)})
        (output,) = outputs.values()
        return output.numpy().astype("float32", copy=False)


