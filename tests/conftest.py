"""Shared fixtures. The backend is whatever KERAS_BACKEND says; nothing is forced."""

import keras
import numpy as np
import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: spawns subprocesses or runs longer than a few seconds"
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def to_numpy(x):
    """A backend tensor, Keras variable or array-like as a NumPy array."""
    if isinstance(x, keras.Variable):
        x = x.value
    return np.asarray(keras.ops.convert_to_numpy(x))
