"""The same fixed weights give the same spikes under TensorFlow, JAX and torch.

Each backend runs tests/_backend_worker.py in its own subprocess (a process
has one Keras backend). Runs once, from the TensorFlow session of the suite.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import _backend_worker
from conftest import subprocess_env
from test_attention import randomize_weights

from keras_spiking_tf.layers import A2OS2A

TESTS_DIR = Path(__file__).resolve().parent
BACKENDS = tuple(
    name for name in ("tensorflow", "jax", "torch") if importlib.util.find_spec(name)
)
SPIKE_KEYS = ("lif", "lif_soft", "ternary_lif", "attention_spikes")

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="cross-backend check runs once, from the TensorFlow run",
    ),
]


def make_inputs(rng, batch=2, steps=4, tokens=16, dim=32, num_heads=4):
    attention = A2OS2A(num_heads=num_heads, name="attn")
    attention.build((batch, steps, tokens, dim))
    randomize_weights(attention, rng)
    inputs = {
        "lif_x": (1.5 * rng.standard_normal((batch, steps, 64))).astype(np.float32),
        "u": (3.0 * rng.standard_normal((batch, steps, tokens, dim))).astype(np.float32),
        "num_heads": np.array(num_heads),
    }
    for variable in attention.weights:
        inputs[f"weight:{variable.path}"] = keras.ops.convert_to_numpy(variable.value)
    return inputs


def run_in_subprocesses(source, tmp_path):
    env = subprocess_env()
    processes = {}
    for backend in BACKENDS:
        target = tmp_path / f"{backend}.npz"
        processes[backend] = (
            target,
            subprocess.Popen(
                [sys.executable, str(TESTS_DIR / "_backend_worker.py"), str(source), str(target)],
                env={**env, "KERAS_BACKEND": backend},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
    results = {}
    for backend, (target, process) in processes.items():
        log, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{backend} worker failed:\n{log[-3000:]}"
        with np.load(target) as data:
            assert str(data["backend"]) == backend
            results[backend] = {key: data[key] for key in data.files if key != "backend"}
    return results


def test_spikes_identical_across_backends(rng, tmp_path):
    inputs = make_inputs(rng)
    source = tmp_path / "inputs.npz"
    np.savez(source, **inputs)
    in_process = _backend_worker.run(inputs)  # the current (TensorFlow) backend
    # The comparison is only meaningful with spikes of every kind present.
    assert set(np.unique(in_process["ternary_lif"])) == {-1.0, 0.0, 1.0}
    assert 0.02 < in_process["attention_spikes"].mean() < 0.98

    for backend, result in run_in_subprocesses(source, tmp_path).items():
        for key in SPIKE_KEYS:
            np.testing.assert_array_equal(
                result[key], in_process[key], err_msg=f"{backend}: {key}"
            )
        np.testing.assert_allclose(
            result["attention"], in_process["attention"], atol=1e-5,
            err_msg=f"{backend}: attention output",
        )
