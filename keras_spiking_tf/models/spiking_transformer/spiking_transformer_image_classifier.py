"""The Spiking Transformer image classifier: backbone + spiking head (SPEC §1)."""

import keras
import numpy as np
from keras import ops
from keras_hub.models import ImageClassifier
from keras_hub.models import Task

from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_backbone import (
    SpikingTransformerBackbone,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_image_classifier_preprocessor import (  # noqa: E501
    SpikingTransformerImageClassifierPreprocessor,
)


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SpikingTransformerImageClassifier(ImageClassifier):
    """Image classifier on a `SpikingTransformerBackbone`.

    The head follows SDT:

        x = mean over tokens of the last membrane    (batch, T, D)
        s = LIF(x)                                   spikes over T
        logits = mean over T of (s W + b)            (batch, num_classes)

    As in KerasHub, `call` takes preprocessed (normalised, NHWC) images;
    `predict`/`fit` apply the attached `preprocessor` to raw 0..255 images.
    The head runs in `head_dtype` (float32 by default, also under a mixed
    precision policy).

    Args:
        backbone: a `SpikingTransformerBackbone`.
        num_classes: output classes.
        preprocessor: `None` or a
            `SpikingTransformerImageClassifierPreprocessor`.
        activation: `None` (logits) or e.g. `"softmax"`, applied after the
            mean over T.
        head_dtype: dtype policy of the head.

    Example:

    ```python
    classifier = keras_spiking_tf.from_preset("st_2_64_digits")
    classifier.predict(raw_images)                   # (batch, 10) logits
    classifier = keras_spiking_tf.from_preset(
        "st_2_64_digits", num_classes=5)              # fresh head, fine-tune
    classifier.backbone.trainable = False
    classifier.fit(raw_images, labels)
    ```
    """

    backbone_cls = SpikingTransformerBackbone
    preprocessor_cls = SpikingTransformerImageClassifierPreprocessor

    def __init__(
        self,
        backbone,
        num_classes,
        preprocessor=None,
        activation=None,
        head_dtype="float32",
        **kwargs,
    ):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head_lif = LIF(
            **backbone.neuron_config, dtype=head_dtype, name="head_lif"
        )
        self.output_dense = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=head_dtype,
            name="head",
        )
        self.output_activation = keras.layers.Activation(
            activation, dtype=head_dtype, name="predictions"
        )

        # === Functional model ===
        inputs = backbone.input
        membrane = backbone(inputs)
        token_mean = ops.mean(ops.cast(membrane, self.head_lif.compute_dtype), axis=2)
        step_logits = self.output_dense(self.head_lif(token_mean))
        outputs = self.output_activation(ops.mean(step_logits, axis=1))
        Task.__init__(self, inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.activation = activation
        self.head_dtype = head_dtype

    def get_config(self):
        config = Task.get_config(self)
        config.update(
            {
                "num_classes": self.num_classes,
                "activation": self.activation,
                "head_dtype": self.head_dtype,
            }
        )
        return config

    def _layers_without_task_weights(self):
        """What task weight files leave out: the backbone (it has its own
        file) and a compiled model's optimizer (a preset holds the model
        only; training checkpoints keep the optimizer)."""
        skipped = list(self.backbone._flatten_layers())
        if getattr(self, "optimizer", None) is not None:
            skipped.append(self.optimizer)
        return skipped

    def save_task_weights(self, filepath):
        """KerasHub's `save_task_weights`, without the optimizer's state."""
        if not str(filepath).endswith(".weights.h5"):
            raise ValueError(f"The filename must end in `.weights.h5`; got {filepath!r}.")
        keras.saving.save_weights(self, filepath, objects_to_skip=self._layers_without_task_weights())

    def load_task_weights(self, filepath):
        """KerasHub's `load_task_weights`, without the optimizer's state."""
        if not str(filepath).endswith(".weights.h5"):
            raise ValueError(f"The filename must end in `.weights.h5`; got {filepath!r}.")
        keras.saving.load_weights(self, filepath, objects_to_skip=self._layers_without_task_weights())

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`, with array inputs checked first."""
        if isinstance(x, np.ndarray) or ops.is_tensor(x):
            self.check_images(x)
        return super().predict(x, *args, **kwargs)

    def check_images(self, images):
        """Raises a clear error for images this classifier cannot take."""
        shape = tuple(images.shape)
        expected = self.backbone.image_shape
        dtype_kind = getattr(getattr(images, "dtype", None), "kind", None)
        try:
            dtype = keras.backend.standardize_dtype(images.dtype)
        except ValueError:
            dtype = None
        if dtype_kind in ("O", "U", "S", "V") or dtype is None or dtype == "string":
            raise TypeError(
                f"Expected numeric images (uint8 0..255, or floats), got an array of "
                f"dtype {images.dtype}. Decode image files into pixel arrays first, "
                "e.g. np.stack([keras.utils.img_to_array(keras.utils.load_img(p)) "
                "for p in paths])."
            )
        if len(shape) != 4:
            raise ValueError(
                f"Expected a batch of images shaped (batch, H, W, C), got "
                f"shape {shape}. Add a batch axis for a single image: "
                "images[None]."
            )
        if shape[0] == 0:
            raise ValueError(
                f"Got an empty batch of images (shape {shape}); pass at least one image."
            )
        if shape[-1] != expected[-1]:
            raise ValueError(
                f"Expected {expected[-1]}-channel images (channels last), got "
                f"shape {shape}. Convert the images, or transpose NCHW input "
                "with np.transpose(images, (0, 2, 3, 1))."
            )
        if self.preprocessor is None:
            if tuple(shape[1:3]) != tuple(expected[:2]):
                raise ValueError(
                    f"This classifier takes preprocessed {expected} images, "
                    f"got shape {shape}. Resize and normalise them, or attach "
                    "the preset's preprocessor."
                )
            if not keras.backend.is_float_dtype(dtype):
                raise TypeError(
                    f"This classifier has no preprocessor and takes normalised "
                    f"float images, got dtype {dtype}. Normalise raw pixels "
                    "with the preset's preprocessor."
                )
        if keras.backend.is_float_dtype(dtype) and not np.all(
            np.isfinite(ops.convert_to_numpy(images))
        ):
            raise ValueError(
                "The images contain NaN or infinite values; clean the input "
                "(e.g. np.nan_to_num) before predicting."
            )
