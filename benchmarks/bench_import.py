"""Import cost: ``import qrecorder`` (must not import MLflow) beside ``import mlflow``, each in
a fresh interpreter, best of N.

    .venv/bin/python benchmarks/bench_import.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

TARGET_S = 0.3
SNIPPET = (
    "import sys, time; t = time.perf_counter(); import {mod}; d = time.perf_counter() - t; "
    "print(d, 'mlflow' in sys.modules)"
)


def measure(mod: str, repeat: int) -> tuple[float, bool]:
    best, loaded = float("inf"), False
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", SNIPPET.format(mod=mod)], capture_output=True, text=True, check=True
        ).stdout.split()
        best = min(best, float(out[0]))
        loaded = out[1] == "True"
    return best, loaded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="best of 3 instead of 7")
    args = ap.parse_args()
    repeat = 3 if args.quick else 7
    base, _ = measure("sys", repeat)
    q, q_mlflow = measure("qrecorder", repeat)
    m, _ = measure("mlflow", max(2, repeat // 2))
    print(f"\nimport time in a fresh interpreter (best of {repeat}; interpreter start excluded)")
    print(
        f"  import qrecorder  {q:7.3f} s  (mlflow imported: {q_mlflow})  target <= {TARGET_S} s "
        f"{'ok' if q <= TARGET_S and not q_mlflow else 'MISSED'}"
    )
    print(f"  import mlflow     {m:7.3f} s")
    print(f"  (timer floor      {base:7.4f} s)")


if __name__ == "__main__":
    main()
