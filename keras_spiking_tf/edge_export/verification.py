"""Checking an exported file against the Keras model it came from."""

import keras
import numpy as np

from keras_spiking_tf.edge_export.export_utils import ExportError
from keras_spiking_tf.edge_export.runtime import load_exported

# A per-sample output difference above this is not float rounding of the same
# spikes: some spike differs (see tests/test_export.py).
ROUNDING_TOLERANCE = 1e-4


def _keras_outputs(graph_model, inputs, batch_size):
    outputs = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        outputs.append(keras.ops.convert_to_numpy(graph_model(batch, training=False)))
    return np.concatenate(outputs).astype("float32")


def empty_verification():
    return {
        "num_samples": None,
        "top1_agreement": None,
        "max_abs_logit_diff": None,
        "mean_abs_logit_diff": None,
        "num_samples_over_rounding": None,
        "accuracy_keras": None,
        "accuracy_exported": None,
        "accuracy_change": None,
        "batch_sizes_checked": None,
        "verify_seconds": None,
    }


def verify(graph_model, staging, format, inputs, labels, batch_size):
    try:
        runner = load_exported(staging, format=format)
        exported = runner(inputs, batch_size=batch_size)
        single = runner(inputs[:1])
    except Exception as error:
        raise ExportError(
            f"The exported {format} model failed to run in its runtime: {error}"
        ) from error
    reference = _keras_outputs(graph_model, inputs, batch_size)
    if exported.shape != reference.shape:
        raise ExportError(
            f"The exported model returns shape {exported.shape}, Keras {reference.shape}."
        )
    if not np.allclose(single, exported[:1], rtol=0, atol=1e-5):
        raise ExportError(
            "The exported model gives a different result for the same image at "
            "batch size 1 and at batch size "
            f"{min(len(inputs), batch_size)}: its batch axis is not independent."
        )
    difference = np.abs(exported - reference)
    per_sample = difference.max(axis=1)
    report = {
        "num_samples": int(len(inputs)),
        "top1_agreement": float(np.mean(exported.argmax(1) == reference.argmax(1))),
        "max_abs_logit_diff": float(difference.max()),
        "mean_abs_logit_diff": float(difference.mean()),
        "num_samples_over_rounding": int(np.sum(per_sample > ROUNDING_TOLERANCE)),
        "batch_sizes_checked": sorted({1, min(len(inputs), batch_size)}),
    }
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        keras_accuracy = float(np.mean(reference.argmax(1) == labels))
        exported_accuracy = float(np.mean(exported.argmax(1) == labels))
        report.update(
            {
                "accuracy_keras": keras_accuracy,
                "accuracy_exported": exported_accuracy,
                "accuracy_change": exported_accuracy - keras_accuracy,
            }
        )
    else:
        report.update({"accuracy_keras": None, "accuracy_exported": None, "accuracy_change": None})
    return report
