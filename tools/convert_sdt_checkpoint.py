"""Convert an SDT PyTorch checkpoint to a Keras preset: `kst-convert-sdt`, run from a checkout.

    python tools/convert_sdt_checkpoint.py --help                # every flag

The program lives in `keras_spiking_tf/cli/convert_sdt_checkpoint.py` (install the package
first: `pip install .`).
"""

from keras_spiking_tf.cli.convert_sdt_checkpoint import main

if __name__ == "__main__":
    main()
