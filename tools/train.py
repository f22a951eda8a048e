"""Train a Spiking Transformer preset. With no flags: the offline main job.

    python tools/train.py                       # st_2_64_digits on digits
    python tools/train.py --preset st_2_256_cifar10 --dataset cifar10 \
        --data_dir ~/tensorflow_datasets --output_dir runs/c10
    python tools/train.py --preset st_2_256_cifar10 --dataset cifar10 \
        --data_dir ~/tensorflow_datasets --output_dir runs/c10 --resume  # continue

See `keras_spiking_tf/training/trainer.py` for what is written where.
"""

import sys

from absl import app
from absl import flags

from keras_spiking_tf.training.distribution import STRATEGIES
from keras_spiking_tf.training.trainer import TrainConfig
from keras_spiking_tf.training.trainer import train

DEFAULTS = TrainConfig()
flags.DEFINE_string("preset", DEFAULTS.preset, "Preset name or preset directory.")
flags.DEFINE_string(
    "dataset", DEFAULTS.dataset, "digits | cifar10 | cifar100 | imagenet2012 | imagefolder:PATH"
)
flags.DEFINE_string("data_dir", None, "TFDS data directory (imagenet2012: holds manual/).")
flags.DEFINE_string("recipe", None, "Recipe name (cifar, imagenet, digits) or JSON path.")
flags.DEFINE_integer("epochs", None, "Total epochs (default: the recipe's).")
flags.DEFINE_integer("batch_size", None, "Global batch size (default: the recipe's).")
flags.DEFINE_enum("strategy", DEFAULTS.strategy, list(STRATEGIES), "Distribution strategy.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_string(
    "mixed_precision",
    DEFAULTS.mixed_precision,
    "Dtype policy: float32, mixed_bfloat16, mixed_float16, or auto (the recipe's, "
    "else the fastest on this machine: mixed_bfloat16 where bfloat16 is native).",
)
flags.DEFINE_string("output_dir", DEFAULTS.output_dir, "Where checkpoints, logs and presets go.")
flags.DEFINE_bool(
    "resume", False, "Continue from the newest checkpoint in --output_dir (repeat the run's flags)."
)
flags.DEFINE_integer("seed", DEFAULTS.seed, "Random seed.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA compilation.")
flags.DEFINE_integer("time_steps", None, "Override the preset's T.")
flags.DEFINE_string("attention", None, "Override the attention: a2os2a | sdsa | ssa.")
flags.DEFINE_bool("init_weights", False, "Start from the preset's weights (fine-tune).")
flags.DEFINE_integer("checkpoint_every", 0, "Also checkpoint every N steps (0: epoch ends).")
flags.DEFINE_integer("verbose", 1, "1: progress bars; 0: quiet.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    jit = {"auto": "auto", "true": True, "false": False}[FLAGS.jit_compile]
    summary = train(
        TrainConfig(
            preset=FLAGS.preset,
            dataset=FLAGS.dataset,
            data_dir=FLAGS.data_dir,
            recipe=FLAGS.recipe,
            epochs=FLAGS.epochs,
            batch_size=FLAGS.batch_size,
            strategy=FLAGS.strategy,
            tpu=FLAGS.tpu,
            mixed_precision=FLAGS.mixed_precision,
            output_dir=FLAGS.output_dir,
            resume=FLAGS.resume,
            seed=FLAGS.seed,
            jit_compile=jit,
            time_steps=FLAGS.time_steps,
            attention=FLAGS.attention,
            init_weights=FLAGS.init_weights,
            checkpoint_every=FLAGS.checkpoint_every,
            verbose=FLAGS.verbose,
        )
    )
    print(
        f"test accuracy {summary['test_accuracy']:.4f} after {summary['epochs']} epochs "
        f"({summary['train_seconds']:.0f} s); preset saved to {summary['preset_dir']}"
    )


if __name__ == "__main__":
    sys.exit(app.run(main))
