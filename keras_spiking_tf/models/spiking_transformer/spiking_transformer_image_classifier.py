"""The Spiking Transformer image classifier: backbone + spiking head (design.md §1);
presets, saving, class names and predictions on raw images are every
family's (`SpikingImageClassifier`)."""

import keras
from keras import ops
from keras_hub.models import Task

from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.models.spiking_image_classifier import SpikingImageClassifier
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_backbone import (
    SpikingTransformerBackbone,
)
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_image_classifier_preprocessor import (  # noqa: E501
    SpikingTransformerImageClassifierPreprocessor,
)


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class SpikingTransformerImageClassifier(SpikingImageClassifier):
    """Image classifier on a `SpikingTransformerBackbone`.

    The head follows SDT:

        x = mean over tokens of the last membrane    (batch, T, D)
        s = LIF(x)                                   spikes over T
        logits = mean over T of (s W + b)            (batch, num_classes)

    As in KerasHub, `call` takes preprocessed (normalised) images;
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
        class_names: `None` or one name per class (saved with the model;
            used by `decode_predictions`).

    Example:

    ```python
    classifier = keras_spiking_tf.from_preset("st_2_64_digits")
    classifier.predict(raw_images)                   # (batch, 10) logits
    classifier.decode_predictions(classifier.predict(raw_images), top=2)
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
        class_names=None,
        **kwargs,
    ):
        self.check_init_arguments(backbone, kwargs, num_classes, preprocessor=preprocessor,
                                  activation=activation, head_dtype=head_dtype,
                                  class_names=class_names)
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
        self.class_names = None if class_names is None else [str(c) for c in class_names]

    def step_logits(self, frame):
        """The head's logits of one time step: this classifier's forward
        pass with `T = 1`, for `SpikingStepModel` (`models/streaming.py`).

        Every neuron starts from its membrane as `explicit_membranes` gives
        it (zeros outside that context), so inside it this is step `t` of
        the multi-step model; the mean of the step logits over `T` steps,
        through `output_activation`, is `call`'s output.

        Args:
            frame: one preprocessed input step, `(batch, H, W, C)` (or
                `(batch, C, H, W)` under `channels_first`): frame `t` of a
                frame sequence, or the image itself.

        Returns:
            The step's logits `(batch, num_classes)`, float32, before the
            activation.

        Example:

        ```python
        with explicit_membranes({}) as membranes:
            logits = classifier.step_logits(images)   # step 1 of T
        ```
        """
        backbone = self.backbone
        membrane = backbone.patch_embed(backbone.one_step_input(frame), training=False)
        for block in backbone.blocks:
            membrane = block(membrane, training=False)
        token_mean = ops.mean(ops.cast(membrane, self.head_lif.compute_dtype), axis=2)
        step_logits = self.output_dense(self.head_lif(token_mean))
        return ops.cast(step_logits[:, 0], "float32")
