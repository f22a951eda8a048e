"""Train a preset of any model family: `kst-train`, run from a checkout.

    python tools/train.py                       # the offline main job
    python tools/train.py --help                # every flag

The program lives in `keras_spiking_tf/cli/train.py` (install the package
first: `pip install .`).
"""

from keras_spiking_tf.cli.train import main

if __name__ == "__main__":
    main()
