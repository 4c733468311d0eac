"""Small configs and benchmark folders for the workflow/records/runner tests (not a test module)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SMALL_DATA = {
    "class": "DatasetH", "module_path": "qrecorder.data",
    "kwargs": {
        "source": {"class": "SyntheticPanel", "module_path": "qrecorder.data",
                   "kwargs": {"n_instruments": 30, "n_days": 160, "seed": 0}},
        "segments": {"train": ["2020-01-01", "2020-06-30"], "valid": ["2020-07-01", "2020-07-31"],
                     "test": ["2020-08-01", "2020-12-31"]},
    },
}
RECORDS = [
    {"class": "SignalRecord", "module_path": "qrecorder.records", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
    {"class": "SigAnaRecord", "module_path": "qrecorder.records", "kwargs": {"ana_long_short": True}},
    {"class": "PortAnaRecord", "module_path": "qrecorder.records",
     "kwargs": {"config": {"strategy": {"class": "TopkDropoutStrategy", "kwargs": {"topk": 5, "n_drop": 1}},
                           "backtest": {"exchange_kwargs": {"open_cost": 0.0005, "close_cost": 0.0015}}}}},
]


def config(model: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"experiment_name": "t", "seed": 0,
            "task": {"model": model, "dataset": copy.deepcopy(SMALL_DATA), "record": copy.deepcopy(RECORDS)}, **extra}


LINEAR = {"class": "LinearModel", "module_path": "qrecorder.models", "kwargs": {"estimator": "ols"}}
LGB = {"class": "LGBModel", "module_path": "qrecorder.models",
       "kwargs": {"num_boost_round": 30, "num_leaves": 7, "learning_rate": 0.1, "subsample": 0.8, "subsample_freq": 1,
                  "num_threads": 1}}

USER_MODELS = '''
import os, time, pathlib
import pandas as pd

class Boom:
    def __init__(self, seed=None):
        pass
    def fit(self, dataset):
        raise RuntimeError("boom: this model always fails")
    def predict(self, dataset, segment="test"):
        raise AssertionError

class Flaky:
    """Fails the first time per seed (a marker file remembers), then works: for --retries."""
    def __init__(self, seed=None, marker_dir="."):
        self.seed, self.marker_dir = seed, marker_dir
    def fit(self, dataset):
        m = pathlib.Path(self.marker_dir) / f"flaky-{self.seed}"
        if not m.exists():
            m.write_text("x")
            raise RuntimeError("flaky: first attempt fails")
    def predict(self, dataset, segment="test"):
        x = dataset.prepare(segment, col_set="feature")
        return -x["RET5"]

class Sleepy:
    """Sleeps in fit unless QREC_TEST_FAST is set: for the Ctrl-C test."""
    def __init__(self, seed=None, seconds=60):
        self.seconds = seconds
    def fit(self, dataset):
        if not os.environ.get("QREC_TEST_FAST"):
            time.sleep(self.seconds)
    def predict(self, dataset, segment="test"):
        x = dataset.prepare(segment, col_set="feature")
        return -x["RET5"]
'''


def write_bench(root: Path, models: dict[str, dict[str, Any]], dataset: str = "synthetic") -> Path:
    """A benchmarks folder in Qlib's layout with one config per model, plus user_models.py."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "user_models.py").write_text(USER_MODELS)
    for name, model in models.items():
        d = root / name
        d.mkdir(exist_ok=True)
        m = copy.deepcopy(model)
        if m.get("module_path") == "user":
            m["module_path"] = str(root / "user_models.py")
        (d / f"workflow_config_{name.lower()}_{dataset}.yaml").write_text(yaml.safe_dump(config(m)))
    return root
