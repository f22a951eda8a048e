"""`train()`: the library entry point behind `tools/train.py`.

One call trains a preset on a data set with a recipe and writes, into
`output_dir`: `checkpoints/` (resumable), `tensorboard/`, `metrics.csv`,
`best_preset/` and `final_preset/` (KerasHub preset directories loadable
with `keras_spiking_tf.from_preset`) and `summary.json`.
"""

import dataclasses
import json
import os
import tempfile
import time

import keras

from keras_spiking_tf.hub import from_preset
from keras_spiking_tf.hub import save_to_preset
from keras_spiking_tf.training.checkpointing import CheckpointDirectory
from keras_spiking_tf.training.checkpointing import ResumableCheckpoint
from keras_spiking_tf.training.datasets import load_dataset
from keras_spiking_tf.training.distribution import is_chief
from keras_spiking_tf.training.distribution import make_strategy
from keras_spiking_tf.training.distribution import replica_count
from keras_spiking_tf.training.distribution import strategy_scope
from keras_spiking_tf.training.input_pipeline import make_eval_dataset
from keras_spiking_tf.training.input_pipeline import make_train_stream
from keras_spiking_tf.training.input_pipeline import steps_per_epoch
from keras_spiking_tf.training.optimization import make_loss
from keras_spiking_tf.training.optimization import make_optimizer
from keras_spiking_tf.training.precision import resolve_dtype_policy
from keras_spiking_tf.training.recipes import load_recipe

DEFAULT_RECIPES = {"digits": "digits", "cifar10": "cifar", "cifar100": "cifar", "imagenet2012": "imagenet"}


@dataclasses.dataclass
class TrainConfig:
    """What to train and how; the fields mirror `tools/train.py`'s flags.

    Attributes:
        preset: preset name or directory to train (from scratch unless
            `init_weights`).
        dataset: `digits`, `cifar10`, `cifar100`, `imagenet2012` or
            `imagefolder:PATH`.
        data_dir: TFDS data directory (ImageNet: holds `manual/`).
        recipe: recipe name or JSON path; default chosen by data set.
        epochs: total epochs; rescales the recipe's warm-up, cool-down and
            mix switch-off proportionally.
        batch_size: global batch size (divisible by the replica count).
        strategy: see `distribution.py`.
        tpu: TPU name or address for `strategy="tpu"`.
        mixed_precision: dtype policy; `"auto"` takes the recipe's, else the
            fastest here (`precision.fastest_dtype_policy`).
        output_dir: where everything is written.
        resume: continue from the newest checkpoint in `output_dir`.
        seed: seeds weights, shuffling and augmentation.
        jit_compile: `"auto"`, `True` or `False` (XLA).
        time_steps, attention: backbone overrides (e.g. for ablations).
        init_weights: start from the preset's weights (fine-tuning).
        checkpoint_every: checkpoint period in steps (0: epoch ends only).
        verbose: 1 shows progress bars.
    """

    preset: str = "st_2_64_digits"
    dataset: str = "digits"
    data_dir: str | None = None
    recipe: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    strategy: str = "auto"
    tpu: str | None = None
    mixed_precision: str | None = "auto"
    output_dir: str = "runs/st_2_64_digits"
    resume: bool = False
    seed: int = 0
    jit_compile: str | bool = "auto"
    time_steps: int | None = None
    attention: str | None = None
    init_weights: bool = False
    checkpoint_every: int = 0
    verbose: int = 1


def resolve_recipe(config):
    """The recipe with `epochs`/`batch_size` overrides applied."""
    name = config.recipe or DEFAULT_RECIPES.get(config.dataset, "cifar")
    recipe = load_recipe(name, batch_size=config.batch_size)
    if config.epochs is not None:
        scale = config.epochs / recipe.total_epochs
        cooldown = int(round(recipe.cooldown_epochs * scale))
        mix_off = recipe.mix_off_epoch
        recipe = dataclasses.replace(
            recipe,
            epochs=config.epochs - cooldown,
            cooldown_epochs=cooldown,
            warmup_epochs=min(int(round(recipe.warmup_epochs * scale)), config.epochs - cooldown - 1),
            mix_off_epoch=None if mix_off is None else int(round(mix_off * scale)),
        )
    return recipe


