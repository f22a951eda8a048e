"""Learning-rate schedule: linear warm-up, cosine decay, cool-down (timm's)."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spiking_tf")
class WarmupCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """timm's `CosineLRScheduler` as a Keras schedule (design.md §6).

    With `t` the epoch (an integer for `unit="epoch"`, fractional
    `step / steps_per_epoch` for `unit="step"`):

        t <  warmup_epochs:  lr = warmup_lr + t (base_lr - warmup_lr) / warmup_epochs
        t <  epochs:         lr = min_lr + (base_lr - min_lr)(1 + cos(pi t / epochs)) / 2
        t >= epochs:         lr = min_lr        (the cool-down epochs)

    As in timm (`warmup_prefix=False`) the cosine is measured from epoch 0.

    Args:
        base_lr: peak learning rate.
        warmup_lr: learning rate at step 0.
        min_lr: floor of the cosine and the cool-down rate.
        warmup_epochs: length of the linear warm-up.
        epochs: length of warm-up plus cosine.
        steps_per_epoch: optimizer steps per epoch.
        unit: `"epoch"` (rate changes at epoch boundaries) or `"step"`.

    Example:

    ```python
    schedule = WarmupCosineSchedule(3e-4, 1e-6, 1e-5, 20, 300, 782)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    ```
    """

    def __init__(
        self, base_lr, warmup_lr, min_lr, warmup_epochs, epochs, steps_per_epoch, unit="epoch"
    ):
        self.base_lr = float(base_lr)
        self.warmup_lr = float(warmup_lr)
        self.min_lr = float(min_lr)
        self.warmup_epochs = float(warmup_epochs)
        self.epochs = float(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.unit = unit

    def __call__(self, step):
        t = ops.cast(step, "float32") / self.steps_per_epoch
        if self.unit == "epoch":
            t = ops.floor(t)
        warmup = self.warmup_lr + t * (self.base_lr - self.warmup_lr) / max(
            self.warmup_epochs, 1e-12
        )
        cosine = self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (
            1.0 + ops.cos(math.pi * t / self.epochs)
        )
        decayed = ops.where(t < self.epochs, cosine, self.min_lr)
        return ops.where(t < self.warmup_epochs, warmup, decayed)

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "warmup_lr": self.warmup_lr,
            "min_lr": self.min_lr,
            "warmup_epochs": self.warmup_epochs,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "unit": self.unit,
        }
