"""Optimizer, schedule and loss of a recipe (design.md §6)."""

import keras

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


def make_loss(recipe, reduction="sum_over_batch_size"):
    """Cross-entropy on logits and one-hot (possibly mixed) labels."""
    return keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=recipe.label_smoothing, reduction=reduction
    )
