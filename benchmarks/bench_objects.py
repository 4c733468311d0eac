"""Saving and loading a large DataFrame: R.save_objects / recorder.load_object beside raw
pickle.dump / pickle.load to the same local disk.

    .venv/bin/python benchmarks/bench_objects.py [--quick] [--mb 200]

qrecorder writes the pickle (protocol 5) in place in the run's artifact folder and hashes it
in the same pass (BLAKE3); loading reads it into memory once, verifies the checksum, then
unpickles from that buffer (nothing is unpickled before it is verified).
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
    ap.add_argument("--repeat", type=int, default=5)
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
                # Write back dirty pages before each timed step (outside the timing): otherwise the
                # kernel throttles whichever writer comes after a previous 200 MB write, and the
                # figures measure writeback, not the two ways of saving.
                os.sync()
                raw_s.append(timed(raw_save, repeat=1)[0])
                os.sync()
                q_s.append(timed(q_save, repeat=1)[0])
                os.sync()
                raw_l.append(timed(raw_load, repeat=1)[0])
                t, back = timed(q_load, repeat=1)
                q_l.append(t)
            assert back.equals(df)
        os.chdir(Path(__file__).resolve().parent)
    import statistics

    print(f"\nDataFrame {size:.0f} MB ({rows:,} x 10 float64), local disk, {args.repeat} rounds, os.sync() before each")
    print(f"{'operation':10} {'statistic':>9} {'raw pickle s':>13} {'qrecorder s':>12} {'ratio':>7} {'target':>7}")
    for label, raw_t, q_t in (("save", raw_s, q_s), ("load", raw_l, q_l)):
        for stat, fn in (("median", statistics.median), ("best", min)):
            raw, q = fn(raw_t), fn(q_t)
            ratio = q / raw
            verdict = "ok" if ratio <= TARGET_RATIO else "MISSED"
            print(f"{label:10} {stat:>9} {raw:13.3f} {q:12.3f} {ratio:7.2f} {TARGET_RATIO:7.1f}  {verdict}")


if __name__ == "__main__":
    main()
