#!/usr/bin/env bash
# `make gpu-check`, on the lent GPU machine (Python 3.12, CUDA torch, torchvision, transformers, timm,
# pyarrow, opencv; no network): installs the small wheels of `make gpu-wheels` (carried in
# .gpu-wheels/), then in at most ~8 minutes runs the GPU figures (bench/gpu.py) and the gpu-marked
# tests that can run there, into one JSON file ($OUT/gpu_check.json, or bench/gpu_results.json).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench}
result=$out/gpu_results.json
[ -n "${OUT:-}" ] && result=$OUT/gpu_check.json
python=${PYTHON:-python3}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if [ -n "${GPU_CHECK_NO_INSTALL:-}" ]; then
  :  # a dry run in an environment that has everything (the CPU test)
elif ls .gpu-wheels/*.whl >/dev/null 2>&1; then
  $python -m pip install --quiet --no-index --no-deps .gpu-wheels/*.whl || echo "WARNING: some carried wheels did not install"
else
  echo "WARNING: no .gpu-wheels/ (run \`make gpu-wheels\` here and carry it)"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# GPU_CHECK_ARGS="--device cpu --quick": the same script, small, on a machine without a GPU
timeout 360 $python -m bench.gpu --out "$result" ${GPU_CHECK_ARGS:-}
bench_rc=$?
timeout 120 $python -m pytest -m gpu -p no:cacheprovider -o addopts="" -rA tests/models/test_gpu.py \
  --junitxml="$out/gpu_tests.xml"
tests_rc=$?
$python - "$result" "$out/gpu_tests.xml" "$bench_rc" "$tests_rc" <<'PY'
import json, sys, xml.etree.ElementTree as ET
result, junit, bench_rc, tests_rc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
try:
    data = json.load(open(result))
except (OSError, ValueError):
    data = {"rows": [], "errors": {"bench": f"no result (exit {bench_rc})"}}
try:
    cases = ET.parse(junit).getroot().iter("testcase")
    data["tests"] = [{"test": f"{c.get('classname')}::{c.get('name')}",
                      "outcome": next((x.tag for x in c if x.tag in ("failure", "error", "skipped")), "passed"),
                      "detail": next((x.get("message", "") for x in c), "")} for c in cases]
except (OSError, ET.ParseError):
    data["tests"] = [{"test": "pytest", "outcome": "error", "detail": f"no report (exit {tests_rc})"}]
json.dump(data, open(result, "w"), indent=1)
print(f"{result}: {len(data['rows'])} figures, tests: {[t['outcome'] for t in data['tests']]}")
PY
exit $(( bench_rc || tests_rc ))
