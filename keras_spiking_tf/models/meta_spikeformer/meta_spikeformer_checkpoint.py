"""The official Meta-SpikeFormer checkpoint's keys (SPEC §10) -> this
family's Keras weights, with the layout each tensor needs, and the
classifier a checkpoint is loaded into: the family's `CHECKPOINT_FORMAT`
(`ModelFamily.checkpoint`), read by `kst-convert-sdt`.

The official checkpoint `{"model": state_dict, "optimizer", "epoch",
"scaler", "args"}` converts into the `sdt_v2_{L}_{D}_imagenet` presets
(and, for fine-tuning, the `st_v2_*` ones). The official
`Spiking_vit_MetaFormer` names its modules `downsample1_1`,
`ConvBlock1_1.{i}`, `ConvBlock1_2.{i}`, `downsample2`, `ConvBlock2_1.0`,
`ConvBlock2_2.0`, `downsample3`, `block3.{i}`, `downsample4`, `block4.{i}`,
`head`, `head_kd`; inside them:

    MS_DownSampling  encode_conv (bias), encode_bn
    MS_ConvBlock     Conv.pwconv1, Conv.bn1, Conv.dwconv, Conv.pwconv2, Conv.bn2
                     (the SepConv), conv1, bn1, conv2, bn2
    MS_Block         attn.{q,k,v,proj}_conv.0.body.0     RepConv's 1x1 conv
                     attn.{q,k,v,proj}_conv.0.body.1.bn  its BNAndPadLayer
                     attn.{q,k,v,proj}_conv.0.body.2.0   its depthwise 3x3
                     attn.{q,k,v,proj}_conv.0.body.2.1   its 1x1 conv
                     attn.{q,k,v,proj}_conv.0.body.2.2   its BN
                     attn.{q,k,v,proj}_conv.1            the BN after RepConv
                     mlp.fc{1,2}_conv (Conv1d, bias), mlp.fc{1,2}_bn

Layouts (PyTorch -> Keras, the converter's `LAYOUTS`): conv
`(O, I, kh, kw) -> (kh, kw, I, O)`, depthwise `(C, 1, k, k) -> (k, k, C, 1)`,
Conv1d `(O, I, 1) -> Dense (I, O)`, Linear `(O, I) -> (I, O)`; BN
weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance.
Every BN's `num_batches_tracked` is skipped (a training counter). The
A2OS2A variant has the same keys.

Example:

```python
tensors = checkpoint_tensors(model)
variable, layout = tensors["block3.0.attn.q_conv.0.body.2.0.weight"]
layout   # "depthwise"
```
"""

import re