def check_output_dir(output_dir):
    """Creates `output_dir` and proves it writable, or raises a clear error."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise PermissionError(
            f"Cannot write to --output_dir '{output_dir}' ({error}); choose a "
            "writable directory."
        ) from error


def build_model(config, splits, dtype_policy):
    """The classifier to train, with a head sized for the data set."""
    overrides = {"dtype": dtype_policy}
    if config.time_steps is not None:
        overrides["time_steps"] = config.time_steps
    if config.attention is not None:
        overrides["attention"] = config.attention
    model = from_preset(config.preset, load_weights=config.init_weights, **overrides)
    if model.num_classes != splits.num_classes:
        model = from_preset(
            config.preset, num_classes=splits.num_classes, load_weights=config.init_weights,
            **overrides,
        )
    channels = model.backbone.image_shape[-1]
    if channels != splits.channels:
        raise ValueError(
            f"Preset '{config.preset}' takes {channels}-channel images but "
            f"dataset '{config.dataset}' has {splits.channels} channels; pick a "
            f"preset for this data set (e.g. st_2_64_digits for digits)."
        )
    return model


class BestPresetSaver(keras.callbacks.Callback):
    """Saves the model as a preset whenever test accuracy improves."""

    def __init__(self, preset_dir, best_accuracy=None, write=True):
        super().__init__()
        self.preset_dir = preset_dir
        self.best_accuracy = best_accuracy
        self.write = write

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_accuracy")
        if accuracy is None or (self.best_accuracy is not None and accuracy <= self.best_accuracy):
            return
        self.best_accuracy = float(accuracy)
        if self.write:
            save_to_preset(self.model, self.preset_dir)


def train(config):
    """Trains as `config` says; returns the summary dict (also in
    `output_dir/summary.json`).

    Example:

    ```python
    summary = train(TrainConfig(epochs=2, output_dir="/tmp/run"))
    summary["test_accuracy"]
    ```
    """
    return run_training(config)[1]


def run_training(config):
    """`train`, returning `(trained model, summary)`."""
    # The strategy comes first: multi-worker collectives must be configured
    # before anything else initialises TensorFlow.
    strategy = make_strategy(config.strategy, config.tpu)
    recipe = resolve_recipe(config)
    keras.utils.set_random_seed(config.seed)
    dtype_policy = resolve_dtype_policy(config.mixed_precision, recipe.mixed_precision)
    chief = is_chief(strategy)
    output_dir = config.output_dir if chief else os.path.join(tempfile.mkdtemp(), "worker")
    check_output_dir(output_dir)
    replicas = replica_count(strategy)
    if recipe.batch_size % replicas:
        raise ValueError(
            f"Global batch size {recipe.batch_size} is not divisible by the "
            f"{replicas} replicas of --strategy={config.strategy}; use a "
            "multiple of the replica count."
        )
    splits = load_dataset(config.dataset, config.data_dir)
    steps = steps_per_epoch(splits.num_train, recipe.batch_size)

    with strategy_scope(strategy):
        model = build_model(config, splits, dtype_policy)
        model.compile(
            optimizer=make_optimizer(recipe, model, steps, dtype_policy),
            loss=make_loss(recipe),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            jit_compile=config.jit_compile,
        )
    checkpoints = CheckpointDirectory(os.path.join(output_dir, "checkpoints"))
    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_accuracy": None}
    if config.resume:
        state = checkpoints.restore(model) or state
    elif checkpoints.latest() is not None:
        raise FileExistsError(
            f"'{output_dir}' already holds checkpoints of a run; pass --resume "
            "to continue it or choose a new --output_dir."
        )

    image_size = tuple(model.backbone.image_shape[:2])
    num_classes = model.num_classes
    eval_data = make_eval_dataset(splits, recipe, image_size, recipe.batch_size, num_classes)
    callbacks = [
        ResumableCheckpoint(
            checkpoints, steps, config.checkpoint_every, state["global_step"],
            state["best_accuracy"], write=chief,
        ),
        BestPresetSaver(os.path.join(output_dir, "best_preset"), state["best_accuracy"], chief),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "metrics.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard")),
    ]
    custom_loop = None
    if config.strategy == "multi_worker":
        from keras_spiking_tf.training.custom_loop import CustomLoop

        custom_loop = CustomLoop(
            strategy, model, recipe, recipe.batch_size, callbacks, config.verbose
        )

    start = time.time()
    epoch, skip = state["epoch"], state["step_in_epoch"]
    while epoch < recipe.total_epochs:
        mixing = recipe.mixes and (recipe.mix_off_epoch is None or epoch < recipe.mix_off_epoch)
        end = recipe.total_epochs
        if mixing and recipe.mix_off_epoch is not None:
            end = min(end, recipe.mix_off_epoch)
        if skip:
            end = epoch + 1  # finish the interrupted epoch on its own
        stream = make_train_stream(
            splits, recipe, image_size, recipe.batch_size, num_classes, epoch, end,
            config.seed, mix=mixing,
        ).skip(skip)
        fit_args = dict(
            initial_epoch=epoch, epochs=end, steps_per_epoch=steps - skip,
            validation_data=eval_data,
        )
        if custom_loop is not None:
            custom_loop.fit(stream, **fit_args)
        else:
            model.fit(stream, callbacks=callbacks, verbose=config.verbose, **fit_args)
        epoch, skip = end, 0
    train_seconds = time.time() - start

    if custom_loop is not None:
        test_accuracy = custom_loop.evaluate(eval_data)["val_accuracy"]
    else:
        test_accuracy = model.evaluate(eval_data, verbose=0, return_dict=True)["accuracy"]
    final_preset = os.path.join(output_dir, "final_preset")
    summary = {
        "test_accuracy": float(test_accuracy),
        "best_test_accuracy": callbacks[1].best_accuracy,
        "epochs": recipe.total_epochs,
        "global_step": callbacks[0].global_step,
        "train_seconds": round(train_seconds, 1),
        "preset_dir": os.path.abspath(final_preset),
        "best_preset_dir": os.path.abspath(os.path.join(output_dir, "best_preset")),
        "config": dataclasses.asdict(config),
        "recipe": dataclasses.asdict(recipe),
        "dtype_policy": dtype_policy,
        "replicas": replicas,
        "backend": keras.backend.backend(),
    }
    if chief:
        save_to_preset(model, final_preset)
        with open(os.path.join(output_dir, "summary.json"), "w", encoding="utf-8") as file:
            json.dump(summary, file, indent=2)
    return model, summary
