r"""Write an example image folder, to try the image-folder path offline.

    python tools/make_example_folder.py --output_dir stripes              # grayscale
    python tools/make_example_folder.py --output_dir stripes_rgb --channels 3
    kst-train --preset st_2_64_digits --init_weights --dataset imagefolder:stripes

Two labels (horizontal and vertical stripes, with noise), 16x16 PNG files,
laid out as `imagefolder:PATH` reads them: `PATH/{train,test}/<label>/<image>`
(`keras_spiking_tf/training/example_images.py`).
"""

import os

from absl import flags

from keras_spiking_tf.cli import tool
from keras_spiking_tf.training.example_images import write_stripes_folder

flags.DEFINE_string("output_dir", None, "The folder to write (must not exist yet).")
flags.DEFINE_enum("channels", "1", ["1", "3"], "1: grayscale PNG files; 3: RGB.")
flags.DEFINE_integer("train_per_class", 30, "Training images per label, >= 2.", lower_bound=2)
flags.DEFINE_integer("test_per_class", 10, "Test images per label, >= 1.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.mark_flag_as_required("output_dir")
FLAGS = flags.FLAGS


def _main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    if os.path.exists(FLAGS.output_dir):
        raise FileExistsError(f"--output_dir '{FLAGS.output_dir}' exists already; choose a new one.")
    root = write_stripes_folder(FLAGS.output_dir, FLAGS.train_per_class, FLAGS.test_per_class,
                                channels=int(FLAGS.channels), seed=FLAGS.seed)
    print(f"Wrote {root}/train and {root}/test (labels horizontal, vertical); train on it with "
          f"kst-train --preset st_2_64_digits --init_weights --dataset imagefolder:{root}")


def main():
    tool.run(_main)


if __name__ == "__main__":
    main()