from keras_spiking_tf.models.checkpoint_format import BN_TENSORS
from keras_spiking_tf.models.checkpoint_format import CheckpointFormat
from keras_spiking_tf.models.checkpoint_format import attention_target
from keras_spiking_tf.models.checkpoint_format import batch_norm_counters
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_backbone import (
    MetaSpikeFormerBackbone,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_block import MSBlock
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_conv_block import MSConvBlock
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_conv_block import MSDownsampling
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_image_classifier import (
    MetaSpikeFormerImageClassifier,
)
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_presets import PRESETS

# The Keras stage-layer name pattern -> the official module name.
_CONV_STAGES = (("conv_block1_1_", "ConvBlock1_1."), ("conv_block1_2_", "ConvBlock1_2."))
_STAGE2 = {"conv_block2_0": "ConvBlock2_1.0", "conv_block2_1": "ConvBlock2_2.0"}
# RepConv's convolutions after its BNAndPadLayer: attribute, official name, layout.
_REP_CONV_TAIL = (("depthwise", "0.body.2.0", "depthwise"), ("pointwise", "0.body.2.1", "conv"))
# init_attention -> (the prefix of a built-in preset, its sibling's prefix).
_SIBLINGS = {"a2os2a": ("sdt_v2_", "st_v2_"), "ssa": ("st_v2_", "sdt_v2_")}


def official_module_name(layer_name):
    """The official module name of one of the backbone's stage layers
    (`conv_block2_1` -> `ConvBlock2_2.0`, `block3_4` -> `block3.4`)."""
    if layer_name in _STAGE2:
        return _STAGE2[layer_name]
    for prefix, official in _CONV_STAGES + (("block3_", "block3."), ("block4_", "block4.")):
        if layer_name.startswith(prefix) and layer_name[len(prefix):].isdigit():
            return official + layer_name[len(prefix):]
    if layer_name.startswith("downsample"):
        return layer_name
    raise ValueError(f"'{layer_name}' is no Meta-SpikeFormer stage layer.")


def checkpoint_tensors(classifier):
    """Official key -> `(Keras variable, layout)` for every weight of a
    `MetaSpikeFormerImageClassifier`, in the official module order.

    Args:
        classifier: a `MetaSpikeFormerImageClassifier` (either attention).

    Returns:
        A dict; the layouts are keys of the converter's `LAYOUTS`.

    Example:

    ```python
    sorted(checkpoint_tensors(model))[:2]
    # ['ConvBlock1_1.0.Conv.bn1.bias', 'ConvBlock1_1.0.Conv.bn1.running_mean']
    ```
    """
    tensors = {}

    def conv(key, layer, layout="conv"):
        tensors[f"{key}.weight"] = (layer.kernel, layout)
        if getattr(layer, "use_bias", False):
            tensors[f"{key}.bias"] = (layer.bias, "vector")

    def bn(key, layer):
        for torch_name, keras_name in BN_TENSORS:
            tensors[f"{key}.{torch_name}"] = (getattr(layer, keras_name), "vector")

    for stage in classifier.backbone.layers:
        if not isinstance(stage, (MSDownsampling, MSConvBlock, MSBlock)):
            continue
        key = official_module_name(stage.name)
        if isinstance(stage, MSDownsampling):
            conv(f"{key}.encode_conv", stage.encode_conv)
            bn(f"{key}.encode_bn", stage.encode_bn)
        elif isinstance(stage, MSConvBlock):
            sep = stage.sep_conv
            conv(f"{key}.Conv.pwconv1", sep.pwconv1)
            bn(f"{key}.Conv.bn1", sep.bn1)
            conv(f"{key}.Conv.dwconv", sep.dwconv, "depthwise")
            conv(f"{key}.Conv.pwconv2", sep.pwconv2)
            bn(f"{key}.Conv.bn2", sep.bn2)
            for index in (1, 2):
                conv(f"{key}.conv{index}", getattr(stage, f"conv{index}"))
                bn(f"{key}.bn{index}", getattr(stage, f"bn{index}"))
        else:
            for name in ("q", "k", "v", "proj"):
                rep_conv = getattr(stage.attn, f"{name}_conv")
                prefix = f"{key}.attn.{name}_conv"
                conv(f"{prefix}.0.body.0", rep_conv.conv1x1)
                bn(f"{prefix}.0.body.1.bn", rep_conv.bn_pad)
                for attribute, official, layout in _REP_CONV_TAIL:
                    conv(f"{prefix}.{official}", getattr(rep_conv, attribute), layout)
                bn(f"{prefix}.0.body.2.2", rep_conv.bn)
                bn(f"{prefix}.1", getattr(stage.attn, f"{name}_bn"))
            for name in ("fc1", "fc2"):
                conv(f"{key}.mlp.{name}_conv", getattr(stage.mlp, f"{name}_conv"), "conv1d")
                bn(f"{key}.mlp.{name}_bn", getattr(stage.mlp, f"{name}_bn"))
    conv("head", classifier.output_dense, "linear")
    if classifier.kd:
        conv("head_kd", classifier.kd_dense, "linear")
    return tensors


def build_target(preset, init_attention, num_classes, kd):
    """The (random-initialised) Meta-SpikeFormer classifier a V2 checkpoint
    is loaded into: the preset's architecture with the checkpoint's class
    count and KD head.

    Args:
        preset: a built-in name or a preset directory of this family.
        init_attention: `None` keeps the preset's attention; another one
            picks the built-in sibling with it (`sdt_v2_*` -> `st_v2_*` for
            `"a2os2a"`, back for `"ssa"`), else overrides it.
        num_classes: the checkpoint's class count (`None`: the preset's).
        kd: whether the checkpoint has the KD head (`head_kd`).

    Returns:
        `(the preset built, the classifier)`.

    Example:

    ```python
    build_target("sdt_v2_8_512_imagenet", "a2os2a", 1000, True)[0]   # "st_v2_8_512_imagenet"
    ```
    """
    if preset in PRESETS:
        preset, overrides = attention_target(preset, init_attention, PRESETS, _SIBLINGS)
        return preset, MetaSpikeFormerImageClassifier.from_preset(
            preset, load_weights=False, num_classes=num_classes, kd=kd, **overrides)
    model = MetaSpikeFormerImageClassifier.from_preset(preset, load_weights=False)
    attention = init_attention or model.backbone.attention
    num_classes = model.num_classes if num_classes is None else num_classes
    if (attention, num_classes, kd) != (model.backbone.attention, model.num_classes, model.kd):
        backbone = MetaSpikeFormerBackbone.from_config(
            {**model.backbone.get_config(), "attention": attention})
        model = MetaSpikeFormerImageClassifier(
            backbone, num_classes, kd=kd, preprocessor=model.preprocessor,
            activation=model.activation, head_dtype=model.head_dtype)
    return preset, model


def describe_checkpoint(state_dict):
    """The stage widths, transformer blocks, classes and KD head an official
    state_dict's keys imply, for error messages."""
    widths = []
    for stage in ("downsample1_2", "downsample2", "downsample3", "downsample4"):
        key = f"{stage}.encode_conv.weight"
        widths.append(tuple(state_dict[key].shape)[0] if key in state_dict else "?")
    parts = [f"widths {widths}"]
    for stage in ("block3", "block4"):
        indices = {match.group(1) for key in state_dict
                   if (match := re.match(rf"{stage}\.(\d+)\.", key))}
        parts.append(f"{len(indices)} {stage} blocks")
    if "head.weight" in state_dict:
        parts.append(f"K={tuple(state_dict['head.weight'].shape)[0]}")
    parts.append("KD head" if "head_kd.weight" in state_dict else "no KD head")
    return ", ".join(parts)


def describe_model(classifier):
    """A classifier's size in `describe_checkpoint`'s terms."""
    backbone = classifier.backbone
    return (
        f"widths {list(backbone.embed_dims)}, {backbone.num_blocks[3]} block3 blocks, "
        f"{backbone.num_blocks[4]} block4 blocks, K={classifier.num_classes}, "
        + ("KD head" if classifier.kd else "no KD head")
    )


CHECKPOINT_FORMAT = CheckpointFormat(
    name="sdt_v2",
    key_prefixes=("downsample", "ConvBlock", "block3.", "block4."),
    expected_tensors=checkpoint_tensors,
    skipped_keys=lambda classifier, expected: batch_norm_counters(expected),
    build_target=build_target,
    size_hint="sdt_v2_8_{C2}_imagenet, and kd=False for a checkpoint without head_kd",
    describe_checkpoint=describe_checkpoint,
    describe_model=describe_model,
    report_size=lambda classifier: {"embed_dims": list(classifier.backbone.embed_dims),
                                    "num_blocks": list(classifier.backbone.num_blocks),
                                    "kd": classifier.kd},
)
