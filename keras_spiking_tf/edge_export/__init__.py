"""Edge export (LiteRT, ONNX, SavedModel) with built-in parity verification.

`export` (`exporter.py`) builds the graph to convert and hands it to the
format's module (`litert.py`, `onnx.py`, `saved_model.py`; the table is
`formats.py`), verifies the written file in its runtime (`verification.py`)
and returns an `ExportReport` (`report.py`); `export_utils.py` holds what
the formats share (errors, the atomic write). `load_exported` (`runtime.py`)
runs a file; `streaming.py` exports one time step with explicit state.

Example:

```python
from keras_spiking_tf.edge_export import export, load_exported

model = keras_spiking_tf.from_preset("st_2_64_digits")
report = export(model, "digits.tflite", include_preprocessing=True)
run = load_exported("digits.tflite")
logits = run(raw_uint8_images)
```
"""

from keras_spiking_tf.edge_export.export_utils import ExportError
from keras_spiking_tf.edge_export.export_utils import ExportVerificationError
from keras_spiking_tf.edge_export.exporter import export
from keras_spiking_tf.edge_export.formats import FORMATS
from keras_spiking_tf.edge_export.formats import OUTPUT_KINDS
from keras_spiking_tf.edge_export.formats import QUANTIZATIONS
from keras_spiking_tf.edge_export.formats import ExportFormat
from keras_spiking_tf.edge_export.formats import format_of_path
from keras_spiking_tf.edge_export.litert import INT8_OPERATORS
from keras_spiking_tf.edge_export.litert import litert_io_types
from keras_spiking_tf.edge_export.litert import litert_op_counts
from keras_spiking_tf.edge_export.litert import litert_ops
from keras_spiking_tf.edge_export.report import ExportReport
from keras_spiking_tf.edge_export.runtime import ExportedModel
from keras_spiking_tf.edge_export.runtime import load_exported
from keras_spiking_tf.edge_export.streaming import StepRunner
from keras_spiking_tf.edge_export.streaming import export_step_model
from keras_spiking_tf.edge_export.streaming import load_step_model
from keras_spiking_tf.edge_export.verification import ROUNDING_TOLERANCE
