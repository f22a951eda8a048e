"""Export a preset to LiteRT, ONNX or SavedModel, verified: `kst-export`, run from a checkout.

    python tools/export.py --help                # every flag

The program lives in `keras_spiking_tf/cli/export.py` (install the package
first: `pip install .`).
"""

from keras_spiking_tf.cli.export import main

if __name__ == "__main__":
    main()
