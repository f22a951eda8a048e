"""SDT's PyTorch checkpoint keys (design.md §5) -> this family's Keras
weights, and the classifier a checkpoint is loaded into: the family's
`CHECKPOINT_FORMAT` (`ModelFamily.checkpoint`), read by `kst-convert-sdt`.

SDT (Yao et al., NeurIPS 2023) publishes ImageNet checkpoints (T=4) for the
sizes 8-384, 6-512, 8-512, 10-512 and 8-768. Their weights map one to one
onto the `sdt_{L}_{D}_imagenet` presets (SDSA attention), and, since A2OS2A
adds no parameters, onto the `st_{L}_{D}_imagenet` presets as a starting
point for fine-tuning (design.md §5):

    patch_embed.proj_conv{,1,2,3}.weight  [O, I, 3, 3] -> Conv2D kernel HWIO
    patch_embed.rpe_conv.weight           [D, D, 3, 3] -> Conv2D kernel HWIO
    block.{i}.attn.{q,k,v}_conv.weight    [D, D, 1, 1] -> Dense kernel (D, D)
    block.{i}.attn.proj_conv.{weight,bias}             -> Dense kernel, bias
    block.{i}.mlp.fc{1,2}_conv.{weight,bias}           -> Dense kernel, bias
    *_bn.{weight,bias,running_mean,running_var}
        -> BatchNormalization gamma, beta, moving_mean, moving_variance
    head.weight [K, D], head.bias [K]                  -> Dense "head"

Skipped on purpose: every BN's `num_batches_tracked` (a training counter;
Keras BN has no equivalent and inference does not use it) and SDT's unused
`block.{i}.attn.talking_heads.weight`. The A2OS2A and SSA variants have the
same keys.

Example:

```python
tensors = checkpoint_tensors(model)
variable, layout = tensors["block.0.attn.q_conv.weight"]
layout   # "conv1x1"
```
"""

import re

from keras_spiking_tf.models.checkpoint_format import BN_TENSORS
from keras_spiking_tf.models.checkpoint_format import CheckpointFormat
from keras_spiking_tf.models.checkpoint_format import attention_target
from keras_spiking_tf.models.checkpoint_format import batch_norm_counters
from keras_spiking_tf.models.model_family import dataset_of
from keras_spiking_tf.models.spiking_image_classifier import from_preset
from keras_spiking_tf.models.spiking_transformer.spiking_transformer_presets import PRESETS

# The suffixes of SPS's four stage convolutions and BNs.
SPS_SUFFIXES = ("", "1", "2", "3")
# init_attention -> (the prefix of a built-in preset, its sibling's prefix).
_SIBLINGS = {"a2os2a": ("sdt_", "st_"), "sdsa": ("st_", "sdt_")}


def checkpoint_tensors(classifier):
    """SDT key -> `(Keras variable, layout kind)` for every weight of a
    `SpikingTransformerImageClassifier`, in SDT's module order.

    Args:
        classifier: a `SpikingTransformerImageClassifier` (any attention;
            the keys are the same).

    Returns:
        A dict; the layout kinds are keys of the converter's `LAYOUTS`.

    Example:

    ```python
    list(checkpoint_tensors(model))[:2]
    # ['patch_embed.proj_conv.weight', 'patch_embed.proj_bn.weight']
    ```
    """
    backbone = classifier.backbone
    expected = {}

    def add_conv(prefix, layer, kind):
        expected[f"{prefix}.weight"] = (layer.kernel, kind)
        if layer.use_bias:
            expected[f"{prefix}.bias"] = (layer.bias, "vector")

    def add_bn(prefix, layer):
        for torch_name, keras_name in BN_TENSORS:
            expected[f"{prefix}.{torch_name}"] = (getattr(layer, keras_name), "vector")

    patch_embed = backbone.patch_embed
    for suffix, conv, bn in zip(
        SPS_SUFFIXES, patch_embed.stage_convs, patch_embed.stage_bns
    ):
        add_conv(f"patch_embed.proj_conv{suffix}", conv, "conv")
        add_bn(f"patch_embed.proj_bn{suffix}", bn)
    add_conv("patch_embed.rpe_conv", patch_embed.rpe_conv, "conv")
    add_bn("patch_embed.rpe_bn", patch_embed.rpe_bn)
    for index, block in enumerate(backbone.blocks):
        sublayers = (("attn", ("q", "k", "v", "proj")), ("mlp", ("fc1", "fc2")))
        for module, names in sublayers:
            layer = getattr(block, module)
            for name in names:
                prefix = f"block.{index}.{module}.{name}"
                add_conv(f"{prefix}_conv", getattr(layer, f"{name}_conv"), "conv1x1")
                add_bn(f"{prefix}_bn", getattr(layer, f"{name}_bn"))
    add_conv("head", classifier.output_dense, "linear")
    return expected


