r"""`kst-convert-sdt`: convert a Spike-driven Transformer (v1 or V2) checkpoint to a Keras preset.

    kst-convert-sdt --checkpoint 8_512.pth.tar \
        --preset sdt_8_512_imagenet --output_dir presets_local/sdt_8_512_imagenet
    # the same weights as the start of A2OS2A fine-tuning (st_8_512_imagenet):
    kst-convert-sdt --checkpoint 8_512.pth.tar \
        --preset sdt_8_512_imagenet --output_dir presets_local/st_8_512_init \
        --init_attention a2os2a
    # the official SDT V2 (Meta-SpikeFormer) checkpoint; the preset names the family:
    kst-convert-sdt --checkpoint 55M_kd.pth \
        --preset sdt_v2_8_512_imagenet --output_dir presets_local/sdt_v2_8_512_imagenet

(`python tools/convert_sdt_checkpoint.py` in a checkout is the same
program.) Needs PyTorch to read the file (pip install torch==2.13.0, CPU
wheel). The checkpoint is unpickled with `weights_only=True`: tensors and
SDT's `argparse.Namespace` arguments only; a file asking for anything else
is refused. Load the result with `keras_spiking_tf.from_preset("<output_dir>")`
(V2: `MetaSpikeFormerImageClassifier.from_preset("<output_dir>")`).
"""

from absl import flags

from keras_spiking_tf.cli import tool

flags.DEFINE_string("checkpoint", None, "SDT checkpoint file (.pth / .pth.tar).")
flags.DEFINE_string(
    "preset",
    None,
    "Target architecture: a built-in preset of the checkpoint's size "
    "(sdt_{L}_{D}_imagenet; SDT V2: sdt_v2_8_{C2}_imagenet) or a preset directory.",
)
flags.DEFINE_string("output_dir", None, "Preset directory to write.")
flags.DEFINE_string(
    "init_attention",
    None,
    "Load the SDT weights into a model with this attention instead of the "
    "preset's, one of the registered attentions (a2os2a: the st_* / st_v2_* model "
    "of the same size, for fine-tuning).",
)
flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir.")
flags.mark_flags_as_required(["checkpoint", "preset", "output_dir"])
FLAGS = flags.FLAGS


def _main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    from keras_spiking_tf.conversion import convert_sdt_checkpoint
    from keras_spiking_tf.conversion.sdt_checkpoint import check_conversion_arguments

    check_conversion_arguments(FLAGS.checkpoint, FLAGS.preset, FLAGS.output_dir,
                               FLAGS.init_attention, FLAGS.overwrite, as_flags=True)
    report = convert_sdt_checkpoint(
        FLAGS.checkpoint,
        FLAGS.preset,
        FLAGS.output_dir,
        init_attention=FLAGS.init_attention,
        overwrite=FLAGS.overwrite,
    )
    source = report["checkpoint"]
    details = [f"{k} {report[k]}" for k in ("arch", "epoch") if k in report]
    if details:
        source += f" ({', '.join(details)})"
    print(f"Read {source}.")
    heads = ", with the distillation head" if report.get("kd") else ""
    print(
        f"Built '{report['preset']}': {report['architecture']}; {report['attention']} "
        f"attention, {report['num_classes']} classes{heads}."
    )
    print(
        f"Converted {report['num_tensors']} tensors ({report['num_values']:,} values)."
    )
    if report["skipped"]:
        reasons = {}
        for key, reason in report["skipped"].items():
            reasons.setdefault(reason, []).append(key)
        for reason, keys in reasons.items():
            print(f"Skipped {len(keys)} tensor(s) ({reason}), e.g. {keys[0]}.")
    if report["attention"] == "a2os2a" and FLAGS.init_attention == "a2os2a":
        print(
            "Note: SDT weights in an A2OS2A model are a starting point for "
            "fine-tuning, not a trained A2OS2A model."
        )
    print(f"Wrote preset {report['output_dir']}")
    print(f"Load it with keras_spiking_tf.from_preset({report['output_dir']!r}).")
    return 0


def main():
    tool.run(_main)


if __name__ == "__main__":
    main()
