"""Saving and loading a large DataFrame: R.save_objects / recorder.load_object beside raw
pickle.dump / pickle.load to the same local disk.

    .venv/bin/python benchmarks/bench_objects.py [--quick] [--mb 200]

qrecorder writes the pickle (protocol 5) in place in the run's artifact folder and hashes it
in the same pass; loading reads it in place and checks the SHA-256.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workload import timed  # noqa: E402

TARGET_RATIO = 1.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 MB instead of 200 MB")
    ap.add_argument("--mb", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    mb = args.mb or (20 if args.quick else 200)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    import numpy as np
    import pandas as pd

    rows = mb * 1024 * 1024 // (8 * 10)
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.standard_normal((rows, 10)), columns=[f"c{i}" for i in range(10)])
    size = df.memory_usage(index=True).sum() / 2**20
    from qrecorder import R

    with tempfile.TemporaryDirectory(prefix="qrec-objects-", dir=os.environ.get("QREC_BENCH_DIR")) as tmpdir:
        tmp = Path(tmpdir)
        os.chdir(tmp)
        raw_path = tmp / "raw.pkl"

        def raw_save() -> None:
            with open(raw_path, "wb") as f:
                pickle.dump(df, f, protocol=pickle.HIGHEST_PROTOCOL)

        def raw_load() -> object:
            with open(raw_path, "rb") as f:
                return pickle.load(f)

        R.set_uri("sqlite:///" + str(tmp / "mlflow.db"))
        with R.start(experiment_name="objects", recorder_name="big"):
            R.save_objects(warm=1)
            rec = R.get_recorder()

            def q_save() -> None:
                R.save_objects(df=df)

            def q_load() -> object:
                return rec.load_object("df")

            # Interleave so that page-cache and disk state affect both sides alike.
            raw_s, q_s, raw_l, q_l = [], [], [], []
            for _ in range(args.repeat):
                raw_s.append(timed(raw_save, repeat=1)[0])
                q_s.append(timed(q_save, repeat=1)[0])
                raw_l.append(timed(raw_load, repeat=1)[0])
                t, back = timed(q_load, repeat=1)
                q_l.append(t)
            assert back.equals(df)
        os.chdir(Path(__file__).resolve().parent)
    save_raw, save_q, load_raw, load_q = min(raw_s), min(q_s), min(raw_l), min(q_l)
    print(f"\nDataFrame {size:.0f} MB ({rows:,} x 10 float64), local disk, best of {args.repeat}")
    print(f"{'operation':10} {'raw pickle s':>13} {'qrecorder s':>12} {'ratio':>7} {'target':>7}")
    for label, raw, q in (("save", save_raw, save_q), ("load", load_raw, load_q)):
        ratio = q / raw
        print(
            f"{label:10} {raw:13.3f} {q:12.3f} {ratio:7.2f} {TARGET_RATIO:7.1f}  {'ok' if ratio <= TARGET_RATIO else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
