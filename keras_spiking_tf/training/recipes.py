"""Training recipes: the paper's hyper-parameters as data files (design.md §6).

A recipe is a JSON file; the built-in ones live in `training/recipes/`
(`cifar`, `imagenet`, `digits`, `finetune` (small data sets, from a preset's weights), and the event-camera recipes `event_digits`, `dvs_gesture_t16`, `dvs_gesture_t10`, `cifar10_dvs`, `nmnist`). `load_recipe` accepts a built-in name or a
path to your own file with the same keys.
"""

import dataclasses
import json
import os
from importlib import resources

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


def load_recipe(name_or_path, **overrides):
    """Loads a recipe by built-in name or JSON path; `overrides` replace keys.

    Example:

    ```python
    recipe = load_recipe("cifar", epochs=10)
    ```
    """
    if os.path.isfile(name_or_path):
        with open(name_or_path, encoding="utf-8") as file:
            values = json.load(file)
    elif name_or_path in builtin_recipes():
        folder = resources.files("keras_spiking_tf.training") / "recipes"
        values = json.loads((folder / f"{name_or_path}.json").read_text("utf-8"))
    else:
        raise ValueError(
            f"Unknown recipe {name_or_path!r}: use one of {builtin_recipes()} "
            "or the path of a JSON file with the same keys."
        )
    values.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f.name for f in dataclasses.fields(Recipe)}
    required = {f.name for f in dataclasses.fields(Recipe) if f.default is dataclasses.MISSING}
    unknown = sorted(set(values) - fields)
    missing = sorted(required - set(values))
    if unknown or missing:
        raise ValueError(
            f"Recipe {name_or_path!r} has unknown keys {unknown} and lacks "
            f"keys {missing}; see keras_spiking_tf.training.recipes.Recipe."
        )
    if values["optimizer"] not in ("adamw", "lamb"):
        raise ValueError(f"Recipe optimizer must be 'adamw' or 'lamb', got {values['optimizer']!r}.")
    if values["schedule_unit"] not in ("epoch", "step"):
        raise ValueError("Recipe schedule_unit must be 'epoch' or 'step'.")
    if values.get("loss", "cross_entropy") not in LOSSES:
        raise ValueError(f"Recipe loss must be one of {list(LOSSES)}, got {values['loss']!r}.")
    return Recipe(**values)
