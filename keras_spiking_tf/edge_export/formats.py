"""The export formats: the one table of names, file suffixes, options and
the module that implements each.

| format        | file                  | runtime that runs it | quantization             | module |
|---------------|-----------------------|----------------------|--------------------------|--------|
| `litert`      | `.tflite` file        | LiteRT interpreter   | float16, dynamic_int8, int8 | `litert.py` |
| `onnx`        | `.onnx` file          | ONNX Runtime         | none                     | `onnx.py` |
| `saved_model` | directory (`saved_model.pb`) | TensorFlow    | none                     | `saved_model.py` |
| `litert_micro` | `.tflite` file, batch 1, static shapes | TFLM interpreter (microcontrollers) | int8 | `litert_micro.py` |

A `.tflite` path is taken to be `litert` (`format_of_path`): a micro file
is written and loaded with `format="litert_micro"` asked for explicitly.

Each format module has the same small interface, as Keras' own
`keras/src/export/` modules: `convert(graph_model, input_spec, path,
**options)` writes the file, `describe(path)` lists its operators and
input/output dtypes, `Runner(path, num_threads)` runs it on NumPy batches.
"""

import dataclasses
import importlib
import os


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Attributes:
        name: `"litert"`, `"onnx"`, `"saved_model"` or `"litert_micro"`.
        suffix: the file name's suffix (`""` for a directory).
        is_directory: whether an export is a directory.
        quantizations: the `quantization=` values it takes (`None` first).
        module: the module implementing it (`convert`, `describe`, `Runner`).
        converter_modules: optional dependencies (`optional_dependencies.py`)
            that writing and describing the file need.
        runtime_modules: optional dependencies that running it needs.
    """

    name: str
    suffix: str
    is_directory: bool
    quantizations: tuple
    module: str
    converter_modules: tuple = ()
    runtime_modules: tuple = ()


FORMATS = {
    spec.name: spec
    for spec in (
        ExportFormat("litert", ".tflite", False, (None, "float16", "dynamic_int8", "int8"),
                     "keras_spiking_tf.edge_export.litert",
                     converter_modules=("ai_edge_litert",), runtime_modules=("ai_edge_litert",)),
        ExportFormat("onnx", ".onnx", False, (None,), "keras_spiking_tf.edge_export.onnx",
                     converter_modules=("tf2onnx", "onnx"), runtime_modules=("onnxruntime",)),
        ExportFormat("saved_model", "", True, (None,), "keras_spiking_tf.edge_export.saved_model"),
        ExportFormat("litert_micro", ".tflite", False, (None, "int8"),
                     "keras_spiking_tf.edge_export.litert_micro",
                     converter_modules=("ai_edge_litert",), runtime_modules=("tflite_micro",)),
    )
}
QUANTIZATIONS = FORMATS["litert"].quantizations
OUTPUT_KINDS = ("logits", "probabilities")


def format_module(name):
    """The module implementing format `name`."""
    return importlib.import_module(FORMATS[name].module)


def format_of_path(path):
    """The format of an exported file or directory, from its name or layout."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            return "saved_model"
        raise ValueError(
            f"'{path}' is a directory without saved_model.pb; pass a .tflite "
            "file, an .onnx file or a SavedModel directory."
        )
    for spec in FORMATS.values():  # litert before litert_micro: `.tflite` is litert
        if spec.suffix and path.endswith(spec.suffix):
            return spec.name
    raise ValueError(
        f"Cannot tell the format of '{path}' from its name; pass format= one of "
        f"{sorted(FORMATS)}."
    )
