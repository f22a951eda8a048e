"""Atomic, resumable training checkpoints.

A checkpoint is a directory `ckpt-<global step>/` holding
`model.weights.h5` (model *and* optimizer variables, so the step counter and
the learning-rate schedule resume too) and `state.json` (epoch, step within
the epoch, global step, best accuracy so far). It is written into a hidden
temporary directory and renamed into place, so a run killed mid-save leaves
the previous checkpoint intact and never a half-written one.
"""

import json
import math
import os
import re
import shutil
import tempfile

import keras

from keras_spiking_tf.atomic_directory import replace_directory

CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d{10})$")


class CheckpointDirectory:
    """The checkpoints of one run, newest kept, older pruned.

    Args:
        directory: where checkpoints live (created if missing).
        keep: how many complete checkpoints to keep.
    """

    def __init__(self, directory, keep=2):
        self.directory = directory
        self.keep = keep
        os.makedirs(directory, exist_ok=True)

    def complete_checkpoints(self):
        names = [n for n in os.listdir(self.directory) if CHECKPOINT_PATTERN.match(n)]
        return [os.path.join(self.directory, n) for n in sorted(names)]

    def latest(self):
        checkpoints = self.complete_checkpoints()
        return checkpoints[-1] if checkpoints else None

    def save(self, model, state):
        """Writes `model`'s weights (with optimizer) and `state` atomically."""
        final = os.path.join(self.directory, f"ckpt-{state['global_step']:010d}")
        staging = tempfile.mkdtemp(prefix=".ckpt-", dir=self.directory)
        try:
            model.save_weights(os.path.join(staging, "model.weights.h5"))
            with open(os.path.join(staging, "state.json"), "w", encoding="utf-8") as file:
                json.dump(state, file, indent=2)
            replace_directory(staging, final)  # an epoch end may rewrite its step
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        for old in self.complete_checkpoints()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def restore(self, model):
        """Loads the newest checkpoint into `model`; returns its state or None."""
        path = self.latest()
        if path is None:
            return None
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(path, "model.weights.h5"))
        with open(os.path.join(path, "state.json"), encoding="utf-8") as file:
            return json.load(file)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint every `every_steps` steps and at each epoch end.

    Also stops training with `NonFiniteLossError` at the first non-finite
    loss, naming the step; the last checkpoint (taken at a finite loss) is
    kept for `--resume` after the cause is fixed.

    Args:
        checkpoints: a `CheckpointDirectory`.
        steps_per_epoch: steps in one epoch.
        every_steps: checkpoint period in steps (0: epoch ends only).
        global_step: steps done before this callback starts (on resume).
        best_accuracy: best test accuracy so far (carried in the state).
        write: whether this process writes (the chief, under multi-worker).
    """

    def __init__(
        self, checkpoints, steps_per_epoch, every_steps, global_step=0, best_accuracy=None,
        write=True,
    ):
        super().__init__()
        self.checkpoints = checkpoints
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps
        self.global_step = global_step
        self.best_accuracy = best_accuracy
        self.write = write
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise NonFiniteLossError(
                f"Non-finite loss ({loss}) at global step {self.global_step} "
                f"(epoch {self.epoch}). The last good checkpoint is "
                f"{self.checkpoints.latest()}; lower the learning rate or check "
                "the data, then rerun with --resume."
            )
        if self.every_steps and self.global_step % self.every_steps == 0:
            step_in_epoch = self.global_step - self.epoch * self.steps_per_epoch
            self.save(self.epoch, step_in_epoch)

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_accuracy")
        if accuracy is not None and (self.best_accuracy is None or accuracy > self.best_accuracy):
            self.best_accuracy = float(accuracy)
        self.save(epoch + 1, 0)

    def save(self, epoch, step_in_epoch):
        if self.write:
            self.checkpoints.save(
                self.model,
                {
                    "epoch": epoch,
                    "step_in_epoch": step_in_epoch,
                    "global_step": self.global_step,
                    "best_accuracy": self.best_accuracy,
                },
            )
