"""The official Meta-SpikeFormer checkpoint's keys (SPEC §10) -> this
family's Keras weights, with the layout each tensor needs.

The official `Spiking_vit_MetaFormer` names its modules `downsample1_1`,
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

Layouts (PyTorch -> Keras): conv `(O, I, kh, kw) -> (kh, kw, I, O)`,
depthwise `(C, 1, k, k) -> (k, k, C, 1)`, Conv1d `(O, I, 1) -> Dense (I, O)`,
Linear `(O, I) -> (I, O)`; BN weight/bias/running_mean/running_var ->
gamma/beta/moving_mean/moving_variance. Every BN's `num_batches_tracked`
is skipped (a training counter). The A2OS2A variant has the same keys.

Example:

```python
tensors = checkpoint_tensors(model)
variable, layout = tensors["block3.0.attn.q_conv.0.body.2.0.weight"]
layout   # "depthwise"
```
"""

import numpy as np

from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_block import MSBlock
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_conv_block import MSConvBlock
from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_conv_block import MSDownsampling

BN_TENSORS = (
    ("weight", "gamma"),
    ("bias", "beta"),
    ("running_mean", "moving_mean"),
    ("running_var", "moving_variance"),
)
# Layout name -> (PyTorch layout, Keras layout), for error messages.
LAYOUTS = {
    "conv": ("Conv2d (O, I, kh, kw)", "Conv2D (kh, kw, I, O)"),
    "depthwise": ("depthwise Conv2d (C, 1, k, k)", "DepthwiseConv2D (k, k, C, 1)"),
    "conv1d": ("Conv1d (O, I, 1)", "Dense (I, O)"),
    "linear": ("Linear (O, I)", "Dense (I, O)"),
    "vector": ("1-D", "1-D"),
}
# The Keras stage-layer name pattern -> the official module name.
_CONV_STAGES = (("conv_block1_1_", "ConvBlock1_1."), ("conv_block1_2_", "ConvBlock1_2."))
_STAGE2 = {"conv_block2_0": "ConvBlock2_1.0", "conv_block2_1": "ConvBlock2_2.0"}
# RepConv's convolutions after its BNAndPadLayer: attribute, official name, layout.
_REP_CONV_TAIL = (("depthwise", "0.body.2.0", "depthwise"), ("pointwise", "0.body.2.1", "conv"))


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
        A dict; the layouts are the keys of `LAYOUTS`.

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


def torch_shape(layout, keras_shape):
    """The PyTorch shape whose `to_keras_layout` has `keras_shape`."""
    if layout == "conv":
        height, width, channels_in, channels_out = keras_shape
        return (channels_out, channels_in, height, width)
    if layout == "depthwise":
        height, width, channels, multiplier = keras_shape
        return (channels * multiplier, 1, height, width)
    if layout == "conv1d":
        return (keras_shape[1], keras_shape[0], 1)
    if layout == "linear":
        return (keras_shape[1], keras_shape[0])
    return tuple(keras_shape)


def to_keras_layout(layout, array):
    """A NumPy array in PyTorch layout -> the Keras weight's layout."""
    if layout == "conv":
        return np.transpose(array, (2, 3, 1, 0))
    if layout == "depthwise":
        return np.transpose(array, (2, 3, 0, 1))
    if layout == "conv1d":
        return np.transpose(array[:, :, 0])
    if layout == "linear":
        return np.transpose(array)
    return array
