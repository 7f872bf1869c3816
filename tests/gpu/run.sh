#!/usr/bin/env bash
# The GPU tests, then the CUDA benchmarks, on a machine with an NVIDIA GPU, from the checkout as
# it is: nothing is installed (the repository root and tests/ go on PYTHONPATH), so it runs where
# no package registry can be reached, with the machine's own numpy, cupy, NVRTC and torch.
#
#   bash tests/gpu/run.sh [pytest arguments]             # logs also go to $OUT, else /tmp/graphc-gpu
#   bash tests/gpu/run.sh --dry-run [pytest arguments]   # no GPU: cupy and the GPU stood in for
#
# It reports the environment first (tests/gpu/environment.py) and stops with status 2, saying
# what is missing, where something the run needs is absent. Wheels carried in .whl/ at the
# repository root are installed into a private folder first. The tests get GPU_TESTS_LIMIT
# seconds (default 420; each test 180 where pytest-timeout is installed), so that the
# benchmarks still run within one 600-second device call when a test hangs. Exit status: the
# tests' (124 where they ran out of time).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root" || exit 2
python="${PYTHON:-python3}"
out="${OUT:-/tmp/graphc-gpu}"
mkdir -p "$out"
dry=()
if [[ "${1:-}" == "--dry-run" ]]; then
    dry=(--dry-run)
    shift
fi
export PYTHONUNBUFFERED=1
export PYTHONPATH="$root:$root/tests${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    site="${TMPDIR:-/tmp}/graphc-site"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl || exit 2
    export PYTHONPATH="$site:$PYTHONPATH"
fi

"$python" tests/gpu/environment.py "${dry[@]}" | tee "$out/environment.txt" || exit 2

limit="${GPU_TESTS_LIMIT:-420}"
per_test=()
if "$python" -c "import pytest_timeout" 2>/dev/null; then
    per_test=(--timeout=180)
fi
tests() {  # pytest within the limit (interrupted as by Ctrl-C, so it still prints its summary)
    timeout --signal=INT --kill-after=30 "$limit" "$python" -m pytest "${per_test[@]}" "$@"
    local code=$?
    if [[ $code -eq 124 ]]; then
        echo "the tests ran past GPU_TESTS_LIMIT=${limit} s: stopped, so that the benchmarks still run"
    fi
    return $code
}

if [[ ${#dry[@]} -gt 0 ]]; then
    tests -q -m cuda tests -p gpu.dry_run -p no:cacheprovider "$@" 2>&1 | tee "$out/gpu-tests.txt"
    status=${PIPESTATUS[0]}
    "$python" -c "from gpu import dry_run; dry_run.install(); import runpy, sys; sys.argv = ['cuda.py', '--quick']
runpy.run_path('benchmarks/cuda.py', run_name='__main__')" 2>&1 | tee "$out/cuda-benchmarks.txt"
else
    tests -q -rs -m cuda tests -p no:cacheprovider "$@" 2>&1 | tee "$out/gpu-tests.txt"
    status=${PIPESTATUS[0]}
    "$python" benchmarks/cuda.py 2>&1 | tee "$out/cuda-benchmarks.txt"
fi
bench=${PIPESTATUS[0]}
[[ $status -eq 0 ]] || exit "$status"
exit "$bench"
