#!/usr/bin/env bash
# The project's test command (README "Quick start", run by .ci/run).
#
# Tests the *installed* package, not the source tree: install it first
# (pip install ".[export,backends,test,events,micro]", not editable). pytest runs from a
# scratch directory, so the checkout is not on sys.path, and
# KST_TEST_INSTALLED=1 makes tests/conftest.py stop the run if
# keras_spiking_tf was imported from the checkout anyway.
#
# Whole suite on the TensorFlow backend, two workers; then the layer,
# model, streaming, own-images and fit tests, and export from each backend
# (test_export_backends.py), again on JAX and PyTorch. The argument and
# input checks and the inference graph run on PyTorch as the second
# backend (on JAX every model they build is traced first, which doubled
# this pass). Slow tests are excluded (-m "not slow").
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
export KST_TEST_INSTALLED=1 TF_CPP_MIN_LOG_LEVEL=2
python -c 'import keras_spiking_tf, sys; print("testing keras_spiking_tf from", keras_spiking_tf.__file__, file=sys.stderr)'
pytest=(python -m pytest -c "$repo/pyproject.toml" --rootdir "$repo" -p no:cacheprovider -q
        -n 2 -m "not slow")
status=0
KERAS_BACKEND=tensorflow "${pytest[@]}" "$repo/tests" || status=$?
both=("$repo/tests/test_neurons.py" "$repo/tests/test_attention.py" "$repo/tests/test_models.py"
      "$repo/tests/test_streaming.py" "$repo/tests/test_own_images.py"
      "$repo/tests/test_fit_arrays.py" "$repo/tests/test_export_backends.py")
KERAS_BACKEND=jax "${pytest[@]}" "${both[@]}" || status=$?
KERAS_BACKEND=torch "${pytest[@]}" "${both[@]}" \
  "$repo/tests/test_inference_graph.py" "$repo/tests/test_input_checks.py" \
  "$repo/tests/test_argument_validation.py" \
  || status=$?
exit $status
