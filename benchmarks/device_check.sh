#!/usr/bin/env bash
# GPU device check (docs/guides/performance.md, "GPU device check"): train and
# inference throughput and peak accelerator memory of one preset on
# TensorFlow, JAX and PyTorch, in bfloat16 and float32, at batch 64 and at the
# largest batch that fits, each as a ratio to the same process's matmul peak
# (benchmarks/run.py). One JSON line per measurement goes to
# benchmarks/results/device_<device>.jsonl (written as each one ends, so a
# run cut short leaves valid lines), then a table is printed and written to
# benchmarks/results/device_<device>.md.
#
#     bash benchmarks/device_check.sh                    # st_8_512_imagenet
#     bash benchmarks/device_check.sh st_2_64_digits     # another preset
#     bash benchmarks/device_check.sh --download-wheels  # here: .whl/ for a machine offline
#
# The whole run keeps to KST_BUDGET_S seconds (default 450: under 8 minutes),
# counted from the start, installs included. Batch 64 of every configuration
# runs first (bfloat16 before float32, train before infer, JAX, PyTorch,
# TensorFlow), then the max-batch searches in the same order; each
# measurement's subprocess is killed at KST_MEASURE_TIMEOUT_S or when the
# budget runs out, and what no longer fits is recorded as skipped.
#
# Installs, unless KST_SKIP_INSTALL=1: the wheels in .whl/ (KST_WHEELS) if
# any, made by --download-wheels (Keras, KerasHub and what they need beyond
# the lent machines' image, which has PyTorch and JAX for CUDA but no
# TensorFlow and no package index); then, where the package index answers,
# what is still missing: keras, keras-hub, and per backend "jax[cuda12]",
# torch (its default, CUDA build) and "tensorflow[and-cuda]" on a GPU machine,
# jax, torch==2.13.0 (CPU) and tensorflow on a CPU. A backend that is still
# missing (or, on a GPU machine, sees no GPU) is recorded as skipped.
#
# Settings (environment): KST_PRESET (or the first argument), KST_BACKENDS
# ("jax torch tensorflow"), KST_DTYPES ("mixed_bfloat16 float32"), KST_MODES
# ("train infer"), KST_BATCH (64), KST_MAX_BATCH_CAP (4096),
# KST_MAX_BATCH_PROBES (3), KST_STEPS (10), KST_WARMUP (2), KST_TIME_STEPS
# (the preset's T), KST_MATMUL_SIZE (8192 on a GPU, 1024 on a CPU),
# KST_BUDGET_S (450), KST_MEASURE_TIMEOUT_S (180), KST_MIN_MEASURE_S (20),
# KST_RESULTS_DIR (benchmarks/results), KST_DEVICE_NAME (nvidia-smi's name,
# else "cpu"), KST_PYTHON (python3), KST_SKIP_INSTALL, KST_WHEELS,
# KST_INSTALL_TIMEOUT_S (240 per pip call).
set -uo pipefail  # no -e: one failed measurement must not end the check
start=$(date +%s)
cd "$(dirname "$0")/.."
repo="$(pwd)"
PY="${KST_PYTHON:-python3}"
wheels="${KST_WHEELS:-$repo/.whl}"

if [[ "${1:-}" == "--download-wheels" ]]; then
  # For a lent machine that reaches no package index (its python3 is 3.12
  # with PyTorch and JAX): Keras, KerasHub and their few missing needs, at
  # the versions installed here where there are any. Name .whl in the run's
  # carry if git ignores it.
  mkdir -p "$wheels"
  specs=()
  for name in keras keras-hub namex optree kagglehub kagglesdk importlib_resources; do
    version="$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null)"
    specs+=("$name${version:+==$version}")
  done
  exec "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$wheels" "${specs[@]}"
fi

preset="${1:-${KST_PRESET:-st_8_512_imagenet}}"
backends="${KST_BACKENDS:-jax torch tensorflow}"
dtypes="${KST_DTYPES:-mixed_bfloat16 float32}"
modes="${KST_MODES:-train infer}"
budget="${KST_BUDGET_S:-450}"
deadline=$((start + budget))

gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpu=1
  device="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  device=cpu
fi
device="${KST_DEVICE_NAME:-$device}"
slug="$(printf '%s' "$device" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9' '_' | sed 's/__*/_/g; s/^_//; s/_$//')"
results="${KST_RESULTS_DIR:-$repo/benchmarks/results}"
out="$results/device_${slug:-unknown}.jsonl"
mkdir -p "$results"
echo "== device check: $preset on '$device' (GPU: $gpu), budget ${budget} s, JSON lines in $out"

