"""The export formats: the one table of names, file suffixes and options.

| format        | file                  | runtime that runs it | quantization             |
|---------------|-----------------------|----------------------|--------------------------|
| `litert`      | `.tflite` file        | LiteRT interpreter   | float16, dynamic_int8, int8 |
| `onnx`        | `.onnx` file          | ONNX Runtime         | none                     |
| `saved_model` | directory (`saved_model.pb`) | TensorFlow    | none                     |
"""

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Attributes:
        name: `"litert"`, `"onnx"` or `"saved_model"`.
        suffix: the file name's suffix (`""` for a directory).
        is_directory: whether an export is a directory.
        quantizations: the `quantization=` values it takes (`None` first).
    """

    name: str
    suffix: str
    is_directory: bool
    quantizations: tuple


FORMATS = {
    spec.name: spec
    for spec in (
        ExportFormat("litert", ".tflite", False, (None, "float16", "dynamic_int8", "int8")),
        ExportFormat("onnx", ".onnx", False, (None,)),
        ExportFormat("saved_model", "", True, (None,)),
    )
}
QUANTIZATIONS = FORMATS["litert"].quantizations
OUTPUT_KINDS = ("logits", "probabilities")


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
    for spec in FORMATS.values():
        if spec.suffix and path.endswith(spec.suffix):
            return spec.name
    raise ValueError(
        f"Cannot tell the format of '{path}' from its name; pass format= one of "
        f"{sorted(FORMATS)}."
    )
