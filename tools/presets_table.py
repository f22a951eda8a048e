"""Print the "Presets" table of docs/guides/presets.md from the preset registry
(every registered model family's presets).

    python tools/presets_table.py > /tmp/table.md

tests/test_docs.py checks that docs/guides/presets.md contains exactly this table.
"""

import keras_spiking_tf


def architecture(meta):
    """The table's architecture column: blocks-width of a Spiking
    Transformer, blocks and stage widths of a Meta-SpikeFormer."""
    if meta["family"] == "meta_spikeformer":
        return f"{sum(meta['num_blocks'][3:])}-{'/'.join(str(d) for d in meta['embed_dims'])}"
    return f"{meta['num_layers']}-{meta['hidden_dim']}"


def presets_table():
    lines = [
        "| preset | attention | L-D | T | trainable params | dataset | paper top-1 (%) | weights |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, meta in keras_spiking_tf.list_presets().items():
        accuracy = "" if meta["paper_accuracy"] is None else f"{meta['paper_accuracy']:.2f}"
        lines.append(
            f"| `{name}` | {meta['attention']} | {architecture(meta)} | "
            f"{meta['time_steps']} | {meta['params']:,} | {meta['dataset']} | {accuracy} | "
            f"{'yes' if meta['weights_available'] else 'no'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(presets_table())
