#!/usr/bin/env bash
# Run every benchmark in one go: ./benchmarks/run_all.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
for b in bench_import bench_logging bench_reads bench_objects; do
  echo "=== $b $* ==="
  "$PY" "benchmarks/$b.py" "$@"
done
