"""`train()`: the library entry point behind `kst-train` / `tools/train.py`.

One call trains a preset of any registered model family
(`models/model_family.py`) on a data set with a recipe and writes, into
`output_dir` (by default a fresh `runs/<preset>-<date>-<time>/` per run):
`checkpoints/` (resumable), `tensorboard/`, `metrics.csv` (one row per
epoch), `best_preset/` (the epoch with the best *validation* accuracy; of equal
accuracies, the lower validation loss) and
`final_preset/` (KerasHub preset directories loadable with
`keras_spiking_tf.from_preset`) and `summary.json`.

Splits: the model trains on the train split, the best epoch is chosen on the
validation split (held out of the training data, `datasets.py`), and the
test split is used once, at the end, for the test accuracy of the final and
of the selected model. `summary.json` names the split of every number.

Every argument is checked before anything is computed or written; a run that
is interrupted continues with the same command plus `resume=True`.
"""

import contextlib
import dataclasses
import datetime
import functools
import json
import os
import tempfile

import keras
import numpy as np

from keras_spiking_tf.analysis.energy import energy_summary
from keras_spiking_tf.run_lock import RunDirectoryLock
from keras_spiking_tf.run_lock import lock_holder
from keras_spiking_tf.run_lock import locked_error
from keras_spiking_tf.atomic_directory import sweep_stale_staging
from keras_spiking_tf.atomic_directory import write_text_atomically
from keras_spiking_tf import validation
from keras_spiking_tf.layers.lif import MAX_TIME_STEPS
from keras_spiking_tf.layers.spiking_self_attention import check_attention_name
from keras_spiking_tf.models.model_family import builtin_entry
from keras_spiking_tf.models.model_family import check_preset
from keras_spiking_tf.models.model_family import dataset_of
from keras_spiking_tf.models.model_family import family_of_model
from keras_spiking_tf.models.model_family import preset_architecture
from keras_spiking_tf.models.model_family import resolve_preset
from keras_spiking_tf.models.preset_files import read_preset_json
from keras_spiking_tf.models.preset_files import read_preset_metadata
from keras_spiking_tf.models.spiking_image_classifier import from_preset
from keras_spiking_tf.models.spiking_image_classifier import save_to_preset
from keras_spiking_tf.training.checkpointing import CheckpointDirectory
from keras_spiking_tf.training.checkpointing import ResumableCheckpoint
from keras_spiking_tf.training.checkpointing import initial_state
from keras_spiking_tf.training.datasets import check_channels
from keras_spiking_tf.training.datasets import check_data_dir
from keras_spiking_tf.training.datasets import check_dataset_name
from keras_spiking_tf.training.datasets import check_validation_fraction
from keras_spiking_tf.training.datasets import find_dataset
from keras_spiking_tf.training.datasets import is_image_folder
from keras_spiking_tf.training.datasets import load_dataset
from keras_spiking_tf.training.distillation import DISTILLATION_ALPHA
from keras_spiking_tf.training.distillation import MeanOfHeadsAccuracy
from keras_spiking_tf.training.distillation import heads_model
from keras_spiking_tf.training.distribution import check_strategy
from keras_spiking_tf.training.distribution import is_chief
from keras_spiking_tf.training.distribution import make_strategy
from keras_spiking_tf.training.distribution import replica_count
from keras_spiking_tf.training.distribution import strategy_scope
from keras_spiking_tf.training.input_pipeline import make_eval_dataset
from keras_spiking_tf.training.input_pipeline import make_train_stream
from keras_spiking_tf.training.input_pipeline import steps_per_epoch
from keras_spiking_tf.training.optimization import MeanOverTimeAccuracy
from keras_spiking_tf.training.optimization import make_loss
from keras_spiking_tf.training.optimization import make_optimizer
from keras_spiking_tf.training.precision import resolve_dtype_policy
from keras_spiking_tf.training.recipes import check_recipe_name
from keras_spiking_tf.training.recipes import load_recipe

