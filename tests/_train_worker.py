"""Subprocess body for the distributed-training tests (tests/test_training.py).

Usage: python _train_worker.py CONFIG_JSON WEIGHTS_NPZ [LOGICAL_CPUS]

Splits the CPU into LOGICAL_CPUS logical devices (before TensorFlow starts),
runs `run_training(TrainConfig(**CONFIG_JSON))`, and saves to WEIGHTS_NPZ
every variable of the trained model (`all/<index>`) and, for trainable
variables, every replica's copy (`trainable/<index>/<replica>`). BatchNorm
moving statistics are per replica under MirroredStrategy (as PyTorch DDP
without SyncBN); the saved model takes replica 0's.
"""

import json
import sys

import numpy as np
import tensorflow as tf

config_json, weights_path = sys.argv[1], sys.argv[2]
logical_cpus = int(sys.argv[3]) if len(sys.argv) > 3 else 1
if logical_cpus > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus
    )

from keras_spiking_tf.training.trainer import TrainConfig  # noqa: E402
from keras_spiking_tf.training.trainer import run_training  # noqa: E402

model, summary = run_training(TrainConfig(**json.loads(config_json)))
arrays = {f"all/{i}": np.asarray(v) for i, v in enumerate(model.variables)}
for index, variable in enumerate(model.trainable_variables):
    copies = getattr(variable.value, "values", None) or (variable.value,)
    for replica, copy in enumerate(copies):
        arrays[f"trainable/{index}/{replica}"] = np.asarray(copy)
arrays["summary"] = np.array(json.dumps(summary))
np.savez(weights_path, **arrays)
