#!/usr/bin/env bash
# One short check of genimg on a GPU or TPU; prints one JSON line on stdout:
#   1. the test suite's device-independent subset, run on the accelerator (float32 matmuls and
#      convolutions at full precision, JAX_DEFAULT_MATMUL_PRECISION=highest, because the tests'
#      tolerances are float32's; GPUs and TPUs otherwise use TF32 / bf16 passes);
#   2. DCGAN-64x64 and conv VAE train-step throughput at batch 256 in float32 (bf16: the slot in
#      accelerator_check.py, once model.dtype exists) and model FLOP utilisation against the
#      chip's peak, FLOPs from XLA's cost analysis of the compiled step (accelerator_check.py).
#
#   bash benchmarks/accelerator_check.sh   # on a GPU or TPU machine
#   bash benchmarks/accelerator_check.sh --allow_cpu --batch_size=4 --steps=1 --warmup=0
#       # the same path on a CPU, small (the DCGAN-64 step takes tens of seconds on XLA:CPU
#       # even at batch 4)
#
# --no_tests skips step 1, --test_files=A,B runs those test files instead of the subset; every
# other flag goes to accelerator_check.py (--batch_size, --steps, --warmup, --models,
# --peak_tflops, --allow_cpu). Without a GPU or TPU (and without --allow_cpu) it exits with
# status 1 and a one-line message. The test log goes to $GENIMG_CHECK_DIR (default: a new
# temporary folder). Exit status: 0 when the tests passed and every measurement ran.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}

run_tests=1
test_files=""
allow_cpu=0
args=()
for arg in "$@"; do
  case "$arg" in
    --no_tests) run_tests=0 ;;
    --test_files=*) test_files="${arg#--test_files=}" ;;
    --allow_cpu) allow_cpu=1 && args+=("$arg") ;;
    *) args+=("$arg") ;;
  esac
done

backend=$("$python" -c 'import jax; print(jax.default_backend())') || exit 1
if [ "$backend" = cpu ] && [ "$allow_cpu" = 0 ]; then
  "$python" benchmarks/accelerator_check.py  # prints the one-line error and exits 1
  exit 1
fi

report=""
status=0
if [ "$run_tests" = 1 ]; then
  dir=${GENIMG_CHECK_DIR:-$(mktemp -d)}
  mkdir -p "$dir"
  if [ -n "$test_files" ]; then
    IFS=, read -r -a selection <<<"$test_files"
  else
    # Everything but what is tied to the CPU or cannot hold on another backend: the oneDNN
    # backend and the XLA:CPU defaults; the fake-CPU-device multi-device tests; the notebooks
    # (on an accelerator they switch to their full configurations); the benchmark harness (CPU
    # timings, the PyTorch peer); the golden tiny-run metrics (they pin the CPU's rounding).
    selection=(tests)
    for module in onednn platform multidevice vae_multidevice notebooks benchmarks \
      golden_metrics; do
      selection+=("--ignore=tests/test_$module.py")
    done
  fi
  # One process per TPU (it cannot be shared); on a GPU, 4 workers that allocate on demand.
  case "$backend" in
    tpu) workers=0 ;;
    gpu) workers=4 ;;
    *) workers=2 ;;
  esac
  start=$SECONDS
  XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest \
    "$python" -m pytest -q -n "$workers" -p no:cacheprovider --junitxml="$dir/junit.xml" \
    "${selection[@]}" >"$dir/tests.log" 2>&1
  status=$?
  report=$("$python" - "$dir" "$status" "$((SECONDS - start))" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
folder, status, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    suite = ET.parse(f"{folder}/junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
except (OSError, ET.ParseError):
    counts = {}
print(json.dumps(dict(counts, exit=status, seconds=seconds, log=f"{folder}/tests.log")))
EOF
)
  [ "$status" = 0 ] || echo "accelerator_check: tests failed, see $dir/tests.log" >&2
fi

"$python" benchmarks/accelerator_check.py "${args[@]}" ${report:+"--test_report=$report"}
measured=$?
[ "$measured" = 0 ] && [ "$status" = 0 ]