def default_recipe(dataset, time_steps, init_weights=False):
    """The recipe a data set trains with unless `--recipe` says otherwise:
    `finetune` for image folders and for image data sets trained from a
    preset's weights (`--init_weights`), else the data set's own."""
    entry = find_dataset(dataset)
    if entry.kind == "images" and init_weights:
        return "finetune"
    if dataset == "dvs_gesture" and time_steps == 10:
        return "dvs_gesture_t10"
    return entry.recipe


RUNS_DIRECTORY = "runs"


@dataclasses.dataclass
class TrainConfig:
    """What to train and how; the fields mirror `kst-train`'s flags.

    Attributes:
        preset: preset name or directory to train (from scratch unless
            `init_weights`).
        dataset: `digits`, `cifar10`, `cifar100`, `imagenet2012` or
            `imagefolder:PATH`.
        data_dir: TFDS data directory (ImageNet: holds `manual/`).
        recipe: recipe name or JSON path; default chosen by data set.
        epochs: total epochs (>= 1); rescales the recipe's warm-up,
            cool-down and mix switch-off proportionally.
        batch_size: global batch size (>= 1, divisible by the replica count).
        strategy: see `distribution.py`.
        tpu: TPU name or address for `strategy="tpu"`.
        mixed_precision: dtype policy; `"auto"` takes the recipe's, else the
            fastest here (`precision.fastest_dtype_policy`).
        output_dir: where everything is written. `None`: a fresh
            `runs/<preset>-<date>-<time>` directory per run; with `resume`,
            the newest unfinished one of this preset.
        resume: continue the run in `output_dir` from its newest checkpoint.
        seed: seeds weights, shuffling and augmentation.
        jit_compile: `"auto"`, `True` or `False` (XLA).
        time_steps, attention: backbone overrides (e.g. for ablations).
        image_channels: the channel count the model takes (`None`: the
            preset's). Images are converted to it (RGB to grayscale, or
            grayscale to RGB); with `init_weights`, the first convolution's
            kernel is adapted to it (`input_adaptation.py`).
        init_weights: start from the preset's weights (fine-tuning).
        skip_bad_images: image folders: leave unreadable image files out
            (named in `summary.json`) instead of refusing the run.
        checkpoint_every: also checkpoint every N steps (`None`: at epoch
            ends only).
        validation_fraction: part of the training split held out for
            model selection (`None`: the data set's default, see
            `datasets.py`).
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
    output_dir: str | None = None
    resume: bool = False
    seed: int = 0
    jit_compile: str | bool = "auto"
    time_steps: int | None = None
    attention: str | None = None
    image_channels: int | None = None
    init_weights: bool = False
    skip_bad_images: bool = False
    checkpoint_every: int | None = None
    validation_fraction: float | None = None
    verbose: int = 1

    def __new__(cls, *args, **kwargs):
        # A misspelt field is a TypeError with the close names suggested.
        validation.check_keyword_arguments(
            "TrainConfig", kwargs, [field.name for field in dataclasses.fields(cls)]
        )
        return super().__new__(cls)

    def __post_init__(self):
        self.validate()

    def validate(self, as_flags=False):
        """Checks every field, each where it is given (at construction and
        again in `train`), before anything is computed or written. The
        messages name the field as the Python argument (`epochs`), or with
        `as_flags` as `kst-train`'s flag (`--epochs`).

        Raises:
            TypeError: a value of the wrong type.
            ValueError: a value out of range or not among the choices.
            FileNotFoundError: a preset directory, image folder or recipe
                file that does not exist (also a `ValueError`).
        """
        TrainConfig.check_fields(dataclasses.asdict(self), as_flags)

    @staticmethod
    def check_fields(values, as_flags=False):
        """`validate` for a dict of field values (what `kst-train` builds
        from its flags): unknown fields, then each field, then the
        combinations."""
        def name(field):
            return validation.flag_name(field, as_flags)

        fields = [field.name for field in dataclasses.fields(TrainConfig)]
        validation.check_keyword_arguments("TrainConfig", values, fields)
        values = {**{f.name: f.default for f in dataclasses.fields(TrainConfig)}, **values}
        check_preset(name("preset"), values["preset"])
        check_dataset_name(values["dataset"], name("dataset"))
        check_data_dir(name("data_dir"), values["data_dir"])
        check_recipe_name(name("recipe"), values["recipe"], allow_none=True)
        for field, maximum in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH_SIZE),
                               ("checkpoint_every", MAX_STEPS),
                               ("time_steps", MAX_TIME_STEPS)):
            validation.check_integer(name(field), values[field], minimum=1, maximum=maximum,
                                     allow_none=True)
        check_strategy(name("strategy"), values["strategy"], name("tpu"), values["tpu"])
        if values["mixed_precision"] != "auto":
            validation.check_dtype_policy(name("mixed_precision"), values["mixed_precision"])
        validation.check_output_path(name("output_dir"), values["output_dir"], kind="directory",
                                     allow_none=True)
        for field in ("resume", "init_weights", "skip_bad_images"):
            validation.check_bool(name(field), values[field])
        validation.check_integer(name("seed"), values["seed"], minimum=0, maximum=MAX_SEED)
        validation.check_bool_or_choice(name("jit_compile"), values["jit_compile"], ("auto",))
        if values["attention"] is not None:
            check_attention_name(name("attention"), values["attention"])
        check_channels(name("image_channels"), values["image_channels"])
        check_validation_fraction(name("validation_fraction"), values["validation_fraction"],
                                  allow_none=True)
        validation.check_integer(name("verbose"), values["verbose"], minimum=0, maximum=2)
        if values["skip_bad_images"] and not is_image_folder(values["dataset"]):
            raise validation.invalid(
                name("skip_bad_images"), True,
                f"False unless {name('dataset')} is an image folder (imagefolder:PATH)",
                hint=f"({name('dataset')} {values['dataset']!r} has no image files to skip; "
                     "drop it)",
            )


# The largest values TrainConfig takes (beyond them a run is a typo, not a plan).
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1 << 20
MAX_STEPS = 10**8
MAX_SEED = 2**32 - 1  # NumPy's seeds


def preset_time_steps(config):
    """The `T` a run trains with: `--time_steps`, else the preset's."""
    if config.time_steps is not None:
        return config.time_steps
    return preset_architecture(config.preset)["time_steps"]


