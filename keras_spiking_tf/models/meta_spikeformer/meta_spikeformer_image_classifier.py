"""The Meta-SpikeFormer image classifier: backbone + spiking head, with the
optional knowledge-distillation head (SPEC §10, "Head")."""

import keras
from keras import ops
from keras_hub.models import Task

from keras_spiking_tf import validation
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_backbone import (
    MetaSpikeFormerBackbone,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_image_classifier_preprocessor import (  # noqa: E501
    MetaSpikeFormerImageClassifierPreprocessor,
)
from keras_spiking_tf.models.spiking_image_classifier import SpikingImageClassifier


def kd_logits(logits, kd_logits_):
    """The official inference output with the distillation head:
    `(head + head_kd) / 2`, each already averaged over T."""
    return (logits + kd_logits_) / 2.0


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class MetaSpikeFormerImageClassifier(SpikingImageClassifier):
    """Image classifier on a `MetaSpikeFormerBackbone`.

        x = mean over tokens of the last membrane      (batch, T, C3)
        s = LIF(x)                                     spikes over T
        logits = mean over T of (s W + b)              `head`
        with kd: logits_kd = mean over T of (s W_kd + b_kd)     `head_kd`
                 output = (logits + logits_kd) / 2

    The official model returns `(logits, logits_kd)` in training (the
    second trained by distillation); this model always returns the
    inference output, and `head_outputs_model()` gives both.

    Args:
        backbone: a `MetaSpikeFormerBackbone`.
        num_classes: output classes.
        kd: add the distillation head `head_kd`.
        preprocessor: `None` or a `MetaSpikeFormerImageClassifierPreprocessor`.
        activation: `None` (logits) or e.g. `"softmax"`, applied last.
        head_dtype: dtype policy of the head (float32 by default).
        class_names: `None` or one name per class (saved with the model;
            used by `decode_predictions`).

    Presets, saving, predictions on raw images, `fit` and `export` are
    every family's (`SpikingImageClassifier`).

    Example:

    ```python
    model = MetaSpikeFormerImageClassifier.from_preset(
        "sdt_v2_8_512_imagenet", load_weights=False, time_steps=1, kd=False)
    logits = model(np.zeros((1, 224, 224, 3)))   # (1, 1000)
    ```
    """

    backbone_cls = MetaSpikeFormerBackbone
    preprocessor_cls = MetaSpikeFormerImageClassifierPreprocessor

    def __init__(
        self,
        backbone,
        num_classes,
        kd=False,
        preprocessor=None,
        activation=None,
        head_dtype="float32",
        class_names=None,
        **kwargs,
    ):
        self.check_init_arguments(backbone, kwargs, num_classes, kd=kd, preprocessor=preprocessor,
                                  activation=activation, head_dtype=head_dtype,
                                  class_names=class_names)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head_lif = LIF(**backbone.neuron_config, dtype=head_dtype, name="head_lif")

        def head(name):
            return keras.layers.Dense(
                num_classes,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                dtype=head_dtype,
                name=name,
            )

        self.output_dense = head("head")
        self.kd_dense = head("head_kd") if kd else None
        self.output_activation = keras.layers.Activation(
            activation, dtype=head_dtype, name="predictions"
        )

        # === Functional model ===
        inputs = backbone.input
        membrane = backbone(inputs)
        token_mean = ops.mean(ops.cast(membrane, self.head_lif.compute_dtype), axis=2)
        spikes = self.head_lif(token_mean)
        logits = ops.mean(self.output_dense(spikes), axis=1)
        if kd:
            logits = kd_logits(logits, ops.mean(self.kd_dense(spikes), axis=1))
        outputs = self.output_activation(logits)
        Task.__init__(self, inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.kd = kd
        self.activation = activation
        self.head_dtype = head_dtype
        self.class_names = None if class_names is None else [str(c) for c in class_names]

    @classmethod
    def check_task_arguments(cls, num_classes, kd=False, allow_none_classes=False, **arguments):
        """Every family's task arguments (`SpikingImageClassifier`), and
        `kd` (a bool).

        Example:

        ```python
        MetaSpikeFormerImageClassifier.check_task_arguments(1000, kd=True)
        ```
        """
        validation.check_bool("kd", kd)
        super().check_task_arguments(num_classes, allow_none_classes=allow_none_classes,
                                     **arguments)

    def per_step_logits(self):
        """The symbolic per-step logits `(batch, T, num_classes)`: with `kd`,
        `(head + head_kd) / 2` of each step (their mean over T is the
        output before the activation)."""
        if not self.kd:
            return self.output_dense.output
        return kd_logits(self.output_dense.output, self.kd_dense.output)

    def head_outputs_model(self):
        """A model sharing this one's layers that returns the heads' logits
        separately, `[logits, logits_kd]` (each averaged over T), as the
        official model does in training; `[logits]` without `kd`."""
        membrane = self.backbone(self.inputs[0])
        spikes = self.head_lif(ops.mean(ops.cast(membrane, self.head_lif.compute_dtype), axis=2))
        heads = [self.output_dense] + ([self.kd_dense] if self.kd else [])
        outputs = [ops.mean(head(spikes), axis=1) for head in heads]
        return keras.Model(self.inputs[0], outputs, name=f"{self.name}_heads")

    def step_logits(self, frame):
        """The head's logits of one time step: this classifier's forward
        pass with `T = 1`, for `SpikingStepModel` (`models/streaming.py`).

        Every neuron starts from its membrane as `explicit_membranes` gives
        it (zeros outside that context), so inside it this is step `t` of
        the multi-step model. With `kd` it is `(head + head_kd) / 2` of the
        step: the mean over `T` is linear, so the mean of the step logits
        over `T` steps, through `output_activation`, is `call`'s output.

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
        x = self.backbone.one_step_input(frame)  # every stage sees one step
        for stage in self.backbone.stages:
            x = stage(x, training=False)
        _, _, height, width, channels = x.shape
        membrane = ops.reshape(x, (-1, 1, height * width, channels))
        spikes = self.head_lif(ops.mean(ops.cast(membrane, self.head_lif.compute_dtype), axis=2))
        logits = self.output_dense(spikes)
        if self.kd:
            logits = kd_logits(logits, self.kd_dense(spikes))
        return ops.cast(logits[:, 0], "float32")
