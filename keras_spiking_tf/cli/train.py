r"""`kst-train`: train a preset of any model family. With no flags: the offline main job.

    kst-train                                   # st_2_64_digits on digits
    kst-train --preset st_2_64_digits --init_weights --dataset imagefolder:my_images
                                                # fine-tune on your own images
    kst-train --preset st_2_256_cifar10 --dataset cifar10 \
        --data_dir ~/tensorflow_datasets --output_dir runs/c10
    kst-train --preset st_2_256_cifar10 --dataset cifar10 \
        --data_dir ~/tensorflow_datasets --output_dir runs/c10 --resume  # continue
    kst-train --preset sdt_v2_8_384_imagenet --dataset imagenet2012 \
        --data_dir /data/tfds --recipe meta_spikeformer_finetune   # Meta-SpikeFormer

(`python tools/train.py` in a checkout is the same program.) Without
--output_dir every run writes to a fresh `runs/<preset>-<date>-<time>/`;
`--resume` without --output_dir continues the newest unfinished one. See
`keras_spiking_tf/training/trainer.py` for what is written where.
"""

import dataclasses

from absl import flags

from keras_spiking_tf.cli import tool
from keras_spiking_tf.training.datasets import DATASET_NAMES
from keras_spiking_tf.training.distribution import STRATEGIES
from keras_spiking_tf.training.trainer import TrainConfig
from keras_spiking_tf.training.trainer import run_training

DEFAULTS = TrainConfig()
flags.DEFINE_string("preset", DEFAULTS.preset, "Preset name or preset directory.")
flags.DEFINE_string("dataset", DEFAULTS.dataset, " | ".join(DATASET_NAMES))
flags.DEFINE_string("data_dir", None, "TFDS data directory (imagenet2012: holds manual/).")
flags.DEFINE_string(
    "recipe", None,
    "Recipe name (digits, cifar, imagenet, finetune, meta_spikeformer_finetune, or an "
    "event recipe) or JSON path "
    "(default: finetune for image folders and --init_weights, else the data set's own).",
)
flags.DEFINE_integer("epochs", None, "Total epochs, >= 1 (default: the recipe's).", lower_bound=1)
flags.DEFINE_integer(
    "batch_size", None, "Global batch size, >= 1 (default: the recipe's).", lower_bound=1
)
flags.DEFINE_enum("strategy", DEFAULTS.strategy, list(STRATEGIES), "Distribution strategy.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_string(
    "mixed_precision",
    DEFAULTS.mixed_precision,
    "Dtype policy: float32, mixed_bfloat16, mixed_float16, or auto (the recipe's, "
    "else the fastest on this machine: mixed_bfloat16 where bfloat16 is native).",
)
flags.DEFINE_string(
    "output_dir", None,
    "Where checkpoints, logs and presets go (default: a fresh runs/<preset>-<date>-<time>).",
)
flags.DEFINE_bool(
    "resume", False,
    "Continue the run in --output_dir (default: the newest unfinished run of --preset) "
    "from its newest checkpoint; repeat the run's other flags.",
)
flags.DEFINE_integer("seed", DEFAULTS.seed, "Random seed.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA compilation.")
flags.DEFINE_integer("time_steps", None, "Override the preset's T (>= 1).", lower_bound=1)
flags.DEFINE_string(
    "attention", None, "Override the attention, one of the registered ones (a2os2a, sdsa, ssa)."
)
flags.DEFINE_bool("init_weights", False, "Start from the preset's weights (fine-tune).")
flags.DEFINE_integer(
    "image_channels", None,
    "Channels the model takes: 1 (grayscale) or 3 (RGB); default the preset's. Images are "
    "converted to it; with --init_weights the first convolution is adapted.",
)
flags.DEFINE_bool(
    "skip_bad_images", False,
    "Image folders: leave unreadable image files out (named in summary.json) instead of "
    "refusing the run.",
)
flags.DEFINE_integer(
    "checkpoint_every", None,
    "Also checkpoint every N >= 1 steps (default: at epoch ends only).", lower_bound=1,
)
flags.DEFINE_float(
    "validation_fraction", None,
    "Part of the training split held out to select the best epoch (default 0.1; "
    "imagenet2012 0.01).",
    lower_bound=0.0, upper_bound=1.0,
)
FLAGS = flags.FLAGS


def _main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    # Every TrainConfig field is a flag of the same name.
    values = {field.name: getattr(FLAGS, field.name) for field in dataclasses.fields(TrainConfig)}
    values["jit_compile"] = {"auto": "auto", "true": True, "false": False}[FLAGS.jit_compile]
    values["verbose"] = min(FLAGS.verbose, 1)  # Keras' progress bars; 2 adds library logs
    TrainConfig.check_fields(values, as_flags=True)  # messages name the flags
    _, summary = run_training(TrainConfig(**values), announce=print)
    best = summary["best_test_accuracy"]
    print(
        f"test accuracy {summary['test_accuracy']:.4f} (final model; selected epoch "
        f"{summary['best_epoch']}: validation {summary['best_val_accuracy']:.4f}"
        + (f", test {best:.4f}" if best is not None else "")
        + f") after {summary['epochs']} epochs ({summary['train_seconds']:.0f} s of training); "
        f"presets in {summary['output_dir']} (final_preset, best_preset), summary.json there"
    )


def main():
    tool.run(_main)


if __name__ == "__main__":
    main()