def recipe_name(config):
    """The recipe a run trains with: `--recipe`, else `default_recipe`."""
    return config.recipe or default_recipe(
        config.dataset, preset_time_steps(config), config.init_weights
    )


def preset_channels(config):
    """The channel count a run's model takes: `--image_channels`, else the preset's."""
    if config.image_channels is not None:
        return config.image_channels
    return preset_architecture(config.preset)["image_shape"][-1]


def resolve_recipe(config):
    """The recipe with `epochs`/`batch_size` overrides applied."""
    name = recipe_name(config)
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


def _run_name(preset):
    return os.path.basename(os.path.normpath(preset)) or "run"


def resolve_output_dir(config):
    """The run directory: `config.output_dir`, else a fresh one (or, to
    resume, the newest unfinished one of this preset) under `runs/`."""
    if config.output_dir is not None:
        return config.output_dir
    name = _run_name(config.preset)
    if config.resume:
        unfinished = sorted(
            os.path.join(RUNS_DIRECTORY, entry)
            for entry in (os.listdir(RUNS_DIRECTORY) if os.path.isdir(RUNS_DIRECTORY) else [])
            if entry.startswith(name + "-")
            and CheckpointDirectory(os.path.join(RUNS_DIRECTORY, entry, "checkpoints")).latest()
            and not os.path.exists(os.path.join(RUNS_DIRECTORY, entry, "summary.json"))
        )
        if not unfinished:
            raise FileNotFoundError(
                f"--resume found no unfinished run of '{name}' under '{RUNS_DIRECTORY}/'; "
                "pass the run's --output_dir."
            )
        return unfinished[-1]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = os.path.join(RUNS_DIRECTORY, f"{name}-{stamp}")
    suffix = 2
    while os.path.exists(candidate):
        candidate = os.path.join(RUNS_DIRECTORY, f"{name}-{stamp}-{suffix}")
        suffix += 1
    return candidate


