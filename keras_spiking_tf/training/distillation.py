"""Training a classifier that has a knowledge-distillation head (SPEC §10,
"Head"): what `fit` trains, its loss and its accuracy.

The official Meta-SpikeFormer fine-tuning trains `head_kd` by DeiT's hard
distillation from a CAFormer-B36 teacher:

    loss = (1 - alpha) CE_ls(head, y) + alpha CE(head_kd, argmax(teacher(x)))

with `alpha = 0.5` (DeiT's default), label smoothing on the first term only.
No teacher is available here, so `kst-train` uses the training labels as
the teacher's: `y_teacher = y`. Both heads then learn the labels, `head_kd`
without label smoothing; this is *not* distillation, and a model trained
so is not the official recipe's (the run description and `docs/guides/
training.md` say so).

`fit` trains `heads_model(classifier)`: the classifier's layers, returning
both heads' logits stacked `(batch, 2, classes)`. Its mean over the heads
axis is the classifier's own output `(head + head_kd) / 2`, so the
accuracy (`MeanOfHeadsAccuracy`), the validation accuracy, model selection
and the saved presets are those of the classifier.
"""

import keras
from keras import ops

# DeiT's default distillation weight (`--distillation_alpha 0.5`).
DISTILLATION_ALPHA = 0.5


def heads_model(classifier):
    """A model sharing `classifier`'s layers and weights that returns the
    logits of its heads stacked, `(batch, 2, classes)`: `head` then
    `head_kd`, each averaged over T (`classifier.head_outputs_model()`).

    Args:
        classifier: a classifier with a distillation head (`kd=True`).

    Example:

    ```python
    model = heads_model(classifier)
    logits, logits_kd = ops.unstack(model(images), axis=1)
    ```
    """
    heads = classifier.head_outputs_model()
    inputs = heads.inputs[0]
    stacked = ops.stack(heads(inputs), axis=1)
    return keras.Model(inputs, stacked, name=f"{classifier.name}_stacked_heads")


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class HardDistillationLoss(keras.losses.Loss):
    """DeiT's hard-distillation loss on the two heads' logits, with the
    training labels standing in for the teacher's:

        loss = (1 - alpha) CE(logits, y; label_smoothing)
               + alpha CE(logits_kd, y_teacher),      y_teacher = y

    `y_pred` is `(batch, 2, classes)` (`heads_model`), `y_true` one-hot (or
    mixed) labels `(batch, classes)`. There is no teacher model in this
    project: `y_teacher` is `y_true` itself, not a teacher's prediction.

    Args:
        label_smoothing: of the first (`head`) term only, as DeiT's.
        alpha: the distillation term's weight (DeiT: 0.5).

    Example:

    ```python
    loss = HardDistillationLoss(label_smoothing=0.1)(labels, stacked_logits)
    ```
    """

    def __init__(self, label_smoothing=0.0, alpha=DISTILLATION_ALPHA,
                 reduction="sum_over_batch_size", name="hard_distillation"):
        super().__init__(reduction=reduction, name=name)
        self.label_smoothing = float(label_smoothing)
        self.alpha = float(alpha)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true, "float32")
        teacher = labels  # no teacher model here: the labels stand in for its predictions
        head = keras.losses.categorical_crossentropy(
            labels, y_pred[:, 0], from_logits=True, label_smoothing=self.label_smoothing)
        head_kd = keras.losses.categorical_crossentropy(teacher, y_pred[:, 1], from_logits=True)
        return (1.0 - self.alpha) * head + self.alpha * head_kd

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing,
                "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class MeanOfHeadsAccuracy(keras.metrics.CategoricalAccuracy):
    """Categorical accuracy of the mean of the heads' logits `(batch, 2,
    classes)`: `(head + head_kd) / 2`, the classifier's own prediction,
    while training on `HardDistillationLoss`.

    Example:

    ```python
    model.compile(loss=HardDistillationLoss(), metrics=[MeanOfHeadsAccuracy()])
    ```
    """

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, ops.mean(y_pred, axis=1), sample_weight)