def skipped_keys(classifier, expected):
    """Keys accepted but not loaded, with the reason: every BN's step
    counter and each block's unused talking-heads conv."""
    skipped = batch_norm_counters(expected)
    for index in range(classifier.backbone.num_layers):
        skipped[f"block.{index}.attn.talking_heads.weight"] = (
            "SDT's talking_heads conv is never used in its forward pass"
        )
    return skipped


def build_target(preset, init_attention, num_classes, kd):
    """The (random-initialised) classifier an SDT checkpoint is loaded into.

    Args:
        preset: a built-in name or a preset directory of this family.
        init_attention: `None` keeps the preset's attention; another one
            picks the built-in sibling with it (`sdt_8_512_imagenet` ->
            `st_8_512_imagenet` for `"a2os2a"`), else overrides it.
        num_classes: the checkpoint's class count (`None`: the preset's).
        kd: unused: SDT v1 has no KD head (a checkpoint's `head_kd` is
            refused as a key the model has no place for).

    Returns:
        `(the preset built, the classifier)`.

    Example:

    ```python
    build_target("sdt_8_512_imagenet", "a2os2a", 1000, False)[0]   # "st_8_512_imagenet"
    ```
    """
    if preset in PRESETS:
        preset, overrides = attention_target(preset, init_attention, PRESETS, _SIBLINGS)
        if num_classes is not None and num_classes != dataset_of(preset)["num_classes"]:
            overrides["num_classes"] = num_classes
        return preset, from_preset(preset, load_weights=False, **overrides)

    model = from_preset(preset, load_weights=False)
    overrides = {}
    if num_classes is not None and num_classes != model.num_classes:
        overrides["num_classes"] = num_classes
    if init_attention and model.backbone.attention != init_attention:
        overrides["attention"] = init_attention  # a backbone argument
    if overrides:
        model = from_preset(preset, load_weights=False, **overrides)
    return preset, model


def describe_checkpoint(state_dict):
    """`"L=…, D=…, K=…"` as an SDT state_dict's keys imply, for error
    messages."""
    blocks = {
        int(match.group(1))
        for key in state_dict
        if (match := re.match(r"block\.(\d+)\.", key))
    }
    parts = [f"L={len(blocks)}"]
    if "patch_embed.proj_conv3.weight" in state_dict:
        parts.append(f"D={tuple(state_dict['patch_embed.proj_conv3.weight'].shape)[0]}")
    if "head.weight" in state_dict:
        parts.append(f"K={tuple(state_dict['head.weight'].shape)[0]}")
    return ", ".join(parts)


def describe_model(classifier):
    """`"L=…, D=…, K=…"` of a classifier, for error messages."""
    backbone = classifier.backbone
    return f"L={backbone.num_layers}, D={backbone.hidden_dim}, K={classifier.num_classes}"


CHECKPOINT_FORMAT = CheckpointFormat(
    name="sdt",
    key_prefixes=("patch_embed.", "block."),
    expected_tensors=checkpoint_tensors,
    skipped_keys=skipped_keys,
    build_target=build_target,
    size_hint="sdt_{L}_{D}_imagenet",
    describe_checkpoint=describe_checkpoint,
    describe_model=describe_model,
    report_size=lambda classifier: {"num_layers": classifier.backbone.num_layers,
                                    "hidden_dim": classifier.backbone.hidden_dim},
)
