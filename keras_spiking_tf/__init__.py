"""keras-spiking-tf: Spiking Transformers with A2OS2A for Keras 3.

Example:

```python
import keras_spiking_tf
model = keras_spiking_tf.from_preset("st_2_64_digits")
logits = model.predict(images)            # raw 0..255 images, NHWC
```
"""

from keras_spiking_tf.cli.startup import quiet_tensorflow_start

# Importing the layers imports Keras and TensorFlow, whose native start-up
# lines are kept off the console (cli/startup.py; KST_TF_LOGS=1 shows them).
with quiet_tensorflow_start():
    from keras_spiking_tf import layers
    from keras_spiking_tf import models
    from keras_spiking_tf.edge_export import export
    from keras_spiking_tf.edge_export import load_exported
    from keras_spiking_tf.inference_graph import optimize_for_inference
    from keras_spiking_tf.input_checks import InputWarning
    from keras_spiking_tf.input_checks import set_strict_inputs
    from keras_spiking_tf.models.model_family import list_presets
    from keras_spiking_tf.models.preset_files import upload_preset
    from keras_spiking_tf.models.spiking_image_classifier import from_preset
    from keras_spiking_tf.models.spiking_image_classifier import save_to_preset
    from keras_spiking_tf.models.streaming import predict_anytime

__version__ = "0.1.0"
