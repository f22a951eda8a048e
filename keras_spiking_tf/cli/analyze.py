r"""`kst-analyze`: firing rates, energy estimate and addition-only audit of a preset.

    kst-analyze --preset st_2_64_digits --dataset digits \
        --output_dir analysis/st_2_64_digits
    kst-analyze --preset st_8_512_imagenet --dataset random \
        --num_images 4 --output_dir analysis/st_8_512_imagenet

(`python tools/analyze.py` in a checkout is the same program.)

Writes `analysis.json` and three plots (`firing_rates.png`, `energy.png`,
`spike_raster.png`) into --output_dir. A preset without weights is analysed
at random initialisation with BatchNorm statistics calibrated on the images
(the numbers then describe an untrained network; say so when quoting them).
"""

import json
import os

import numpy as np
from absl import flags

import keras_spiking_tf
from keras_spiking_tf import validation
from keras_spiking_tf.atomic_directory import write_text_atomically
from keras_spiking_tf.cli import tool
from keras_spiking_tf.analysis import addition_only_audit
from keras_spiking_tf.analysis import calibrate_batch_norm
from keras_spiking_tf.analysis import energy_report
from keras_spiking_tf.analysis import firing_rates
from keras_spiking_tf.analysis import record_forward
from keras_spiking_tf.analysis.plots import plot_energy
from keras_spiking_tf.analysis.plots import plot_firing_rates
from keras_spiking_tf.analysis.plots import plot_spike_raster
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.models.model_family import weights_available
from keras_spiking_tf.training.datasets import load_dataset

flags.DEFINE_string("preset", "st_2_64_digits", "Preset name or directory.")
flags.DEFINE_string(
    "dataset", "digits", "Images to analyse: a tools/train.py data set, or 'random' (uniform noise)."
)
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_integer(
    "num_images", 32,
    "Images to average over (>= 1), analysed in one batch: lower it after an out-of-memory error.",
    lower_bound=1,
)
flags.DEFINE_string("raster_layer", "block_0/attn/shortcut_lif", "Neuron layer for the raster.")
flags.DEFINE_string("output_dir", "analysis", "Where analysis.json and the plots go.")
flags.DEFINE_integer("seed", 0, "Seed for random images and random initialisation.")
FLAGS = flags.FLAGS


MAX_SEED = 2**32 - 1  # NumPy's seeds


def check_flags():
    """Every flag's value (absl checked the types and bounds it knows),
    before anything is loaded or written; `--raster_layer` is checked
    against the model's neuron layers once it is built, before it runs."""
    from keras_spiking_tf.edge_export.export_utils import MAX_BATCH_SIZE
    from keras_spiking_tf.models.model_family import check_preset
    from keras_spiking_tf.training.datasets import check_data_dir
    from keras_spiking_tf.training.datasets import check_dataset_name

    check_preset("--preset", FLAGS.preset)
    if FLAGS.dataset != "random":
        check_dataset_name(FLAGS.dataset, "--dataset")
    check_data_dir("--data_dir", FLAGS.data_dir)
    validation.check_integer("--num_images", FLAGS.num_images, minimum=1,
                             maximum=MAX_BATCH_SIZE)
    validation.check_string("--raster_layer", FLAGS.raster_layer)
    validation.check_output_path("--output_dir", FLAGS.output_dir, kind="directory")
    validation.check_integer("--seed", FLAGS.seed, minimum=0, maximum=MAX_SEED)


def model_inputs(model, dataset, count, data_dir, seed):
    """`count` inputs of `model` (preprocessed images, or frame sequences):
    the data set's first test samples, or random ones."""
    backbone = model.backbone
    height, width, channels = backbone.image_shape
    frames = backbone.input_type == "frames"
    if dataset == "random":
        rng = np.random.default_rng(seed)
        if frames:  # sparse event counts
            return rng.poisson(0.3, (count, backbone.time_steps, height, width, channels)).astype("float32")
        images = rng.uniform(0, 255, (count, height, width, channels)).astype("float32")
    else:
        splits = load_dataset(dataset, data_dir, time_steps=backbone.time_steps)
        images = np.stack([x for x, _ in splits.test.take(count).as_numpy_iterator()]).astype("float32")
    return images if model.preprocessor is None else model.preprocessor(images)


def _main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    check_flags()
    import keras

    keras.utils.set_random_seed(FLAGS.seed)
    trained = weights_available(FLAGS.preset)
    model = keras_spiking_tf.from_preset(FLAGS.preset, load_weights=trained)
    neurons = [layer.path for layer in model._flatten_layers(include_self=False)
               if isinstance(layer, LIF)]
    validation.check_choice("--raster_layer", FLAGS.raster_layer, sorted(neurons),
                            what="neuron layer")
    images = model_inputs(model, FLAGS.dataset, FLAGS.num_images, FLAGS.data_dir, FLAGS.seed)
    if not trained:
        calibrate_batch_norm(model, images)
    rates = firing_rates(model, images)
    report = energy_report(model, images)
    audit = addition_only_audit(model, images)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    result = {
        "preset": FLAGS.preset,
        "dataset": FLAGS.dataset,
        "num_images": FLAGS.num_images,
        "weights": "trained" if trained else "random init, BN calibrated on the images",
        "firing_rates": rates,
        "energy": {"rows": report.rows, "macs": report.macs, "sops": report.sops,
                   "energy_mj": report.energy_mj, "time_steps": report.time_steps},
        "multiplications": [a["layer"] for a in audit if a["needs_multiplication"]],
        "audit": audit,
    }
    write_text_atomically(os.path.join(FLAGS.output_dir, "analysis.json"), json.dumps(result, indent=2))
    plot_firing_rates(rates, os.path.join(FLAGS.output_dir, "firing_rates.png"))
    plot_energy(report, os.path.join(FLAGS.output_dir, "energy.png"))
    _, records = record_forward(model, images[:1])
    raster = {r.name: r.value for r in records if r.kind == "neuron"}
    layer = FLAGS.raster_layer if FLAGS.raster_layer in raster else next(iter(raster))
    plot_spike_raster(raster[layer][0], os.path.join(FLAGS.output_dir, "spike_raster.png"),
                      f"{FLAGS.preset}: spikes of {layer}, one image")
    print(report.table())
    print(f"mean firing rate {rates['mean']:.4f}; products needing multiplication: "
          f"{result['multiplications']}")


def main():
    tool.run(_main)


if __name__ == "__main__":
    main()