def check_output_dir(output_dir, resume):
    """Checks, without writing, that `output_dir` can hold this run.

    Raises:
        RunDirectoryLockedError: another live process trains into it.
        PermissionError: it cannot be created or written.
        FileExistsError: it holds another run and `resume` is off.
        FileNotFoundError: `resume` is on and there is nothing to resume.
    """
    existing = os.path.abspath(output_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Cannot write to --output_dir '{output_dir}' ('{existing}' is not a writable "
            "directory); choose a writable directory."
        )
    holder = lock_holder(output_dir) if os.path.isdir(output_dir) else None
    if holder is not None:
        raise locked_error(output_dir, holder)
    has_checkpoint = CheckpointDirectory(os.path.join(output_dir, "checkpoints")).latest() is not None
    if resume and not has_checkpoint:
        raise FileNotFoundError(
            f"--resume: '{output_dir}' holds no checkpoint to continue from; start the "
            "run without --resume."
        )
    if not resume and (has_checkpoint or os.path.exists(os.path.join(output_dir, "summary.json"))):
        raise FileExistsError(
            f"'{output_dir}' already holds a run; pass --resume to continue it, or choose "
            "another --output_dir (without --output_dir every run gets a fresh directory)."
        )


def preset_num_classes(preset):
    """The number of classes of a preset's head: a built-in preset's data
    set's, or a directory's or hub handle's (its `task.json`)."""
    if builtin_entry(preset) is not None:
        return dataset_of(preset)["num_classes"]
    return read_preset_json(resolve_preset(preset), "task.json")["config"]["num_classes"]


def build_model(config, splits, dtype_policy):
    """The classifier to train, of any registered model family (the
    preset's), with a head sized (and named) for the data set and the input
    channels of `preset_channels`."""
    overrides = {"dtype": dtype_policy}
    if config.time_steps is not None:
        overrides["time_steps"] = config.time_steps
    if config.attention is not None:
        overrides["attention"] = config.attention
    architecture = preset_architecture(config.preset)
    if config.image_channels is not None and config.image_channels != architecture["image_shape"][-1]:
        overrides["image_shape"] = (*architecture["image_shape"][:2], config.image_channels)
    if preset_num_classes(config.preset) != splits.num_classes:  # a fresh head
        overrides.update(num_classes=splits.num_classes, class_names=splits.class_names)
    model = from_preset(config.preset, load_weights=config.init_weights, **overrides)
    model.class_names = splits.class_names  # the data set's names, saved with the model
    channels = model.backbone.image_shape[-1]
    if channels != splits.channels:  # load_dataset converts images; event frames are not
        raise ValueError(
            f"Preset '{config.preset}' takes {channels}-channel frames but "
            f"dataset '{config.dataset}' has {splits.channels} channels; pick a "
            "preset for this data set."
        )
    return model


def check_preset_takes_dataset(config):
    """Raises a `ValueError` when the preset takes images and the data set
    yields event frames, or the reverse (before any data is read)."""
    frames = find_dataset(config.dataset).kind == "events"
    input_type = preset_architecture(config.preset).get("input_type", "image")
    if frames != (input_type == "frames"):
        raise ValueError(
            f"Preset '{config.preset}' takes {input_type} inputs but dataset "
            f"'{config.dataset}' yields {'frame sequences' if frames else 'images'}; pick a "
            + ("frames preset (e.g. st_2_64_event_digits)" if frames else "preset for images")
            + " for this data set."
        )


def describe_run(config, model, splits, recipe, dtype_policy, output_dir):
    """What `kst-train` prints before training: the run in one line (the
    architecture as the model's family describes it in model cards), then
    what was done to the data (converted channels, skipped files) and, for
    a distillation head, how it is trained."""
    backbone = model.backbone
    architecture = dict(family_of_model(model).model_card_rows(backbone))["architecture"]
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    start = "fine-tuning from the preset's weights" if config.init_weights else "from scratch"
    line = (
        f"Training {config.preset} ({backbone.attention}; {architecture}; "
        f"T={backbone.time_steps}, {params:,} parameters, {start}) on "
        f"{config.dataset}: {splits.num_train:,} train / {splits.num_validation:,} validation / "
        f"{splits.num_test:,} test images, {splits.num_classes} classes; recipe "
        f"'{recipe_name(config)}': {recipe.total_epochs} epochs of batch {recipe.batch_size}, "
        f"learning rate {recipe.learning_rate:g}, {dtype_policy}; output {output_dir}"
    )
    notes = list(splits.notes)
    if any("converted" in note for note in notes):
        notes.append(
            f"the model takes {backbone.image_shape[-1]}-channel images"
            + ("; --image_channels 3 trains an RGB model instead"
               if backbone.image_shape[-1] == 1 else "")
        )
    text = line + "".join(f"\n  data: {note}" for note in notes)
    if uses_distillation(model):
        text += f"\n  loss: {DISTILLATION_NOTE}"
    return text


DISTILLATION_NOTE = (
    "the distillation head (kd) trains with DeiT's hard-distillation loss, "
    f"{1 - DISTILLATION_ALPHA:g} CE(head, labels) + {DISTILLATION_ALPHA:g} CE(head_kd, teacher), "
    "but with no teacher model the labels "
    "stand in for the teacher's predictions (not the official CAFormer distillation); "
    "accuracy is that of the classifier's output (head + head_kd) / 2"
)


ENERGY_IMAGES = 32
ENERGY_IMAGES_NOTE = f"the first {ENERGY_IMAGES} validation images"


def _energy_images(splits, image_size, recipe):
    """The first `ENERGY_IMAGES` validation images, as the evaluation sees them."""
    batches = make_eval_dataset(
        splits.validation, recipe, image_size, ENERGY_IMAGES, splits.num_classes
    ).take(1)
    return next(iter(batches.as_numpy_iterator()))[0]


def _model_inputs(model, images):
    """What `model(...)` takes: `images` through its preprocessor, if any."""
    return images if model.preprocessor is None else model.preprocessor(images)


def accuracy_on(model, dataset):
    """Top-1 accuracy of `model` (raw images in) on batches of
    `(images, one-hot labels)`."""
    labels = np.concatenate([np.argmax(y, -1) for _, y in dataset.as_numpy_iterator()])
    logits = model.predict(dataset.map(lambda images, _: images), verbose=0)
    return float(np.mean(np.argmax(logits, -1) == labels))


def _training_record(epochs_completed, val_accuracy):
    """What a preset saved during training records of it in `metadata.json`
    (read back by `_repair_best_preset`)."""
    return {"training": {"epochs_completed": epochs_completed, "val_accuracy": val_accuracy}}


def _final_record(config, recipe, dtype_policy, splits, epochs_completed, selected,
                  val_accuracy, test_accuracy, energy):
    """The full record of a finished run's preset: how it was trained, how
    it scores on which split, and its energy estimate (for the model card)."""
    return {
        "dataset": config.dataset,
        "training": {
            "epochs_completed": epochs_completed, "epochs": recipe.total_epochs,
            "selected": selected, "val_accuracy": val_accuracy,
            "recipe": recipe_name(config),
            "dtype_policy": dtype_policy, "seed": config.seed, "preset": config.preset,
        },
        "evaluation": {
            "test_accuracy": test_accuracy, "test_images": splits.num_test,
            "val_accuracy": val_accuracy, "val_images": splits.num_validation,
        },
        "energy": energy,
    }


class RunProgressBar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering the epochs 1..N of the whole run: a run
    calls `fit` once per segment (until mixing stops, the rest of an
    interrupted epoch), and Keras' own bar would count each segment's
    epochs against that segment's end ("Epoch 3/3", then "Epoch 4/5")."""

    def __init__(self, total_epochs):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs


def _best_preset_saver(directory, chief, classifier):
    """The `on_new_best` callback: saves `classifier` (also when what is
    fitted is its per-step model, for the TET loss)."""

    def save(_, epoch, val_accuracy):
        if chief:
            save_to_preset(classifier, directory, metadata=_training_record(epoch + 1, val_accuracy))

    return save


def training_model(model, recipe):
    """What `fit` trains, its loss and its accuracy metric: the classifier
    with the recipe's loss; for the TET loss, its per-step logits model; for
    a classifier with a distillation head (`kd=True`), its stacked heads
    model with the hard-distillation loss (`distillation.py`: no teacher is
    available, the labels stand in for its predictions). The latter two
    share the classifier's layers and weights, and their accuracy is that
    of the classifier's own output.

    Raises:
        ValueError: a distillation head with a recipe whose loss is TET.
    """
    if uses_distillation(model):
        loss = make_loss(recipe, distillation=True)
        return heads_model(model), loss, MeanOfHeadsAccuracy(name="accuracy")
    if recipe.loss == "tet":
        return (model.per_step_logits_model(), make_loss(recipe),
                MeanOverTimeAccuracy(name="accuracy"))
    return model, make_loss(recipe), keras.metrics.CategoricalAccuracy(name="accuracy")


def uses_distillation(model):
    """Whether `model` trains with the hard-distillation loss: a classifier
    with a distillation head (`kd=True`, Meta-SpikeFormer's `head_kd`)."""
    return bool(getattr(model, "kd", False))


def _repair_best_preset(directory, state, model, chief):
    """After a kill between the checkpoint that records a new best epoch and
    the preset write that follows it, writes that preset from the restored
    model (it holds exactly that epoch's weights)."""
    best_epoch = state["best_epoch"]
    if not chief or best_epoch is None:
        return
    saved = None
    if os.path.isdir(directory):
        saved = read_preset_metadata(directory).get("training", {}).get("epochs_completed")
    if saved == best_epoch + 1:
        return
    if state["step_in_epoch"] == 0 and state["epoch"] == best_epoch + 1:
        save_to_preset(model, directory,
                       metadata=_training_record(best_epoch + 1, state["best_val_accuracy"]))
        return
    raise FileNotFoundError(
        f"'{directory}' does not hold the run's best epoch ({best_epoch + 1}) that its "
        "checkpoint records; it was removed or replaced. Restore it, or start a new run."
    )


def train(config):
    """Trains as `config` says; returns the summary dict (also in
    `output_dir/summary.json`).

    Example:

    ```python
    summary = train(TrainConfig(epochs=2, output_dir="/tmp/run"))
    summary["test_accuracy"], summary["best_val_accuracy"]
    ```
    """
    if not isinstance(config, TrainConfig):
        raise validation.invalid("config", config, "a TrainConfig", error=TypeError)
    return run_training(config, announce=print if config.verbose else None)[1]


FAILURE_FILE = "failure.json"


@contextlib.contextmanager
def failure_recorded(output_dir, checkpoints, chief):
    """Runs the block; if it fails (an error, or Ctrl-C), records that beside
    the run's files in `failure.json`: `status: "failed"`, the error, the
    time and the newest checkpoint, which `--resume` continues from. A run
    that then finishes removes the file and keeps its record in
    `summary.json` (`resumed_after`)."""
    try:
        yield
    except BaseException as error:
        if chief:
            latest = checkpoints.latest()
            record = {
                "status": "failed",
                "error": f"{type(error).__name__}: {error}",
                "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "last_checkpoint": None if latest is None else os.path.abspath(str(latest)),
                "resume": "repeat the command with --resume" if latest is not None
                          else "no checkpoint yet: repeat the command without --resume",
            }
            write_text_atomically(os.path.join(output_dir, FAILURE_FILE),
                                  json.dumps(record, indent=2))
        raise


def previous_failure(output_dir):
    """The `failure.json` record of an earlier attempt of this run, or `None`."""
    path = os.path.join(output_dir, FAILURE_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def run_training(config, announce=None):
    """`train`, returning `(trained model, summary)`; `announce(line)` gets
    the one-line description of the run before training starts."""
    config.validate()
    # The strategy comes first: multi-worker collectives must be configured
    # before anything else initialises TensorFlow.
    strategy = make_strategy(config.strategy, config.tpu)
    recipe = resolve_recipe(config)
    keras.utils.set_random_seed(config.seed)
    dtype_policy = resolve_dtype_policy(config.mixed_precision, recipe.mixed_precision)
    chief = is_chief(strategy)
    output_dir = resolve_output_dir(config) if chief else os.path.join(tempfile.mkdtemp(), "worker")
    check_output_dir(output_dir, config.resume and chief)
    replicas = replica_count(strategy)
    if recipe.batch_size % replicas:
        raise ValueError(
            f"Global batch size {recipe.batch_size} is not divisible by the "
            f"{replicas} replicas of --strategy={config.strategy}; use a "
            "multiple of the replica count."
        )
    check_preset_takes_dataset(config)
    images = find_dataset(config.dataset).kind == "images"  # event frames keep their channels
    splits = load_dataset(config.dataset, config.data_dir, config.validation_fraction,
                          time_steps=preset_time_steps(config),
                          channels=preset_channels(config) if images else None,
                          skip_bad_images=config.skip_bad_images)
    steps = steps_per_epoch(splits.num_train, recipe.batch_size)

    with strategy_scope(strategy):
        model = build_model(config, splits, dtype_policy)
        fitted, loss, accuracy = training_model(model, recipe)
        fitted.compile(
            optimizer=make_optimizer(recipe, model, steps, dtype_policy),
            loss=loss,
            metrics=[accuracy],
            jit_compile=config.jit_compile,
        )
    if announce is not None:
        announce(describe_run(config, model, splits, recipe, dtype_policy, output_dir))

    # Everything is checked: from here on the run writes, holding the
    # directory's lock (one process at a time, `run_lock.py`).
    os.makedirs(output_dir, exist_ok=True)
    checkpoints = CheckpointDirectory(os.path.join(output_dir, "checkpoints"))
    with (RunDirectoryLock(output_dir, announce=announce) if chief else contextlib.nullcontext(),
          failure_recorded(output_dir, checkpoints, chief)):
        sweep_stale_staging(output_dir, [".preset", ".retired", ".partial"])
        checkpoints.sweep()
        best_dir = os.path.join(output_dir, "best_preset")
        state = initial_state()
        if config.resume and chief:
            state = checkpoints.restore(fitted)
            _repair_best_preset(best_dir, state, model, chief)
        elif config.resume:
            state = checkpoints.restore(fitted) or state

        image_size = tuple(model.backbone.image_shape[:2])
        num_classes = model.num_classes
        batch = recipe.batch_size
        validation_data = make_eval_dataset(splits.validation, recipe, image_size, batch, num_classes)
        test_data = make_eval_dataset(splits.test, recipe, image_size, batch, num_classes)
        fit_validation = validation_data
        if fitted is not model and model.preprocessor is not None:  # Task.fit would apply it
            fit_validation = validation_data.map(lambda x, y: (model.preprocessor(x), y))
        progress = ResumableCheckpoint(
            checkpoints, steps, config.checkpoint_every, state,
            metrics_path=os.path.join(output_dir, "metrics.csv"),
            on_new_best=_best_preset_saver(best_dir, chief, model), write=chief,
        )
        callbacks = [progress, keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard"))]
        custom_loop = None
        if config.strategy == "multi_worker":
            from keras_spiking_tf.training.custom_loop import CustomLoop

            custom_loop = CustomLoop(strategy, fitted, recipe, batch, callbacks, config.verbose,
                                     distillation=uses_distillation(model))
        else:  # the custom loop draws its own progress bar
            callbacks.append(RunProgressBar(recipe.total_epochs))

        epoch, skip = state["epoch"], state["step_in_epoch"]
        while epoch < recipe.total_epochs:
            mixing = recipe.mixes and (recipe.mix_off_epoch is None or epoch < recipe.mix_off_epoch)
            end = recipe.total_epochs
            if mixing and recipe.mix_off_epoch is not None:
                end = min(end, recipe.mix_off_epoch)
            if skip:
                end = epoch + 1  # finish the interrupted epoch on its own
            stream = make_train_stream(
                splits, recipe, image_size, batch, num_classes, epoch, end, config.seed, mix=mixing,
            ).skip(skip)
            if fitted is not model and model.preprocessor is not None:
                stream = stream.map(lambda x, y: (model.preprocessor(x), y))
            fit_args = dict(
                initial_epoch=epoch, epochs=end, steps_per_epoch=steps - skip,
                validation_data=fit_validation,
            )
            if custom_loop is not None:
                custom_loop.fit(stream, **fit_args)
            else:  # the stream is shuffled already, epoch by epoch
                fitted.fit(stream, callbacks=callbacks, verbose=config.verbose, shuffle=False, **fit_args)
            epoch, skip = end, 0

        history = progress.state["history"]
        best_epoch = progress.state["best_epoch"]
        best_model = from_preset(best_dir) if chief and os.path.isdir(best_dir) else None
        summary = {
            "test_accuracy": (
                custom_loop.evaluate(test_data)["val_accuracy"] if custom_loop is not None
                else accuracy_on(model, test_data)
            ),
            "val_accuracy": history[-1].get("val_accuracy") if history else None,
            "best_epoch": None if best_epoch is None else best_epoch + 1,
            "best_val_accuracy": progress.best_val_accuracy,
            "best_test_accuracy": accuracy_on(best_model, test_data) if best_model else None,
            "splits": {
                "test_accuracy": "test: the final model on the data set's test split",
                "val_accuracy": "validation: the final model on the validation split",
                "best_val_accuracy": "validation: the selected epoch (highest val_accuracy, then lowest val_loss)",
                "best_test_accuracy": "test: the selected epoch's model (best_preset)",
                "sizes": {"train": splits.num_train, "validation": splits.num_validation,
                          "test": splits.num_test},
                "validation_rule": splits.validation_rule,
            },
            "data_notes": splits.notes,
            "skipped_images": splits.skipped_files,
            "epochs": recipe.total_epochs,
            "global_step": progress.global_step,
            "train_seconds": round(progress.train_seconds(), 1),
            "segments": progress.state["segments"],
            "preset_dir": os.path.abspath(os.path.join(output_dir, "final_preset")),
            "best_preset_dir": os.path.abspath(best_dir),
            "output_dir": os.path.abspath(output_dir),
            "config": dataclasses.asdict(config),
            "recipe": dataclasses.asdict(recipe),
            "dtype_policy": dtype_policy,
            "replicas": replicas,
            "backend": keras.backend.backend(),
        }
        if chief:
            energy_images = _energy_images(splits, image_size, recipe)
            record = functools.partial(_final_record, config, recipe, dtype_policy, splits)
            save_to_preset(model, summary["preset_dir"], metadata=record(
                recipe.total_epochs, False, summary["val_accuracy"], summary["test_accuracy"],
                energy_summary(model, _model_inputs(model, energy_images), ENERGY_IMAGES_NOTE)))
            if best_model is not None:  # the same preset, its record completed
                save_to_preset(best_model, best_dir, metadata=record(
                    summary["best_epoch"], True, summary["best_val_accuracy"],
                    summary["best_test_accuracy"],
                    energy_summary(best_model, _model_inputs(best_model, energy_images),
                                   ENERGY_IMAGES_NOTE)))
            summary["status"] = "finished"
            summary["resumed_after"] = previous_failure(output_dir)
            write_text_atomically(os.path.join(output_dir, "summary.json"), json.dumps(summary, indent=2))
            if summary["resumed_after"] is not None:
                os.remove(os.path.join(output_dir, FAILURE_FILE))
        return model, summary
