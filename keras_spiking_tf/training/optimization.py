"""Optimizer, schedule and loss of a recipe (design.md §6)."""

import keras

from keras_spiking_tf.training.distillation import HardDistillationLoss
from keras_spiking_tf.training.schedules import WarmupCosineSchedule


def make_optimizer(recipe, model, steps_per_epoch, dtype_policy="float32"):
    """AdamW or LAMB with the recipe's schedule; no decay on < 2-D weights.

    Biases and BatchNorm scales/offsets (all 1-D) are excluded from weight
    decay, as SDT's optimizer factory does. Under `mixed_float16` the
    optimizer is wrapped in a `LossScaleOptimizer`.
    """
    schedule = WarmupCosineSchedule(
        base_lr=recipe.learning_rate,
        warmup_lr=recipe.warmup_learning_rate,
        min_lr=recipe.min_learning_rate,
        warmup_epochs=recipe.warmup_epochs,
        epochs=recipe.epochs,
        steps_per_epoch=steps_per_epoch,
        unit=recipe.schedule_unit,
    )
    optimizer_class = {"adamw": keras.optimizers.AdamW, "lamb": keras.optimizers.Lamb}[
        recipe.optimizer
    ]
    optimizer = optimizer_class(
        learning_rate=schedule,
        weight_decay=recipe.weight_decay,
        epsilon=recipe.optimizer_epsilon,
        clipnorm=recipe.clipnorm,
    )
    optimizer.exclude_from_weight_decay(
        var_list=[v for v in model.trainable_variables if len(v.shape) < 2]
    )
    if dtype_policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_loss(recipe, reduction="sum_over_batch_size", distillation=False):
    """The recipe's loss on logits and one-hot (possibly mixed) labels:
    cross-entropy on the classifier's output, `TETLoss` on the per-step
    logits (`recipe.loss == "tet"`), or, with `distillation` (a classifier
    with a distillation head), `HardDistillationLoss` on both heads' logits
    (`distillation.py`).

    Raises:
        ValueError: `distillation` with a recipe whose loss is not
            `"cross_entropy"` (TET has no distillation form).
    """
    if distillation:
        if recipe.loss != "cross_entropy":
            raise ValueError(
                f"A classifier with a distillation head (kd=True) trains with the hard-"
                f"distillation loss, which has no {recipe.loss!r} form; use a recipe with "
                "\"loss\": \"cross_entropy\" (e.g. meta_spikeformer_finetune), or a preset "
                "without the distillation head."
            )
        return HardDistillationLoss(recipe.label_smoothing, reduction=reduction)
    if recipe.loss == "tet":
        return TETLoss(recipe.tet_lambda, recipe.tet_phi, recipe.label_smoothing, reduction=reduction)
    return keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=recipe.label_smoothing, reduction=reduction
    )


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class TETLoss(keras.losses.Loss):
    """The TET loss (Deng et al., ICLR 2022; design.md §9) on per-step logits.

        loss = (1 - lambda) mean_t CE(logits_t, y) + lambda mean((logits - phi)^2)

    `y_pred` is `(batch, T, classes)` (`per_step_logits_model()` of the
    classifier), `y_true` one-hot `(batch, classes)`.

    Args:
        tet_lambda: the MSE term's weight (SDT: 0.001).
        tet_phi: the MSE target (SDT: 1.0).
        label_smoothing: of the cross-entropy term.

    Example:

    ```python
    loss = TETLoss()(labels, step_logits)
    ```
    """

    def __init__(self, tet_lambda=0.001, tet_phi=1.0, label_smoothing=0.0,
                 reduction="sum_over_batch_size", name="tet"):
        super().__init__(reduction=reduction, name=name)
        self.tet_lambda = float(tet_lambda)
        self.tet_phi = float(tet_phi)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        steps = y_pred.shape[1]
        y_pred = keras.ops.cast(y_pred, "float32")
        labels = keras.ops.repeat(keras.ops.expand_dims(keras.ops.cast(y_true, "float32"), 1), steps, axis=1)
        cross_entropy = keras.losses.categorical_crossentropy(
            labels, y_pred, from_logits=True, label_smoothing=self.label_smoothing
        )  # (batch, T)
        squared = keras.ops.mean(keras.ops.square(y_pred - self.tet_phi), axis=(1, 2))
        return (1 - self.tet_lambda) * keras.ops.mean(cross_entropy, axis=1) + self.tet_lambda * squared

    def get_config(self):
        return {**super().get_config(), "tet_lambda": self.tet_lambda, "tet_phi": self.tet_phi,
                "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class MeanOverTimeAccuracy(keras.metrics.CategoricalAccuracy):
    """Categorical accuracy of the mean over T of per-step logits `(batch,
    T, classes)`: the classifier's own prediction, while training on TET."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, keras.ops.mean(y_pred, axis=1), sample_weight)
