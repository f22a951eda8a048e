"""The Meta-SpikeFormer image classifier: backbone + spiking head, with the
optional knowledge-distillation head (SPEC §10, "Head")."""

import inspect
import os

import keras
from keras import ops
from keras_hub.models import ImageClassifier
from keras_hub.models import Task

from keras_spiking_tf import validation
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.models.meta_spikeformer import meta_spikeformer_presets as presets
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_backbone import (
    ARCHITECTURE_KEYS,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_backbone import (
    MetaSpikeFormerBackbone,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_backbone import (
    check_backbone_arguments,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_image_classifier_preprocessor import (  # noqa: E501
    MetaSpikeFormerImageClassifierPreprocessor,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_image_converter import (
    MetaSpikeFormerImageConverter,
)

MAX_CLASSES = 1 << 20


def kd_logits(logits, kd_logits_):
    """The official inference output with the distillation head:
    `(head + head_kd) / 2`, each already averaged over T."""
    return (logits + kd_logits_) / 2.0


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class MetaSpikeFormerImageClassifier(ImageClassifier):
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
        **kwargs,
    ):
        validation.check_keyword_arguments(
            "MetaSpikeFormerImageClassifier", kwargs, ("name", "trainable", "dtype"))
        if not isinstance(backbone, MetaSpikeFormerBackbone):
            raise validation.invalid(
                "backbone", backbone, "a MetaSpikeFormerBackbone", error=TypeError)
        check_classifier_arguments(num_classes, kd, preprocessor, activation, head_dtype)
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

    def head_outputs_model(self):
        """A model sharing this one's layers that returns the heads' logits
        separately, `[logits, logits_kd]` (each averaged over T), as the
        official model does in training; `[logits]` without `kd`."""
        membrane = self.backbone(self.inputs[0])
        spikes = self.head_lif(ops.mean(ops.cast(membrane, self.head_lif.compute_dtype), axis=2))
        heads = [self.output_dense] + ([self.kd_dense] if self.kd else [])
        outputs = [ops.mean(head(spikes), axis=1) for head in heads]
        return keras.Model(self.inputs[0], outputs, name=f"{self.name}_heads")

    def get_config(self):
        config = Task.get_config(self)
        config.update(
            {
                "num_classes": self.num_classes,
                "kd": self.kd,
                "activation": self.activation,
                "head_dtype": self.head_dtype,
            }
        )
        return config

    @classmethod
    def from_preset(cls, preset, load_weights=True, num_classes=None, **kwargs):
        """Builds a classifier from a built-in preset (`PRESETS`), with
        backbone overrides; any other preset (a directory, a hub handle)
        goes to KerasHub's loader.

        Args:
            preset: a built-in name, e.g. `"sdt_v2_8_512_imagenet"`, or a
                saved preset directory or hub handle.
            load_weights: the built-in presets have no published weights
                yet: they need `load_weights=False` (random initialisation).
            num_classes: `None` keeps the preset's 1000 classes.
            **kwargs: `kd` (e.g. `kd=False` drops the distillation head),
                `activation`, `head_dtype`, `dtype`, `name`, and backbone
                arguments to override (`time_steps=1`, `attention`, ...:
                every key of `ARCHITECTURE_KEYS`). Everything is checked
                before anything is built.

        Example:

        ```python
        model = MetaSpikeFormerImageClassifier.from_preset(
            "st_v2_8_384_imagenet", load_weights=False, time_steps=1)
        ```
        """
        validation.check_string("preset", preset)
        validation.check_bool("load_weights", load_weights)
        if preset not in presets.PRESETS:
            if "://" not in preset and not os.path.isdir(os.path.expanduser(preset)):
                raise ValueError(
                    f"Unknown preset {preset!r}: it is no built-in Meta-SpikeFormer preset "
                    "and no directory of that name exists."
                    + validation.suggestion(preset, presets.PRESETS)
                    + f" Built-in presets: {', '.join(sorted(presets.PRESETS))}."
                )
            if num_classes is not None:
                kwargs["num_classes"] = num_classes
            return super().from_preset(preset, load_weights=load_weights, **kwargs)
        task_arguments = [
            name for name in inspect.signature(cls.__init__).parameters
            if name not in ("self", "backbone", "num_classes", "kwargs")
        ]
        validation.check_keyword_arguments(
            "from_preset", kwargs, ("dtype", "name", *task_arguments, *ARCHITECTURE_KEYS))
        overrides = {k: kwargs.pop(k) for k in ARCHITECTURE_KEYS if k in kwargs}
        check_backbone_arguments(**overrides)
        entry = presets.PRESETS[preset]
        dataset = presets.dataset_of(preset)
        num_classes = dataset["num_classes"] if num_classes is None else num_classes
        kd = kwargs.pop("kd", entry["kd"])
        check_classifier_arguments(num_classes, kd, **{
            k: kwargs[k] for k in ("preprocessor", "activation", "head_dtype") if k in kwargs})
        if load_weights and not entry["weights"]:
            raise ValueError(
                f"Preset '{preset}' has no published weights. Build it with random "
                "weights using `load_weights=False`."
            )
        dtype = kwargs.pop("dtype", None)
        backbone = MetaSpikeFormerBackbone(
            **{**presets.backbone_config(preset), **overrides}, dtype=dtype)
        if "preprocessor" not in kwargs:
            height, width = backbone.image_shape[:2]
            kwargs["preprocessor"] = MetaSpikeFormerImageClassifierPreprocessor(
                MetaSpikeFormerImageConverter.from_dataset_stats(
                    (height, width), dataset["mean"], dataset["std"]))
        return cls(backbone, num_classes, kd=kd, dtype=dtype, **kwargs)


def check_classifier_arguments(num_classes, kd=False, preprocessor=None, activation=None,
                               head_dtype="float32"):
    """The classifier's own arguments, before anything is built.

    Example:

    ```python
    check_classifier_arguments(1000, kd=True)
    ```
    """
    validation.check_integer("num_classes", num_classes, minimum=1, maximum=MAX_CLASSES)
    validation.check_bool("kd", kd)
    if preprocessor is not None and not isinstance(
        preprocessor, MetaSpikeFormerImageClassifierPreprocessor
    ):
        raise validation.invalid(
            "preprocessor", preprocessor,
            "a MetaSpikeFormerImageClassifierPreprocessor or None", error=TypeError,
        )
    validation.check_identifier(
        "activation", activation, keras.activations.get,
        "a Keras activation (e.g. 'softmax'), a callable or None",
    )
    validation.check_dtype_policy("head_dtype", head_dtype)
