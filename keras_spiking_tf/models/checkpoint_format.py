"""What a model family declares about the PyTorch checkpoints it converts
from: `CheckpointFormat`, the `checkpoint` of its `ModelFamily`.

`kst-convert-sdt` (`conversion/sdt_checkpoint.py`) knows no family: it asks
the preset's family for its format, builds the target with the format's
`build_target`, checks the state_dict against its `expected_tensors` and
`skipped_keys`, and converts each tensor by the layout kind the key map
names (the converter's `LAYOUTS`, one table for every family). A family
without a format is refused by name. This module holds, besides, what every
key map shares: PyTorch BatchNorm's tensor names (`BN_TENSORS`), its step
counters, skipped (`batch_norm_counters`), and the built-in preset of
another attention a target becomes (`attention_target`). It imports nothing
of the converter, so a family's key map can import it.

Example:

```python
from keras_spiking_tf.models.model_family import family_of_preset

checkpoint = family_of_preset("sdt_v2_8_512_imagenet").checkpoint
checkpoint.name   # "sdt_v2"
```
"""

import dataclasses
from typing import Callable

# PyTorch BatchNorm tensor -> Keras BatchNormalization weight.
BN_TENSORS = (
    ("weight", "gamma"),
    ("bias", "beta"),
    ("running_mean", "moving_mean"),
    ("running_var", "moving_variance"),
)


@dataclasses.dataclass(frozen=True)
class CheckpointFormat:
    """The PyTorch checkpoints a model family converts from.

    Args:
        name: the source model's name in conversion reports (`"sdt"`,
            `"sdt_v2"`).
        key_prefixes: the module names its checkpoints' keys start with; an
            error message describes a checkpoint by the format whose
            prefixes most of its keys have.
        expected_tensors: classifier -> `{checkpoint key: (Keras variable,
            layout kind)}` for every weight, in the checkpoint's module
            order; the layout kinds are keys of the converter's `LAYOUTS`.
        skipped_keys: `(classifier, expected_tensors)` -> `{checkpoint key:
            reason}`: keys accepted but not loaded.
        build_target: `(preset, init_attention, num_classes, kd)` ->
            `(preset built, classifier)`: the random-initialised classifier
            the checkpoint is loaded into, with the checkpoint's class count
            (`None`: the preset's) and KD head; `init_attention` picks the
            built-in sibling of that attention, or overrides it.
        size_hint: the presets to pick, shown when a checkpoint does not fit
            (`"sdt_{L}_{D}_imagenet"`).
        describe_checkpoint: state_dict -> its size as its keys imply, for
            error messages (`"L=8, D=512, K=1000"`).
        describe_model: classifier -> its size in the same terms.
        report_size: classifier -> the conversion report's size entries
            (`{"num_layers": 8, "hidden_dim": 512}`).

    Example:

    ```python
    register_family(ModelFamily(
        name="tiny", ...,
        checkpoint=CheckpointFormat(
            name="tiny_torch", key_prefixes=("stem.",), expected_tensors=tensors_of,
            skipped_keys=lambda classifier, expected: batch_norm_counters(expected),
            build_target=build_target, size_hint="tiny_{W}_digits",
            describe_checkpoint=describe_state_dict, describe_model=describe_model,
            report_size=lambda classifier: {"width": classifier.backbone.width})))
    ```
    """

    name: str
    key_prefixes: tuple
    expected_tensors: Callable
    skipped_keys: Callable
    build_target: Callable
    size_hint: str
    describe_checkpoint: Callable
    describe_model: Callable
    report_size: Callable


def batch_norm_counters(expected):
    """`{key: reason}` for the `num_batches_tracked` of every BatchNorm in
    `expected` (a key map): PyTorch's step counter, which Keras has not.

    Example:

    ```python
    batch_norm_counters({"bn.running_mean": (variable, "vector")})
    # {"bn.num_batches_tracked": "BatchNorm step counter; ..."}
    ```
    """
    return {
        f"{key[: -len('.running_mean')]}.num_batches_tracked": (
            "BatchNorm step counter; Keras BatchNormalization has none and "
            "inference does not use it"
        )
        for key in expected
        if key.endswith(".running_mean")
    }


def attention_target(preset, attention, presets, prefixes):
    """`(preset, overrides)` that build built-in `preset` with `attention`:
    its sibling of that attention by the name prefixes `prefixes`
    (`attention -> (prefix of preset, prefix of the sibling)`) where
    `presets` has it, else `preset` with an `attention` override; `preset`
    itself for `attention=None` or its own.

    Example:

    ```python
    attention_target("sdt_8_512_imagenet", "a2os2a", PRESETS, {"a2os2a": ("sdt_", "st_")})
    # ("st_8_512_imagenet", {})
    ```
    """
    if not attention or presets[preset]["attention"] == attention:
        return preset, {}
    old, new = prefixes.get(attention, ("", ""))
    sibling = new + preset[len(old):] if old and preset.startswith(old) else None
    if sibling in presets and presets[sibling]["attention"] == attention:
        return sibling, {}
    return preset, {"attention": attention}
