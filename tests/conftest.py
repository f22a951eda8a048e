"""Shared fixtures and helpers. The backend is whatever KERAS_BACKEND says.

The suite tests the *installed* package: `tests/run.sh` runs pytest from a
scratch directory with `KST_TEST_INSTALLED=1`, and this file stops the run
if `keras_spiking_tf` was imported from the checkout instead of from
site-packages. Subprocesses run the installed `kst-*` programs and never put
the checkout on `PYTHONPATH`.
"""

import os
import sys
from pathlib import Path

import hypothesis
import keras
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL_MODULES = {
    "kst-train": "train",
    "kst-predict": "predict",
    "kst-export": "export",
    "kst-analyze": "analyze",
    "kst-convert-sdt": "convert_sdt_checkpoint",
}


def imported_from_checkout():
    """Whether `keras_spiking_tf` was imported from this checkout's source
    tree (directly or through an editable install), rather than from an
    installed copy (which may live in a virtual environment inside the
    checkout, as CI's `.venv` does)."""
    import keras_spiking_tf

    return Path(keras_spiking_tf.__file__).resolve().parent == REPO / "keras_spiking_tf"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: spawns subprocesses or runs longer than a few seconds"
    )
    if os.environ.get("KST_TEST_INSTALLED") == "1" and imported_from_checkout():
        import keras_spiking_tf

        pytest.exit(
            f"KST_TEST_INSTALLED=1 but keras_spiking_tf was imported from the checkout "
            f"({keras_spiking_tf.__file__}), not from the installed package. Install it "
            "non-editable (pip install .) and run the tests from outside the checkout "
            "(bash tests/run.sh does both).",
            returncode=4,
        )


def tool_command(name):
    """The command line of an installed tool (`kst-train`, ...)."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", f"keras_spiking_tf.cli.{TOOL_MODULES[name]}"]


def subprocess_env(**extra):
    """The environment for a subprocess: this one, on the TensorFlow
    backend, with the checkout kept off PYTHONPATH."""
    env = dict(os.environ)
    path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO]
    env["PYTHONPATH"] = os.pathsep.join(path)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["KERAS_BACKEND"] = "tensorflow"
    env.update(extra)
    return env


# Property-based tests (hypothesis): random examples on a developer's
# machine, where a new failure is found and kept in .hypothesis/; the same
# examples on every CI run (CI=true), so a submission's CI is reproducible.
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI") == "true":
    hypothesis.settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def to_numpy(x):
    """A backend tensor, Keras variable or array-like as a NumPy array."""
    if isinstance(x, keras.Variable):
        x = x.value
    return np.asarray(keras.ops.convert_to_numpy(x))
