"""Training recipes: the paper's hyper-parameters as data files (design.md §6).

A recipe is a JSON file; the built-in ones live in `training/recipes/`
(`cifar`, `imagenet`, `digits`, `finetune` (small data sets, from a preset's weights), `meta_spikeformer_finetune` (the Meta-SpikeFormer T=4 ImageNet fine-tuning, SPEC §10), and the event-camera recipes `event_digits`, `dvs_gesture_t16`, `dvs_gesture_t10`, `cifar10_dvs`, `nmnist`). `load_recipe` accepts a built-in name or a
path to your own file with the same keys.
"""

import dataclasses
import json
import os
from importlib import resources

from keras_spiking_tf import validation

LOSSES = ("cross_entropy", "tet")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training recipe. Epoch counts are in epochs, rates absolute.

    Attributes:
        description: what the recipe is and where it comes from.
        epochs: epochs of warm-up plus cosine decay (`t_initial` in timm).
        cooldown_epochs: epochs at `min_learning_rate` after the cosine.
        batch_size: global batch size.
        optimizer: `"adamw"` or `"lamb"`.
        learning_rate, weight_decay, optimizer_epsilon, clipnorm: optimizer.
            Weight decay applies to >= 2-D weights only.
        warmup_epochs, warmup_learning_rate, min_learning_rate: schedule.
        schedule_unit: `"epoch"` (timm's per-epoch steps) or `"step"`.
        horizontal_flip: random left-right flips.
        rand_augment: `None` or `{"num_ops", "magnitude", "magnitude_std"}`
            with timm's magnitude scale (0..10).
        random_resized_crop_scale: `None` or `[min, max]` area fraction.
        crop_pct: evaluation resize to `size / crop_pct`, then center crop.
        mixup_alpha, cutmix_alpha: 0 disables either.
        mix_probability: chance a batch is mixed at all.
        mix_off_epoch: epoch from which mixing stops (`None`: never).
        label_smoothing: for the cross-entropy loss.
        mixed_precision: `None` or a Keras dtype policy name.
        loss: `"cross_entropy"` (on the mean over T of the logits) or
            `"tet"` (Deng et al. 2022, design.md §9: on every step's logits).
        tet_lambda, tet_phi: the TET loss's MSE weight and target.
    """

    description: str
    epochs: int
    cooldown_epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    weight_decay: float
    optimizer_epsilon: float
    clipnorm: float | None
    warmup_epochs: int
    warmup_learning_rate: float
    min_learning_rate: float
    schedule_unit: str
    horizontal_flip: bool
    rand_augment: dict | None
    random_resized_crop_scale: list | None
    crop_pct: float
    mixup_alpha: float
    cutmix_alpha: float
    mix_probability: float
    mix_off_epoch: int | None
    label_smoothing: float
    mixed_precision: str | None
    loss: str = "cross_entropy"
    tet_lambda: float = 0.001
    tet_phi: float = 1.0

    @property
    def total_epochs(self):
        return self.epochs + self.cooldown_epochs

    @property
    def mixes(self):
        return self.mix_probability > 0 and (
            self.mixup_alpha > 0 or self.cutmix_alpha > 0
        )


def builtin_recipes():
    """Names of the recipes shipped with the package."""
    folder = resources.files("keras_spiking_tf.training") / "recipes"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def check_recipe_name(argument, name_or_path, allow_none=False):
    """`name_or_path` (argument or flag `argument`): a built-in recipe name
    or the path of an existing JSON file; nothing is read.

    Example:

    ```python
    check_recipe_name("--recipe", "cifar")
    ```
    """
    if name_or_path is None and allow_none:
        return None
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    validation.check_string(argument, name_or_path)
    if name_or_path in builtin_recipes() or os.path.isfile(name_or_path):
        return name_or_path
    allowed = f"one of {builtin_recipes()} or the path of a JSON file with the same keys"
    if os.path.isdir(name_or_path):
        raise validation.invalid(argument, name_or_path, allowed, hint="(it is a directory)")
    if name_or_path.endswith(".json") or os.sep in name_or_path:
        raise validation.NoSuchPathError(
            f"Recipe file {validation.describe(name_or_path)} does not exist: `{argument}` "
            f"must be {allowed}."
        )
    raise ValueError(
        f"Unknown recipe {validation.describe(name_or_path)}: `{argument}` must be {allowed}."
        + validation.suggestion(name_or_path, builtin_recipes())
    )


# Smallest value of each numeric recipe key (others: >= 0).
_MINIMUM = {"epochs": 1, "batch_size": 1}
_AT_MOST_ONE = ("mix_probability", "label_smoothing", "crop_pct")


def check_recipe_value(key, value):
    """One recipe value, by its `Recipe` field's type: integers and
    numbers finite and >= 0 (epochs, batch_size >= 1; probabilities <= 1),
    strings non-empty, flags True/False; `None` where the field allows it."""
    field = {f.name: f for f in dataclasses.fields(Recipe)}[key]
    kind = getattr(field.type, "__name__", str(field.type))  # "int", "float | None", ...
    allow_none = "None" in kind
    if value is None and allow_none:
        return None
    if kind.startswith("int"):
        return validation.check_integer(key, value, minimum=_MINIMUM.get(key, 0))
    if kind.startswith("float"):
        return validation.check_number(key, value, minimum=0.0,
                                       maximum=1.0 if key in _AT_MOST_ONE else None)
    if kind.startswith("bool"):
        return validation.check_bool(key, value)
    if kind.startswith("str"):
        return validation.check_string(key, value)
    if kind.startswith("dict"):
        return validation.check_keys(key, value, ("num_ops", "magnitude", "magnitude_std"))
    if kind.startswith("list"):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise validation.invalid(key, value, "a [min, max] pair of fractions",
                                     error=TypeError if not isinstance(value, (list, tuple))
                                     else ValueError)
        for item in value:
            validation.check_number(key, item, minimum=0.0, maximum=1.0)
        return value
    raise AssertionError(f"no check for recipe key {key!r} of type {kind}")


def load_recipe(name_or_path, **overrides):
    """Loads a recipe by built-in name or JSON path; `overrides` replace keys
    (a `None` override keeps the recipe's value).

    Example:

    ```python
    recipe = load_recipe("cifar", epochs=10)
    ```
    """
    fields = [f.name for f in dataclasses.fields(Recipe)]
    check_recipe_name("name_or_path", name_or_path)
    validation.check_keyword_arguments("load_recipe", overrides, ["name_or_path", *fields])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key, value in overrides.items():
        check_recipe_value(key, value)
    name_or_path = os.fspath(name_or_path)
    if os.path.isfile(name_or_path):
        with open(name_or_path, encoding="utf-8") as file:
            values = json.load(file)
    else:
        folder = resources.files("keras_spiking_tf.training") / "recipes"
        values = json.loads((folder / f"{name_or_path}.json").read_text("utf-8"))
    values.update(overrides)
    fields = set(fields)
    required = {f.name for f in dataclasses.fields(Recipe) if f.default is dataclasses.MISSING}
    unknown = sorted(set(values) - fields)
    missing = sorted(required - set(values))
    if unknown or missing:
        hints = "".join(validation.suggestion(key, fields) for key in unknown)
        raise ValueError(
            f"Recipe {name_or_path!r} has unknown keys {unknown} and lacks "
            f"keys {missing}; see keras_spiking_tf.training.recipes.Recipe.{hints}"
        )
    for key, value in values.items():
        try:
            check_recipe_value(key, value)
        except (TypeError, ValueError) as error:
            raise type(error)(f"Recipe {name_or_path!r}: {error}") from None
    if values["optimizer"] not in ("adamw", "lamb"):
        raise ValueError(f"Recipe optimizer must be 'adamw' or 'lamb', got {values['optimizer']!r}.")
    if values["schedule_unit"] not in ("epoch", "step"):
        raise ValueError("Recipe schedule_unit must be 'epoch' or 'step'.")
    if values.get("loss", "cross_entropy") not in LOSSES:
        raise ValueError(f"Recipe loss must be one of {list(LOSSES)}, got {values['loss']!r}.")
    return Recipe(**values)
