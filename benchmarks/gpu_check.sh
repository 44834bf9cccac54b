#!/usr/bin/env bash
# One-shot GPU check of mfkernels, for a machine with a CUDA GPU and its torch already installed
# (this script never installs or upgrades torch). In one go, about 6-8 minutes on a 16-core H200 host:
#   1. builds the extension in place for the local GPU's architecture (MAX_JOBS = all cores),
#   2. runs every CUDA test case (pytest -k cuda; xdist and per-test timeouts when installed),
#   3. runs `mfkernels bench --device cuda` in float32 (with --flows and --models) and float64,
#   4. writes logs, JSON (gpu-<device>-<dtype>.json) and a one-screen summary into OUT_DIR.
# Exit status: non-zero when the build failed or any CUDA test failed or errored.
#
# usage: benchmarks/gpu_check.sh OUT_DIR [--dry-run] [--no-build] [--tests-only] [--bench-only]
#                                        [--dtypes float32,float64] [--ops "op1 op2"] [--no-models]
#   --dry-run     on a machine without a GPU: no CUDA build, the CUDA tests are collected (they
#                 skip), the bench runs --quick on the CPU; checks the script itself
#   --no-build    use the mfkernels/_C*.so already in the tree (e.g. one carried from a first run)
#   --tests-only / --bench-only   one half of the check
#   --dtypes LIST  bench dtypes (default float32,float64); --ops "NAMES" bench only these ops
#   --no-models    skip the flow and model benches (they run with float32)
# Environment: PYTHON (default python3), PYTEST_WORKERS (default 6 when pytest-xdist is installed).
set -uo pipefail

out="${1:?usage: benchmarks/gpu_check.sh OUT_DIR [--dry-run] [--no-build] [--tests-only] [--bench-only]}"
shift
dry=0 build=1 tests=1 bench=1 models=1 dtypes="float32,float64" ops=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --no-build) build=0 ;;
    --tests-only) bench=0 ;;
    --bench-only) tests=0 ;;
    --no-models) models=0 ;;
    --dtypes) dtypes="${2:?--dtypes needs a list}"; shift ;;
    --ops) ops="${2:?--ops needs names}"; shift ;;
    *) echo "gpu_check.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$SECONDS
failed=0
summary="$out/summary.txt"
: >"$summary"
note() { printf '%s\n' "$*" | tee -a "$summary"; }
stamp() { printf '\n=== %s (%ss)\n' "$1" "$((SECONDS - start))"; }

if [ "$dry" = 0 ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu_check.sh: torch sees no CUDA device (use --dry-run on a machine without a GPU)" >&2
  exit 2
fi
"$PY" - >"$out/environment.txt" 2>&1 <<'PY'
import os, platform, subprocess, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"cc {p.major}.{p.minor}", f"{p.multi_processor_count} SMs", f"{p.total_memory / 2**30:.0f} GiB")
print("cores", os.cpu_count())
for cmd in (["nvcc", "--version"], ["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.mem", "--format=csv"]):
    try:
        print(subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[-1])
    except Exception as exc:  # a missing tool is information, not a failure
        print(" ".join(cmd), "->", exc)
PY
cat "$out/environment.txt"

if [ "$build" = 1 ]; then
  stamp "build"
  if [ "$dry" = 1 ]; then
    build_env=(MFKERNELS_CUDA=0)
  else
    arch="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')"
    build_env=(MFKERNELS_CUDA=1 "TORCH_CUDA_ARCH_LIST=$arch")
  fi
  build() { env "${build_env[@]}" "$@" MAX_JOBS="$(nproc)" "$PY" setup.py build_ext --inplace >>"$out/build.log" 2>&1; }
  : >"$out/build.log"
  if build; then
    note "build: ok (${build_env[*]} CXX=${CXX:-c++}, $((SECONDS - start)) s)"
  elif grep -q "shared libstdc++" "$out/build.log" && command -v g++ >/dev/null; then
    # setup.py refuses a compiler that links its own static libstdc++ (CUDA images set CXX to one);
    # the system compiler links torch's shared runtime
    note "build: CXX=${CXX:-c++} links libstdc++ statically; rebuilding with CXX=$(command -v g++)"
    rm -rf build
    if build CXX="$(command -v g++)" CC="$(command -v gcc)"; then
      note "build: ok (${build_env[*]} CXX=$(command -v g++), $((SECONDS - start)) s)"
    else
      tail -40 "$out/build.log"; note "build: FAILED (see build.log)"; exit 1
    fi
  else
    tail -40 "$out/build.log"
    note "build: FAILED (see build.log)"
    exit 1
  fi
