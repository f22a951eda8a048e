"""Classify image files with a preset: `kst-predict`, run from a checkout.

    python tools/predict.py my_digit.png        # st_2_64_digits, top 5
    python tools/predict.py --help              # every flag

The program lives in `keras_spiking_tf/cli/predict.py` (install the package
first: `pip install .`).
"""

from keras_spiking_tf.cli.predict import main

if __name__ == "__main__":
    main()
