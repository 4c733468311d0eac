"""A script written the way Qlib users write it; only the import line differs.

With Qlib this file would start with ``import qlib; qlib.init(...)`` and
``from qlib.workflow import R``. With qrecorder the import is ``from qrecorder import R`` and
no init call is needed.

Where it writes: the current directory (``./mlflow.db`` and ``./mlartifacts/``), the
default store, exactly as a Qlib script writes ``./mlruns`` by default. Run it in a scratch
folder:

    mkdir -p /tmp/qlib_style && cd /tmp/qlib_style && python /path/to/examples/qlib_style.py

Running it again adds new runs beside the old ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qrecorder import R  # was: from qlib.workflow import R


def train(seed: int) -> tuple[pd.Series, float]:
    """A stand-in for model.fit / model.predict."""
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_product(
        [pd.date_range("2024-01-01", periods=3), ["SH600000", "SH600519"]], names=["datetime", "instrument"]
    )
    pred = pd.Series(rng.normal(size=len(index)), index=index, name="score")
    return pred, float(rng.uniform(0.01, 0.06))


# --- the usual `with R.start(...)` block --------------------------------------------------
for seed in (0, 1):
    with R.start(experiment_name="qlib_style", recorder_name="lgb_alpha158"):
        R.log_params(model="LGBModel", learning_rate=0.2, num_leaves=210, seed=seed)
        for epoch in range(5):
            R.log_metrics(step=epoch, train_loss=1.0 / (epoch + 1), valid_loss=1.1 / (epoch + 1))
        pred, ic = train(seed)
        R.save_objects(**{"pred.pkl": pred})
        R.log_metrics(IC=ic)
        R.set_tags(stage="research")
        rid = R.get_recorder().id  # the active recorder

# --- start_exp / end_exp, without a `with` block -------------------------------------------
R.start_exp(experiment_name="qlib_style", recorder_name="manual")
R.log_metrics(IC=0.01)
R.end_exp(recorder_status="FINISHED")

# --- reading back, as Qlib's record templates and notebooks do -----------------------------
recorder = R.get_recorder(recorder_id=rid, experiment_name="qlib_style")
pred = recorder.load_object("pred.pkl")
print("pred.pkl of", recorder.id, "\n", pred.head())

latest = R.get_recorder(recorder_name="lgb_alpha158", experiment_name="qlib_style")  # latest started
print("latest lgb_alpha158:", latest.id, latest.list_metrics()["IC"])

recorders = R.list_recorders(experiment_name="qlib_style")  # dict: id -> Recorder
print(len(recorders), "recorders:", sorted({r.name for r in recorders.values()}))

exp = R.get_exp(experiment_name="qlib_style", create=False)
records = R.search_records([exp.id], filter_string="params.model = 'LGBModel'", order_by=["metrics.IC DESC"])
print(records[["run_id", "params.seed", "metrics.IC", "status"]].to_string(index=False))

print("experiments:", sorted(R.list_experiments()))
print("uri:", R.get_uri())