have() { (cd / && "$PY" -c "$1") >/dev/null 2>&1; }
# Found, not imported (an import of Keras costs seconds).
found() { (cd / && "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"); }
pip_install() {  # a package-index install that may fail (offline machine): say so, go on
  echo "== pip install $*"
  timeout "${KST_INSTALL_TIMEOUT_S:-240}" "$PY" -m pip install --quiet --retries 1 --timeout 20 "$@" \
    || echo "== could not install $* (no package index, or too slow): going on without"
}

if [[ "${KST_SKIP_INSTALL:-0}" != 1 ]]; then
  if compgen -G "$wheels/*.whl" >/dev/null; then
    echo "== installing the carried wheels of $wheels"
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/kst-site "$wheels"/*.whl \
      && export PYTHONPATH="/tmp/kst-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  if timeout 60 "$PY" -m pip download --quiet --no-deps --retries 0 --timeout 10 \
       -d "$(mktemp -d)" namex >/dev/null 2>&1; then
    needed=()
    found keras || needed+=(keras)
    found keras_hub || needed+=(keras-hub)
    found importlib_resources || needed+=(importlib_resources)
    [[ ${#needed[@]} -gt 0 ]] && pip_install "${needed[@]}"
    for backend in $backends; do
      case "$backend:$gpu" in
        jax:1) have "import jax; assert jax.default_backend() == 'gpu'" || pip_install "jax[cuda12]" ;;
        torch:1) have "import torch; assert torch.cuda.is_available()" || pip_install torch ;;
        tensorflow:1) have "import tensorflow as tf; assert tf.config.list_physical_devices('GPU')" \
                        || pip_install "tensorflow[and-cuda]" ;;
        jax:0) found jax || pip_install jax ;;
        torch:0) found torch || pip_install "torch==2.13.0" ;;
        tensorflow:0) found tensorflow || pip_install tensorflow ;;
      esac
    done
  else
    echo "== no package index reachable: using what is installed (and carried)"
  fi
fi
# The package itself: installed, or else this checkout (a broken install
# shows in the records' reasons).
found keras_spiking_tf || export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
for module in keras keras_hub keras_spiking_tf; do
  found "$module" || { echo "device check: $PY cannot find $module" >&2; exit 1; }
done
(cd / && "$PY" - $backends <<'PY'
import importlib.metadata, sys
for name in ["keras", "keras-hub", *sys.argv[1:]]:
    try:
        print(f"   {name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        print(f"   {name}: not installed")
PY
)
echo "== ready after $(( $(date +%s) - start )) s"

: > "$out"
common=(--preset "$preset" --steps "${KST_STEPS:-10}" --warmup "${KST_WARMUP:-2}"
        --time_steps "${KST_TIME_STEPS:-}" --matmul_size "${KST_MATMUL_SIZE:-$((gpu ? 8192 : 1024))}"
        --deadline "$deadline" --timeout "${KST_MEASURE_TIMEOUT_S:-180}"
        --min_measure_s "${KST_MIN_MEASURE_S:-20}" --max_batch_start "${KST_BATCH:-64}"
        --max_batch_cap "${KST_MAX_BATCH_CAP:-4096}" --max_batch_probes "${KST_MAX_BATCH_PROBES:-3}"
        --no_header --json "$out")
[[ $gpu == 1 ]] && common+=(--require_gpu)
echo "backend    dtype           mode  batch  T    N compile    img/s GFLOP/img    peak   util  RSS MB"
for batch in "${KST_BATCH:-64}" max; do
  for dtype in $dtypes; do
    for mode in $modes; do
      for backend in $backends; do
        "$PY" benchmarks/run.py "${common[@]}" --backend "$backend" --dtype "$dtype" --mode "$mode" \
          --batch "$batch" || echo "benchmarks/run.py failed ($backend $dtype $mode $batch)"
      done
    done
  done
done

echo "== measured in $(( $(date +%s) - start )) s; table (also in ${out%.jsonl}.md):"
{
  echo "Device check of \`$preset\` on $device, $(date -u '+%Y-%m-%d %H:%M UTC'):"
  echo "\`bash benchmarks/device_check.sh $preset\`, JSON lines in \`${out#"$repo"/}\`."
  echo
  "$PY" benchmarks/table.py "$out"
} > "${out%.jsonl}.md"
cat "${out%.jsonl}.md"
echo "== device check done in $(( $(date +%s) - start )) s"