fi
"$PY" -m mfkernels info >"$out/info.txt" 2>&1 || { cat "$out/info.txt"; note "import: FAILED"; exit 1; }
head -4 "$out/info.txt"
if [ "$dry" = 0 ] && ! "$PY" -c 'import sys, mfkernels; sys.exit(not mfkernels.build_info()["cuda_built"])'; then
  note "build: the loaded library has no CUDA kernels"; exit 1
fi

if [ "$tests" = 1 ]; then
  stamp "CUDA tests"
  xdist=()
  if "$PY" -c 'import xdist' 2>/dev/null; then xdist=(-n "${PYTEST_WORKERS:-6}"); fi
  to=()
  if "$PY" -c 'import pytest_timeout' 2>/dev/null; then to=(--timeout 180); fi
  # -k cuda selects every test parametrised over the cuda device (ids end in -cuda or [cuda])
  timeout 420 "$PY" -m pytest tests -k cuda -q -rfE -p no:cacheprovider "${xdist[@]}" "${to[@]}" \
    --junitxml="$out/cuda-tests.xml" -o addopts="" >"$out/cuda-tests.log" 2>&1
  rc=$?
  tail -1 "$out/cuda-tests.log"
  if [ "$rc" = 0 ] || { [ "$dry" = 1 ] && [ "$rc" = 5 ]; }; then
    note "CUDA tests: $(tail -1 "$out/cuda-tests.log")"
  else
    failed=1
    note "CUDA tests: FAILED (rc $rc): $(tail -1 "$out/cuda-tests.log")"
    grep -E '^(FAILED|ERROR) ' "$out/cuda-tests.log" | cut -c1-200 | head -40 | tee -a "$summary"
  fi
fi

if [ "$bench" = 1 ]; then
  if [ "$dry" = 1 ]; then
    device=cpu quick=(--quick) tag="dry-run-cpu"
  else
    device=cuda quick=()
    tag="gpu-$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0).lower().replace("nvidia", "").strip().split()[0])')"
  fi
  op_args=()
  [ -n "$ops" ] && read -r -a op_args <<<"--ops $ops"
  for dtype in ${dtypes//,/ }; do
    extra=("${op_args[@]}")
    # the flow and model benches are float32 only (their models are built in float32)
    [ "$dtype" = float32 ] && [ "$models" = 1 ] && extra+=(--flows --models)
    stamp "bench $device $dtype"
    if timeout 400 "$PY" -m mfkernels bench --device "$device" --dtype "$dtype" "${quick[@]}" "${extra[@]}" \
        --json "$out/$tag-$dtype.json" >"$out/bench-$dtype.log" 2>&1; then
      note "bench $dtype: ok -> $tag-$dtype.json"
    else
      failed=1
      tail -30 "$out/bench-$dtype.log"
      note "bench $dtype: FAILED (see bench-$dtype.log)"
    fi
  done
fi

stamp "summary"
{
  echo "mfkernels GPU check, $(date -u +%FT%TZ), $((SECONDS - start)) s"
  cat "$out/environment.txt"
  cat "$summary"
  for dtype in float32 float64; do
    [ -f "$out/bench-$dtype.log" ] && grep -E '^(mfkernels bench|op |[a-z_]+ +\(| +vs )' "$out/bench-$dtype.log"
  done
  [ -f "$out/bench-float32.log" ] && sed -n '/^training step/,$p' "$out/bench-float32.log"
} >"$out/summary.tmp"
mv "$out/summary.tmp" "$summary"
cat "$summary"
exit "$failed"
