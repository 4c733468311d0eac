"""qrecorder quickstart: one run on the embedded store, then read it back.

Where it writes: a fresh temporary folder (printed at the start), so running this script
leaves nothing behind in your working directory. The store is the default embedded one:
``mlflow.db`` (SQLite) with artifacts in ``mlartifacts/`` beside it. Pass a folder as the
first argument to keep the store there instead:

    python examples/quickstart.py            # temp folder, removed at the end
    python examples/quickstart.py ./demo     # keeps ./demo/mlflow.db and ./demo/mlartifacts

With ``QRECORDER_URI`` (or ``MLFLOW_TRACKING_URI``) set, it logs there instead, e.g. to a
team server (docs/team.md):

    QRECORDER_URI=http://127.0.0.1:5000 python examples/quickstart.py

Needs numpy and pandas (both come with mlflow). Takes a few seconds; most of it is importing
MLflow and, on the first run, creating the database tables.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from qrecorder import R


def configured_uri() -> str | None:
    """The store named in the environment (a team server, a database), if any."""
    return os.environ.get("QRECORDER_URI") or os.environ.get("MLFLOW_TRACKING_URI") or None


def main(folder: Path | None) -> None:
    # Point R at a store inside `folder`. Without this call R would use ./mlflow.db
    # (or QRECORDER_URI / MLFLOW_TRACKING_URI when set: then `folder` is None).
    if folder is not None:
        R.set_uri(f"sqlite:///{folder / 'mlflow.db'}")
    print("store:", R.get_uri())

    # 1. One run: params, metrics over steps, a DataFrame as an object.
    rng = np.random.default_rng(seed=0)
    with R.start(experiment_name="quickstart", recorder_name="linear_seed0"):
        R.log_params(model="linear", lr=0.05, seed=0)
        loss = 1.0
        for step in range(20):
            loss *= 0.9 + 0.05 * rng.random()
            R.log_metrics(step=step, loss=loss)
        pred = pd.DataFrame({"score": rng.normal(size=5)}, index=[f"stock{i}" for i in range(5)])
        R.save_objects(**{"pred.pkl": pred})
        R.log_metrics(ic=0.042)
    # Leaving the block flushed everything and ended the run FINISHED.

    # 2. Find the recorder again by name and read it back.
    rec = R.get_recorder(experiment_name="quickstart", recorder_name="linear_seed0")
    print("recorder:", rec.id, rec.status)
    print("params:", rec.list_params())
    print("metrics (last value of each):", rec.list_metrics())
    loaded = rec.load_object("pred.pkl")  # SHA-256 checked against the value saved
    print("pred.pkl:\n", loaded)
    assert loaded.equals(pred)

    # 3. Every run of the experiment as a table.
    table = R.search_records(experiment_ids=[R.get_exp(experiment_name="quickstart").id])
    print(table[["run_id", "status", "params.model", "metrics.loss", "metrics.ic"]].to_string(index=False))


if __name__ == "__main__":
    if configured_uri() is not None and len(sys.argv) == 1:
        main(None)  # the store from the environment
    elif len(sys.argv) > 1:
        target = Path(sys.argv[1]).resolve()
        target.mkdir(parents=True, exist_ok=True)
        main(target)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="qrecorder-quickstart-"))
        print("working in", tmp)
        try:
            main(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
