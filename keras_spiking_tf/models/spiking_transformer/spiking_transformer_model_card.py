"""What the model card of a Spiking Transformer preset says about its
architecture (the rest of the card is every family's: `models/model_card.py`).

Example:

```python
model_card_rows(keras_spiking_tf.from_preset("st_2_64_digits").backbone)
```
"""

ATTENTION_DESCRIPTIONS = {
    "a2os2a": "A2OS2A (Guo et al., CVPR 2025): binary Q, ReLU K, ternary V, no softmax, "
              "no scaling; addition-only",
    "sdsa": "SDSA (the Spike-driven Transformer's, Yao et al., NeurIPS 2023): binary Q, K, V, "
            "channel-wise",
    "ssa": "SSA (Spikformer's, Zhou et al., ICLR 2023): binary Q, K, V, scaled by 0.125",
}


def model_card_rows(backbone):
    """The model card's `architecture` and `attention` rows of `backbone`."""
    return [
        ("architecture", f"Spiking Transformer (SDT layout), {backbone.num_layers} encoder blocks "
                         f"of width {backbone.hidden_dim}, {backbone.num_heads} heads, MLP ratio "
                         f"{backbone.mlp_ratio}; patch splitting with pooling "
                         f"\"{backbone.pooling}\", {backbone.num_tokens} tokens"),
        ("attention", ATTENTION_DESCRIPTIONS.get(backbone.attention, backbone.attention)),
    ]


def model_card_notes(name):
    """What a built-in preset's shipped card adds: the paper's accuracy
    for a preset without weights, and how to get them."""
    from keras_spiking_tf.models.spiking_transformer.spiking_transformer_presets import PRESETS

    entry = PRESETS[name]
    if entry["weights"] or entry["paper_accuracy"] is None:
        return ""
    return (
        f"\nNo weights are published for this preset; the paper reports "
        f"{entry['paper_accuracy']:.2f} % top-1 for this size. Train it with "
        f"`kst-train --preset {name}`.\n"
    )
