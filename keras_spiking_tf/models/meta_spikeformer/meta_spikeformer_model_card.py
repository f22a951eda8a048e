"""What the model card of a Meta-SpikeFormer preset says about its
architecture, and what a built-in preset's shipped card adds (SPEC §10);
the rest of the card is every family's (`models/model_card.py`).

Example:

```python
model_card_notes("sdt_v2_8_512_imagenet")
```
"""

from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_presets import PRESETS

ATTENTION_DESCRIPTIONS = {
    "ssa": "the official Meta-SpikeFormer attention (Yao et al., ICLR 2024): RepConv Q, K, V, "
           "binary spikes, per head Q (Kᵀ V) scaled by 0.125, attention LIF at threshold 0.5",
    "a2os2a": "A2OS2A (Guo et al., CVPR 2025) in place of the official attention: binary Q, "
              "ReLU K, ternary V, Q (Kᵀ V) without scaling; addition-only, same parameters",
}


def model_card_rows(backbone):
    """The model card's `architecture` and `attention` rows of `backbone`."""
    return [
        ("architecture", (
            f"Meta-SpikeFormer (Spike-Driven Transformer V2), stage widths "
            f"{list(backbone.embed_dims)}, blocks per stage {list(backbone.num_blocks)} "
            f"(two convolution stages, then two transformer stages), {backbone.num_heads} "
            f"heads, MLP ratio {backbone.mlp_ratio}; {backbone.num_tokens} tokens"
        )),
        ("attention", ATTENTION_DESCRIPTIONS.get(backbone.attention, backbone.attention)),
    ]


def model_card_notes(name):
    """A built-in preset's card notes: both parameter counts, which
    attention it has, how to convert the official checkpoint, and the
    distillation head's inference output."""
    entry = PRESETS[name]
    official = name.replace("st_v2_", "sdt_v2_")
    accuracy = PRESETS[official]["paper_accuracy"]
    reported = (f" The paper reports {accuracy:.1f} % top-1 for `{official}` (T = 4)."
                if accuracy is not None else "")
    which = (
        "`sdt_v2_*` presets are the official architecture (its attention, `\"ssa\"`)."
        if entry["attention"] == "ssa"
        else f"`st_v2_*` presets put A2OS2A in the official architecture in place of its "
             f"attention (same parameters as `{official}`; no paper reports it)."
    )
    return f"""
## About this preset

{which} It has {entry['params']:,} trainable parameters with the
knowledge-distillation head `head_kd` and {entry['params_without_kd']:,} without it
(`from_preset("{name}", kd=False)`). With `kd`, the model's output is the
official inference output `(head + head_kd) / 2` (each averaged over T);
`model.head_outputs_model()` returns the two heads' logits separately.

No Keras weights are published for this preset.{reported} Convert the
official checkpoint (the released `55M_kd.pth` is the 8-512 size):

```shell
kst-convert-sdt --checkpoint 55M_kd.pth --preset {official} --output_dir {official}_converted
```

(with `--init_attention a2os2a`, the converted preset is
`{name.replace('sdt_v2_', 'st_v2_')}` started from the official weights, for fine-tuning).
"""
