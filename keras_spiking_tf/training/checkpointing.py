"""Atomic, resumable training checkpoints and the run's record of progress.

A checkpoint is a directory `ckpt-<global step>/` holding
`model.weights.h5` (model *and* optimizer variables, so the step counter and
the learning-rate schedule resume too) and `state.json`: where the run is
(epoch, step within the epoch, global step), the model selection so far
(best validation accuracy, ties broken by the lower validation loss, and
its epoch), the training time of all earlier segments, the running means
of the epoch under way and one row per finished epoch. It is written into a hidden staging directory and renamed into place,
so a run killed mid-save leaves the previous checkpoint intact and never a
half-written one.

`metrics.csv` is rewritten (atomically) from the checkpoint's rows at each
epoch end and when a run resumes, so it always holds exactly one complete
row per finished epoch, also for an epoch that was interrupted and finished
by a resumed run: its training means combine both segments, weighted by the
steps each ran.
"""

import csv
import io
import json
import math
import os
import re
import shutil
import time

import keras

from keras_spiking_tf.atomic_directory import make_staging_directory
from keras_spiking_tf.atomic_directory import replace_directory
from keras_spiking_tf.atomic_directory import sweep_stale_staging
from keras_spiking_tf.atomic_directory import write_text_atomically

CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d{10})$")
# Training metrics averaged over an epoch's steps (the rest of a row is
# validation metrics, which are measured once at the epoch's end).
METRIC_COLUMNS = ("epoch", "steps", "loss", "accuracy", "val_loss", "val_accuracy", "train_seconds")


class CheckpointDirectory:
    """The checkpoints of one run, newest kept, older pruned.

    Args:
        directory: where checkpoints live (created at the first save).
        keep: how many complete checkpoints to keep.
    """

    def __init__(self, directory, keep=2):
        self.directory = directory
        self.keep = keep

    def complete_checkpoints(self):
        if not os.path.isdir(self.directory):
            return []
        names = [n for n in os.listdir(self.directory) if CHECKPOINT_PATTERN.match(n)]
        return [os.path.join(self.directory, n) for n in sorted(names)]

    def latest(self):
        checkpoints = self.complete_checkpoints()
        return checkpoints[-1] if checkpoints else None

    def sweep(self):
        """Removes staging directories of saves that were interrupted."""
        return sweep_stale_staging(self.directory, [".ckpt", ".retired"])

    def save(self, model, state):
        """Writes `model`'s weights (with optimizer) and `state` atomically."""
        final = os.path.join(self.directory, f"ckpt-{state['global_step']:010d}")
        staging = make_staging_directory(self.directory, ".ckpt")
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


def initial_state():
    """The state of a run that has not started."""
    return {
        "epoch": 0,
        "step_in_epoch": 0,
        "global_step": 0,
        "best_val_accuracy": None,
        "best_epoch": None,
        "train_seconds": 0.0,
        "segments": 0,
        "epoch_means": None,
        "history": [],
    }


def combine_means(earlier, later):
    """Step-weighted means of two parts of one epoch: dicts with `steps`
    and metric means (an absent part is `None`)."""
    if not earlier:
        return dict(later)
    total = earlier["steps"] + later["steps"]
    combined = {"steps": total}
    for key in later:
        if key != "steps" and key in earlier:
            combined[key] = (earlier[key] * earlier["steps"] + later[key] * later["steps"]) / total
    return combined


