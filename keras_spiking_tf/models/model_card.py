"""The model card (`README.md`) written into every saved preset, of any
model family.

It describes the classifier from its own config (its family's rows:
architecture and attention; then `T`, input, classes, parameter count) and
from what the saver knows about it (`metadata.json`'s `dataset`,
`evaluation`, `energy` and `training` entries, written by `kst-train`);
what is not known is said to be unknown, never guessed. Hugging Face and
Kaggle show it as the model's page after `keras_hub.upload_preset`.

Example:

```python
print(model_card(model, "my_preset", {"dataset": "digits"}))
```
"""

import numpy as np


def _percent(value):
    return f"{100 * value:.2f} %"


def _accuracy_row(evaluation):
    if not evaluation:
        return "not measured"
    parts = []
    for key, label in (("test_accuracy", "test split"), ("val_accuracy", "validation split")):
        if evaluation.get(key) is not None:
            count = evaluation.get(f"{key.split('_')[0]}_images")
            size = f", {count:,} images" if count else ""
            parts.append(f"{_percent(evaluation[key])} top-1 on the {label}{size}")
    return "; ".join(parts) or "not measured"


def _energy_row(energy):
    if not energy:
        return "not measured"
    return (
        f"{energy['energy_mj']:.4g} mJ per image ({energy['macs'] / 1e6:,.3f} M MACs, "
        f"{energy['sops'] / 1e6:,.3f} M SOPs at 4.6 / 0.9 pJ, 45 nm; mean firing rate "
        f"{energy['mean_firing_rate']:.3f}, over {energy['images']}; design.md §7)"
    )


def _training_row(training):
    if not training:
        return "not recorded"
    parts = []
    if training.get("command"):
        parts.append(f"`{training['command']}`")
    if training.get("epochs_completed") is not None:
        total = training.get("epochs")
        parts.append(
            f"after epoch {training['epochs_completed']}"
            + (f" of {total}" if total else "")
            + (" (the epoch with the best validation accuracy)" if training.get("selected") else "")
        )
    for key, label in (("dtype_policy", "dtype policy"), ("seed", "seed"), ("recipe", "recipe")):
        if training.get(key) is not None:
            parts.append(f"{label} {training[key]}")
    return ", ".join(parts)


def model_card(classifier, name, metadata):
    """The model card of `classifier` saved as preset `name`, in Markdown.

    Args:
        classifier: a classifier of a registered model family.
        name: the preset's name (the directory's).
        metadata: what the saver knows (`dataset`, `evaluation`, `energy`,
            `training`); absent entries are said to be unknown.
    """
    from keras_spiking_tf.models.model_family import family_of_model

    backbone = classifier.backbone
    height, width, channels = backbone.image_shape
    params = sum(int(np.prod(w.shape)) for w in classifier.trainable_weights)
    classes = classifier.class_names
    if classes:
        shown = " (" + ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "") + ")"
    elif classifier.num_classes == 1000:
        shown = " (ImageNet-1k; `decode_predictions` uses KerasHub's ImageNet names)"
    else:
        shown = ""
    rows = [
        *family_of_model(classifier).model_card_rows(backbone),
        ("time steps T", str(backbone.time_steps)),
        ("input", (
            f"sequences of {backbone.time_steps} frames of {height}×{width}×{channels} "
            "(event counts per pixel and polarity)"
            if backbone.input_type == "frames"
            else f"{height}×{width}×{channels} images; `predict` takes raw 0..255 pixels"
        )),
        ("classes", f"{classifier.num_classes}{shown}"),
        ("trainable parameters", f"{params:,}"),
        ("dataset", metadata.get("dataset") or "not recorded"),
        ("accuracy", _accuracy_row(metadata.get("evaluation"))),
        ("energy estimate", _energy_row(metadata.get("energy"))),
        ("training", _training_row(metadata.get("training"))),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    return f"""---
library_name: keras-hub
tags:
- keras-spiking-tf
- spiking-neural-network
- image-classification
---

# {name}

A spiking vision transformer for image classification, saved by
keras-spiking-tf (Keras 3; TensorFlow, JAX or PyTorch) as a KerasHub preset.

| | |
|---|---|
{table}

## Use

```python
import keras
import keras_spiking_tf

model = keras_spiking_tf.from_preset("{name}")   # or the preset's directory / hub handle
probabilities = keras.ops.softmax(model.predict(images))
model.decode_predictions(model.predict(images), top=3)
```

`predict` applies the attached preprocessor (resize and normalisation); the
model returns logits, the mean over T of the head's per-step outputs.
"""
