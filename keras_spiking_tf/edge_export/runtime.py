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

from keras_spiking_tf import input_checks
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
    from keras_spiking_tf import validation
    from keras_spiking_tf.edge_export.export_utils import check_num_threads
    from keras_spiking_tf.edge_export.formats import FORMATS

    path = validation.check_path("path", path)
    validation.check_choice("format", format, FORMATS, allow_none=True)
    check_num_threads("num_threads", num_threads)
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
        input_space: what `__call__` expects, `"raw"` (0..255 pixels) or
            `"normalised"` (floats), read off `input_dtype`, since the file
            does not record whether the preprocessor was baked in: `uint8`
            is only written with `include_preprocessing=True` (raw), `int8`
            only for normalised input (`int8_io=True`). `float32` is the
            default export's normalised input, but also that of
            `include_preprocessing=True, input_dtype="float32"` (raw
            pixels): so for a float32 file only integer batches (raw pixels
            into the default export) are value-checked, unless
            `input_space` is set (`"raw"` or `"normalised"`), which also
            turns on the full checks.
    """

    def __init__(self, path, format, runner):
        self.path = path
        self.format = format
        self._runner = runner
        self.input_dtype = runner.input_dtype
        self.input_shape = runner.input_shape
        self._input_space = None

    @property
    def input_space(self):
        if self._input_space is not None:
            return self._input_space
        return "raw" if np.dtype(self.input_dtype) == np.uint8 else "normalised"

    @input_space.setter
    def input_space(self, value):
        if value not in ("raw", "normalised", None):
            raise ValueError(
                f"input_space must be 'raw' (0..255 pixels), 'normalised' or None "
                f"(read off the input dtype); got {value!r}."
            )
        self._input_space = value

    def __call__(self, images, batch_size=None):
        """Runs the model; `batch_size` splits a large batch into chunks.

        `images` are checked first: a wrong shape is an error (with the
        reshaping that fixes it, when one does: `input_checks.layout_fix`);
        values that do not fit `input_space` (floats in [0, 1] for a raw
        file; integers or raw-looking values for a normalised one) get an
        `InputWarning` (an `InputError` under
        `keras_spiking_tf.set_strict_inputs(True)`).
        """
        images = np.asarray(images)
        expected = tuple(self.input_shape[1:])
        if images.ndim != len(self.input_shape) or any(
            e is not None and e != s for e, s in zip(expected, images.shape[1:])
        ):
            fix = input_checks.layout_fix(images.shape, (None, *expected))
            hint = f" {str(fix)[:1].upper()}{str(fix)[1:]}." if fix is not None else ""
            raise ValueError(
                f"{self.format} model '{self.path}' takes a batch shaped "
                f"(batch, {', '.join(str(e) for e in expected)}), got "
                f"{images.shape}.{hint}"
            )
        self._check_values(images)
        if batch_size is None or len(images) <= batch_size:
            return self._runner(images)
        return np.concatenate(
            [self._runner(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        )

    def _check_values(self, images):
        receiver = f"the {self.format} model '{self.path}'"
        if self.input_space == "raw":
            input_checks.check_raw_pixels(images, receiver + " (uint8 input)" if np.dtype(
                self.input_dtype) == np.uint8 else receiver, "images", stacklevel=3)
            return
        dtype = np.dtype(self.input_dtype).name
        fix = (
            "normalise them as the model's preprocessor does (model.preprocessor(images)), "
            "or export with include_preprocessing=True for a file that takes raw pixels"
        )
        if self._input_space is None and dtype == "float32":
            # Raw float pixels are right for a float32 file with the
            # preprocessor baked in, which the file does not tell apart.
            if images.dtype.kind not in "biu":
                return
            fix += (
                " (a float32 input is taken to be normalised; if this file was exported with "
                "include_preprocessing=True, input_dtype='float32', set "
                "exported.input_space = 'raw')"
            )
        input_checks.check_normalised(images, f"{receiver} ({dtype} input)", "images",
                                      fix=fix, stacklevel=3)

    def __repr__(self):
        return (
            f"ExportedModel(format={self.format!r}, path={self.path!r}, "
            f"input_shape={self.input_shape}, input_dtype={np.dtype(self.input_dtype).name})"
        )


