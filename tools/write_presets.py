"""Write the built-in preset directories from the registry.

    python tools/write_presets.py                  # rewrite every preset directory
    python tools/write_presets.py --check          # exit 1 if one differs from the registry
    python tools/write_presets.py --check --only st_2_256_cifar10,st_2_64_digits

The registry is every registered model family's built-in presets
(`keras_spiking_tf.models.model_family`: the first family's are
`keras_spiking_tf/presets/presets.json`, the Meta-SpikeFormer family's
`meta_spikeformer_presets.py`). A preset without
published weights gets a config-only KerasHub preset directory
(`config.json`, `task.json`, `preprocessor.json`, `image_converter.json`,
`metadata.json`, `README.md`): KerasHub's `from_preset` builds it by name,
with random weights. A preset with weights keeps them; its configs, class
names and model card are rewritten from the registry and its metadata.
Shipped configs leave `data_format` unset, so a preset follows the loading
program's `keras.config.image_data_format()`.

`--check` compares the JSON files a run would write (without the dates and
library versions KerasHub records) with the shipped ones.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import keras_spiking_tf  # noqa: F401  (registers the classes and the model families)
from keras_spiking_tf.analysis import energy_summary
from keras_spiking_tf.models.model_family import builtin_entry
from keras_spiking_tf.models.model_family import builtin_presets
from keras_spiking_tf.models.model_card import model_card
from keras_spiking_tf.models.preset_files import read_preset_metadata
from keras_spiking_tf.models.preset_files import write_preset
from keras_spiking_tf.models.spiking_image_classifier import KERAS_HUB_TASKS
from keras_spiking_tf.models.spiking_image_classifier import registry_classifier

# The checkout's preset directories (not the installed copy's).
PRESETS = Path(__file__).resolve().parents[1] / "keras_spiking_tf" / "presets"
COMPARED_FILES = ("config.json", "task.json", "preprocessor.json", "image_converter.json")  # those present
UNCOMPARED_METADATA = ("date_saved", "keras_version", "keras_hub_version", "weights_sha256")


def save_configs(model, directory):
    """KerasHub's preset files of `model` without weights files."""
    from keras_hub.src.utils import preset_utils

    saver = preset_utils.KerasPresetSaver(directory)
    saver._save_serialized_object(model.backbone, preset_utils.CONFIG_FILE)
    saver._save_metadata(model.backbone)
    saver._save_serialized_object(model, preset_utils.TASK_CONFIG_FILE)
    if model.preprocessor is not None:
        model.preprocessor.save_to_preset(directory)


def registry_metadata(name):
    _, entry = builtin_entry(name)
    return {
        "dataset": entry["dataset"],
        "paper_accuracy": entry["paper_accuracy"],
        "trainable_parameters": entry["params"],
    }


def write_config_only(name, directory):
    family, _ = builtin_entry(name)
    model = registry_classifier(name)
    metadata = registry_metadata(name)
    card = model_card(model, name, metadata)
    if family.model_card_notes is not None:
        card += family.model_card_notes(name)
    return write_preset(lambda staging: save_configs(model, staging), directory,
                        metadata={**metadata, "tasks": KERAS_HUB_TASKS}, model_card=card)


def write_trained(name, directory, source):
    """Rewrites a preset with weights: the registry's configs and class
    names around the weights of `source`, its metadata kept."""
    trained = keras_spiking_tf.from_preset(source)
    model = registry_classifier(name)
    model.set_weights(trained.get_weights())
    metadata = {**read_preset_metadata(source), **registry_metadata(name)}
    for key in UNCOMPARED_METADATA + ("parameter_count", "tasks"):
        metadata.pop(key, None)
    if "energy" not in metadata:
        from keras_spiking_tf.training.datasets import load_digits_arrays

        _, _, x_test, _ = load_digits_arrays()
        images = model.preprocessor(x_test[:64].astype("float32"))
        metadata["energy"] = energy_summary(model, images, "64 digits test images")
    return model.save_to_preset(directory, metadata=metadata)


def comparable(directory):
    """The JSON files of a preset directory, less what changes on every save."""
    files = {}
    for filename in COMPARED_FILES:
        if os.path.exists(os.path.join(directory, filename)):
            with open(os.path.join(directory, filename), encoding="utf-8") as file:
                files[filename] = json.load(file)
    metadata = read_preset_metadata(directory)
    files["metadata.json"] = {k: v for k, v in metadata.items() if k not in UNCOMPARED_METADATA}
    files["has weights"] = os.path.exists(os.path.join(directory, "model.weights.h5"))
    return files


def write(name, target):
    _, entry = builtin_entry(name)
    if entry["weights"]:
        return write_trained(name, target, str(PRESETS / name))
    return write_config_only(name, target)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--only", default="", help="comma-separated preset names")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(builtin_presets())
    stale = []
    for name in names:
        if args.check:
            with tempfile.TemporaryDirectory() as scratch:
                expected = comparable(write(name, os.path.join(scratch, name)))
            shipped = PRESETS / name
            if not shipped.is_dir() or comparable(shipped) != expected:
                stale.append(name)
            print(f"{name}: {'stale' if name in stale else 'in sync'}", flush=True)
        else:
            print(f"{name}: wrote {write(name, str(PRESETS / name))}", flush=True)
    if stale:
        print(f"Stale preset directories: {stale}; run python tools/write_presets.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
