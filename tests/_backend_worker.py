"""Runs fixed-weight neurons and an A2OS2A block under $KERAS_BACKEND.

Used by test_backends.py: `python _backend_worker.py IN.npz OUT.npz`. IN holds
the inputs `lif_x` (batch, T, F) and `u` (batch, T, N, D), the attention's
`num_heads`, and every attention weight under the key `weight:<path>`.
"""

import sys

import keras
import numpy as np

from keras_spiking_tf.layers import A2OS2A
from keras_spiking_tf.layers import LIF
from keras_spiking_tf.layers import TernaryLIF


def run(inputs):
    lif_x, u = inputs["lif_x"], inputs["u"]
    attention = A2OS2A(num_heads=int(inputs["num_heads"]), name="attn")
    attention.build(u.shape)
    weights = {k[len("weight:"):]: v for k, v in inputs.items() if k.startswith("weight:")}
    assert sorted(weights) == sorted(v.path for v in attention.weights)
    for variable in attention.weights:
        variable.assign(weights[variable.path])
    spikes = attention.shortcut_lif(u)
    q = attention.q_bn(attention.q_conv(spikes), training=False)
    k = attention.k_bn(attention.k_conv(spikes), training=False)
    v = attention.v_bn(attention.v_conv(spikes), training=False)
    outputs = {
        "lif": LIF()(lif_x),
        "lif_soft": LIF(v_reset=None, decay_input=False)(lif_x),
        "ternary_lif": TernaryLIF()(lif_x),
        "attention_spikes": attention.attend(q, k, v),
        "attention": attention(u, training=False),
    }
    return {
        key: np.asarray(keras.ops.convert_to_numpy(value), np.float32)
        for key, value in outputs.items()
    }


if __name__ == "__main__":
    source, target = sys.argv[1:]
    with np.load(source) as data:
        results = run(dict(data))
    results["backend"] = np.array(keras.backend.backend())
    np.savez(target, **results)
