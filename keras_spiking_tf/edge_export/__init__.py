"""Edge export (LiteRT, ONNX, SavedModel) with built-in parity verification.

Example:

```python
from keras_spiking_tf.edge_export import export, load_exported

model = keras_spiking_tf.from_preset("st_2_64_digits")
report = export(model, "digits.tflite", include_preprocessing=True)
run = load_exported("digits.tflite")
logits = run(raw_uint8_images)
```
"""

from keras_spiking_tf.edge_export.formats import FORMATS
from keras_spiking_tf.edge_export.formats import ExportFormat
from keras_spiking_tf.edge_export.formats import format_of_path
from keras_spiking_tf.edge_export.exporter import INT8_OPERATORS
from keras_spiking_tf.edge_export.formats import OUTPUT_KINDS
from keras_spiking_tf.edge_export.formats import QUANTIZATIONS
from keras_spiking_tf.edge_export.exporter import ROUNDING_TOLERANCE
from keras_spiking_tf.edge_export.exporter import ExportError
from keras_spiking_tf.edge_export.exporter import ExportVerificationError
from keras_spiking_tf.edge_export.exporter import export
from keras_spiking_tf.edge_export.runtime import ExportedModel
from keras_spiking_tf.edge_export.runtime import litert_io_types
from keras_spiking_tf.edge_export.runtime import litert_op_counts
from keras_spiking_tf.edge_export.runtime import litert_ops
from keras_spiking_tf.edge_export.runtime import load_exported
from keras_spiking_tf.edge_export.streaming import StepRunner
from keras_spiking_tf.edge_export.streaming import export_step_model
from keras_spiking_tf.edge_export.streaming import load_step_model