def metrics_csv_text(history):
    """`metrics.csv`'s text: one row per finished epoch."""
    extra = sorted({key for row in history for key in row} - set(METRIC_COLUMNS))
    columns = list(METRIC_COLUMNS) + extra
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({key: row.get(key, "") for key in columns})
    return buffer.getvalue()


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class ResumableCheckpoint(keras.callbacks.Callback):
    """Checkpoints, `metrics.csv`, training time and model selection of a run.

    Saves a checkpoint every `every_steps` steps and at each epoch end; at
    each epoch end it also appends the epoch's row (training means over the
    epoch's steps, validation metrics) to the history, rewrites
    `metrics_path` from it, and, when the epoch is the new selected one (a
    higher validation accuracy, or an equal one at a lower validation loss),
    calls `on_new_best(model, epoch, val_accuracy)` after the checkpoint
    that records it (`epoch` counts from 0, as in `metrics.csv`).
    Stops training with `NonFiniteLossError` at the first non-finite loss,
    naming the step; the last checkpoint (taken at a finite loss) is kept for
    `--resume` after the cause is fixed.

    Args:
        checkpoints: a `CheckpointDirectory`.
        steps_per_epoch: steps in one epoch.
        every_steps: checkpoint period in steps (`None`: epoch ends only).
        state: the state to continue (`initial_state()` or a checkpoint's).
        metrics_path: where `metrics.csv` goes (`None`: not written).
        on_new_best: `f(model, epoch, val_accuracy)` for a new best
            validation accuracy.
        write: whether this process writes (the chief, under multi-worker).
    """

    def __init__(
        self, checkpoints, steps_per_epoch, every_steps=None, state=None, metrics_path=None,
        on_new_best=None, write=True,
    ):
        super().__init__()
        self.checkpoints = checkpoints
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps
        self.state = dict(state or initial_state())
        self.state["segments"] += 1
        self.metrics_path = metrics_path
        self.on_new_best = on_new_best
        self.write = write
        self.epoch = self.state["epoch"]
        # The means of the interrupted epoch's earlier segments, if the run
        # resumes inside an epoch.
        self._carried = (self.state["epoch"], self.state["epoch_means"])
        self._steps_this_epoch = 0
        self._clock = None
        if write and metrics_path is not None:
            write_text_atomically(metrics_path, metrics_csv_text(self.state["history"]))

    @property
    def global_step(self):
        return self.state["global_step"]

    @property
    def best_val_accuracy(self):
        return self.state["best_val_accuracy"]

    def train_seconds(self):
        """Training time of all segments so far, this one included."""
        running = time.perf_counter() - self._clock if self._clock is not None else 0.0
        return self.state["train_seconds"] + running

    def on_train_begin(self, logs=None):
        self._clock = time.perf_counter()

    def on_train_end(self, logs=None):
        self.state["train_seconds"] = self.train_seconds()
        self._clock = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._steps_this_epoch = 0

    def on_train_batch_end(self, batch, logs=None):
        self.state["global_step"] += 1
        self._steps_this_epoch += 1
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
            self._save(self.epoch, step_in_epoch, self._epoch_means(logs))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        means = self._epoch_means(logs)
        row = {"epoch": epoch, **means, "train_seconds": round(self.train_seconds(), 1)}
        row.update({k: float(v) for k, v in logs.items() if k.startswith("val_")})
        improved = self._improves(row)
        self.state["history"].append(row)
        accuracy = row.get("val_accuracy")
        if improved:
            self.state["best_val_accuracy"] = accuracy
            self.state["best_epoch"] = epoch
        self._save(epoch + 1, 0, None)
        if self.write and self.metrics_path is not None:
            write_text_atomically(self.metrics_path, metrics_csv_text(self.state["history"]))
        if improved and self.on_new_best is not None:
            self.on_new_best(self.model, epoch, accuracy)

    def _improves(self, row):
        """Whether epoch `row` is the new selected epoch: a higher validation
        accuracy, or the same with a lower validation loss (small validation
        splits tie often, and the first epoch to reach a tie is rarely the
        best trained)."""
        accuracy = row.get("val_accuracy")
        if accuracy is None:
            return False
        best = self.state["best_val_accuracy"]
        if best is None or accuracy > best:
            return True
        if accuracy < best:
            return False
        best_row = next((r for r in self.state["history"]
                         if r["epoch"] == self.state["best_epoch"]), {})
        loss, best_loss = row.get("val_loss"), best_row.get("val_loss")
        return loss is not None and best_loss is not None and loss < best_loss

    def _epoch_means(self, logs):
        """This epoch's training means so far, earlier segments included."""
        this_segment = {"steps": self._steps_this_epoch}
        this_segment.update(
            {k: float(v) for k, v in (logs or {}).items() if not k.startswith("val_")}
        )
        carried_epoch, carried_means = self._carried
        return combine_means(carried_means if carried_epoch == self.epoch else None, this_segment)

    def _save(self, epoch, step_in_epoch, epoch_means):
        self.state.update(
            epoch=epoch,
            step_in_epoch=step_in_epoch,
            epoch_means=epoch_means,
            train_seconds=self.train_seconds(),
        )
        if self._clock is not None:
            self._clock = time.perf_counter()
        if self.write:
            self.checkpoints.save(self.model, self.state)
