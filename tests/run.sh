#!/usr/bin/env bash
# The project's test command (README "Quick start", run by .ci/run).
# Whole suite on the TensorFlow backend, two workers; then the layer and model
# tests again on JAX and PyTorch. Slow tests are excluded (-m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
status=0
KERAS_BACKEND=tensorflow python -m pytest -n 2 -m "not slow" -q -p no:cacheprovider tests || status=$?
for backend in jax torch; do
  KERAS_BACKEND=$backend python -m pytest -n 2 -m "not slow" -q -p no:cacheprovider \
    tests/test_neurons.py tests/test_attention.py tests/test_models.py || status=$?
done
exit $status
