"""Firing rates, energy estimate and addition-only audit of a preset: `kst-analyze`, run from a checkout.

    python tools/analyze.py --help                # every flag

The program lives in `keras_spiking_tf/cli/analyze.py` (install the package
first: `pip install .`).
"""

from keras_spiking_tf.cli.analyze import main

if __name__ == "__main__":
    main()
