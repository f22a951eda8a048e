"""Choosing how training is distributed: tf.distribute or keras.distribution.

| --strategy     | TensorFlow backend                          | JAX backend           |
|----------------|---------------------------------------------|-----------------------|
| `auto`         | Mirrored over all GPUs if >1, else default  | DataParallel if >1 device |
| `one_device`   | OneDeviceStrategy (first GPU, else CPU)     | no distribution       |
| `mirrored`     | MirroredStrategy (GPUs, else logical CPUs)  | error                 |
| `multi_worker` | MultiWorkerMirroredStrategy (TF_CONFIG)     | error                 |
| `tpu`          | TPUStrategy (`--tpu` address or name)       | error                 |

The PyTorch backend trains on one device (`auto`/`one_device`).
"""

import contextlib
import json
import os

import keras

from keras_spiking_tf import validation

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def check_strategy(name_argument, name, tpu_argument, tpu):
    """The strategy `name` and `tpu` (arguments or flags named
    `name_argument`, `tpu_argument`): a known strategy; `tpu` `None` or a
    non-empty name, and only with `"tpu"`."""
    validation.check_choice(name_argument, name, STRATEGIES, what="strategy")
    validation.check_string(tpu_argument, tpu, allow_none=True)
    if tpu is not None and name != "tpu":
        raise validation.invalid(tpu_argument, tpu, f"None unless {name_argument} is 'tpu'",
                                 hint=f"({name_argument} is {name!r})")


def make_strategy(name, tpu=None):
    """Returns a `tf.distribute.Strategy`, or `None` off the TF backend.

    On JAX with several devices and `name="auto"` this installs
    `keras.distribution.DataParallel` globally.
    """
    check_strategy("name", name, "tpu", tpu)
    backend = keras.backend.backend()
    if backend != "tensorflow":
        if name in ("mirrored", "multi_worker", "tpu"):
            raise ValueError(
                f"--strategy={name} uses tf.distribute and needs "
                f"KERAS_BACKEND=tensorflow (current backend: {backend}). On JAX, "
                "--strategy=auto shards batches with keras.distribution.DataParallel."
            )
        if backend == "jax" and name == "auto":
            devices = keras.distribution.list_devices()
            if len(devices) > 1:
                keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return None

    import tensorflow as tf

    # list_physical_devices does not start the runtime, which multi-worker
    # collectives must configure first.
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment "
                "variable describing the cluster and this worker's task, e.g. "
                + json.dumps({"cluster": {"worker": ["host1:12345", "host2:12345"]},
                              "task": {"type": "worker", "index": 0}})
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def strategy_scope(strategy):
    """`strategy.scope()`, or a no-op context without a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def replica_count(strategy):
    """Replicas a global batch is split over (tf.distribute or JAX)."""
    if strategy is not None:
        return strategy.num_replicas_in_sync
    distribution = keras.distribution.distribution()
    if distribution is not None:
        return int(distribution.device_mesh.devices.size)
    return 1


def is_chief(strategy):
    """Whether this process writes outputs (worker 0 under multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )
