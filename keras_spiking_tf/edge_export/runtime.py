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

import os

import numpy as np

from keras_spiking_tf.edge_export.formats import format_module
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
    return ExportedModel(path, format, format_module(format).Runner(path, num_threads))


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


