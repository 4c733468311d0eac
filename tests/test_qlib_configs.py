"""`qrec run` on Qlib's own workflow configs (qlib.contrib classes, qlib_init), and config errors
found before any run is created — for Qlib configs and qrecorder's synthetic ones alike.

Real `qrec` subprocesses: the exit code and the store left behind are what a user meets. There is
no market data here, so the end-to-end Qlib run uses Qlib's StaticDataLoader over a pickle file.
"""

from __future__ import annotations

import copy
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _runner_helpers import LINEAR, config

pytest.importorskip("qlib")

QREC = str(Path(sys.executable).parent / "qrec")
QRUN = str(Path(sys.executable).parent / "qrun")

# Qlib's examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml (pyqlib 0.9.7), verbatim
# but for provider_uri, which each test points at its own folder.
QLIB_LIGHTGBM_ALPHA158 = """
qlib_init:
    provider_uri: "PROVIDER"
    region: cn
market: &market csi300
benchmark: &benchmark SH000300
data_handler_config: &data_handler_config
    start_time: 2008-01-01
    end_time: 2020-08-01
    fit_start_time: 2008-01-01
    fit_end_time: 2014-12-31
    instruments: *market
port_analysis_config: &port_analysis_config
    strategy:
        class: TopkDropoutStrategy
        module_path: qlib.contrib.strategy
        kwargs:
            signal: <PRED>
            topk: 50
            n_drop: 5
    backtest:
        start_time: 2017-01-01
        end_time: 2020-08-01
        account: 100000000
        benchmark: *benchmark
        exchange_kwargs:
            limit_threshold: 0.095
            deal_price: close
            open_cost: 0.0005
            close_cost: 0.0015
            min_cost: 5
task:
    model:
        class: LGBModel
        module_path: qlib.contrib.model.gbdt
        kwargs:
            loss: mse
            colsample_bytree: 0.8879
            learning_rate: 0.2
            subsample: 0.8789
            lambda_l1: 205.6999
            lambda_l2: 580.9768
            max_depth: 8
            num_leaves: 210
            num_threads: 20
    dataset:
        class: DatasetH
        module_path: qlib.data.dataset
        kwargs:
            handler:
                class: Alpha158
                module_path: qlib.contrib.data.handler
                kwargs: *data_handler_config
            segments:
                train: [2008-01-01, 2014-12-31]
                valid: [2015-01-01, 2016-12-31]
                test: [2017-01-01, 2020-08-01]
    record:
        - class: SignalRecord
          module_path: qlib.workflow.record_temp
          kwargs:
            model: <MODEL>
            dataset: <DATASET>
        - class: SigAnaRecord
          module_path: qlib.workflow.record_temp
          kwargs:
            ana_long_short: False
            ann_scaler: 252
        - class: PortAnaRecord
          module_path: qlib.workflow.record_temp
          kwargs:
            config: *port_analysis_config
"""


def write_panel(path: Path) -> Path:
    """A (datetime, instrument) panel with Qlib's two-level columns: 5 features, LABEL0 with a signal."""
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-01", periods=160)
    idx = pd.MultiIndex.from_product([dates, [f"S{i:03d}" for i in range(30)]], names=["datetime", "instrument"])
    f = rng.normal(size=(len(idx), 5))
    label = 0.1 * f[:, 0] + rng.normal(size=len(idx))
    cols = pd.MultiIndex.from_tuples([("feature", f"F{i}") for i in range(5)] + [("label", "LABEL0")])
    pd.DataFrame(np.column_stack([f, label]), index=idx, columns=cols).to_pickle(path)
    return path


def static_qlib_config(tmp: Path, provider: Path) -> dict:
    """Qlib classes only (LGBModel, DatasetH over DataHandlerLP + StaticDataLoader, Signal/SigAnaRecord)."""
    provider.mkdir(exist_ok=True)
    return {
        "qlib_init": {"provider_uri": str(provider), "region": "cn"},
        "experiment_name": "qlib_static",
        "task": {
            "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
                      "kwargs": {"loss": "mse", "num_leaves": 7, "num_boost_round": 20, "num_threads": 1,
                                 "learning_rate": 0.1}},
            "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {
                "handler": {"class": "DataHandlerLP", "module_path": "qlib.data.dataset.handler", "kwargs": {
                    "data_loader": {"class": "StaticDataLoader", "module_path": "qlib.data.dataset.loader",
                                    "kwargs": {"config": str(write_panel(tmp / "panel.pkl"))}}}},
                "segments": {"train": ["2020-01-01", "2020-04-30"], "valid": ["2020-05-01", "2020-05-31"],
                             "test": ["2020-06-01", "2020-08-31"]}}},
            "record": [
                {"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                 "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
                {"class": "SigAnaRecord", "module_path": "qlib.workflow.record_temp",
                 "kwargs": {"ana_long_short": True, "ann_scaler": 252}},
            ],
        },
    }


def qrec(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("QRECORDER_URI", "MLFLOW_TRACKING_URI")}
    return subprocess.run([QREC, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})})


def run_statuses(db: Path) -> list[str]:
    """Statuses of every run in a SQLite store ([] when the store was never created)."""
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        try:
            return [r[0] for r in con.execute("SELECT status FROM runs")]
        except sqlite3.OperationalError:  # no tables yet
            return []


def write(path: Path, cfg) -> Path:
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False))
    return path


def error_line(res: subprocess.CompletedProcess) -> str:
    return next((ln for ln in res.stderr.splitlines() if ln.startswith("Error: ")), "")


# --- Qlib configs: no data, typos -------------------------------------------------------------


def test_qlib_benchmark_config_without_market_data_exits_2_before_any_run(tmp_path):
    empty = tmp_path / "no_data"
    empty.mkdir()
    cfg = write(tmp_path / "workflow_config_lightgbm_Alpha158.yaml",
                QLIB_LIGHTGBM_ALPHA158.replace("PROVIDER", str(empty)))
    db = tmp_path / "mlflow.db"
    res = qrec(["run", str(cfg), "--uri", f"sqlite:///{db}"], cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    err = error_line(res)
    assert str(cfg) in err and "qlib_init.provider_uri" in err and "no Qlib market data" in err
    assert str(empty) in err and "python -m qlib.run.get_data" in err
    assert "Traceback" not in res.stderr
    assert run_statuses(db) == []


QLIB_TYPOS = [
    (lambda t: t["model"].update({"class": "LGBModle"}), "task.model.class", "did you mean LGBModel"),
    (lambda t: t["model"].update({"module_path": "qlib.contrib.model.gbdtt"}), "task.model.module_path",
     "module 'qlib.contrib.model.gbdtt' not found"),
    (lambda t: t["record"][1]["kwargs"].update({"ana_long_shot": True}), "task.record[1].kwargs",
     "'ana_long_shot' -> 'ana_long_short'"),
    (lambda t: t["dataset"]["kwargs"]["handler"]["kwargs"].update({"data_loadr": {}}),
     "task.dataset.kwargs.handler.kwargs", "unexpected keyword argument 'data_loadr'"),
    (lambda t: t["dataset"]["kwargs"]["segments"].update({"test": ["2020-06-01", "2020-13-31"]}),
     "task.dataset.kwargs.segments.test", "bad date"),
    (lambda t: t["dataset"]["kwargs"]["segments"].update({"valid": ["2020-05-31", "2020-05-01"]}),
     "task.dataset.kwargs.segments.valid", "is after end"),
    (lambda t: t["dataset"]["kwargs"].pop("segments"), "task.dataset.kwargs", "needs argument(s) 'segments'"),
    (lambda t: t["model"]["kwargs"].update({"loss": "mae"}), "task.model", "NotImplementedError"),
]


@pytest.mark.parametrize("mutate, field, text", QLIB_TYPOS[:3])
def test_qlib_config_typos_exit_2_and_leave_no_run(tmp_path, mutate, field, text):
    cfg = static_qlib_config(tmp_path, tmp_path / "provider")
    mutate(cfg["task"])
    path = write(tmp_path / "wf.yaml", cfg)
    db = tmp_path / "mlflow.db"
    res = qrec(["run", str(path), "--uri", f"sqlite:///{db}"], cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    err = error_line(res)
    assert f"{path}: {field}" in err and text in err, err
    assert run_statuses(db) == []


@pytest.mark.parametrize("mutate, field, text", QLIB_TYPOS)
def test_qlib_config_errors_found_before_the_run(R, tmp_path, mutate, field, text):
    """The same checks in-process (fast), for every kind of error; nothing is written to the store."""
    from qrecorder.workflow import ConfigError
    from qrecorder.workflow.run import run_task

    cfg = static_qlib_config(tmp_path, tmp_path / "provider")
    mutate(cfg["task"])
    path = write(tmp_path / "wf.yaml", cfg)
    with pytest.raises(ConfigError) as e:
        run_task(path)
    assert e.value.field == field and text in str(e.value), str(e.value)
    assert R.list_experiments().keys() <= {"Default"}
    assert run_statuses(tmp_path / "mlflow.db") == []


def test_qlib_backtest_benchmark_without_data_is_refused_before_the_run(R, tmp_path):
    from qrecorder.workflow import ConfigError
    from qrecorder.workflow.run import run_task

    provider = tmp_path / "provider"
    for sub in ("calendars", "instruments", "features/s000"):
        (provider / sub).mkdir(parents=True)
    (provider / "calendars" / "day.txt").write_text("2020-01-02\n")
    cfg = static_qlib_config(tmp_path, provider)
    full = yaml.safe_load(QLIB_LIGHTGBM_ALPHA158.replace("PROVIDER", str(provider)))
    cfg["task"]["record"].append(full["task"]["record"][2])  # PortAnaRecord, benchmark SH000300
    with pytest.raises(ConfigError) as e:
        run_task(write(tmp_path / "wf.yaml", cfg))
    assert e.value.field == "task.record[2].kwargs.config.backtest.benchmark"
    assert "'SH000300' has no data" in str(e.value) and "sh000300" in str(e.value)
    assert run_statuses(tmp_path / "mlflow.db") == []


# --- Qlib configs: a real run -------------------------------------------------------------------


def test_qlib_static_config_runs_end_to_end_like_qrun(tmp_path):
    """LGBModel + DatasetH/DataHandlerLP/StaticDataLoader + SignalRecord + SigAnaRecord, qlib_init present,
    through `qrec run` on SQLite; Qlib's own `qrun` on the same config gives the same IC."""
    cfg = static_qlib_config(tmp_path, tmp_path / "provider")
    path = write(tmp_path / "wf.yaml", cfg)
    db = tmp_path / "mlflow.db"
    res = qrec(["run", str(path), "--uri", f"sqlite:///{db}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "FINISHED" in res.stdout and "IC" in res.stdout
    assert run_statuses(db) == ["FINISHED"]

    from qrecorder import R

    with R.uri_context(f"sqlite:///{db}"):
        (rec,) = R.list_recorders(experiment_name="qlib_static").values()
        metrics, params, tags = rec.list_metrics(), rec.list_params(), rec.list_tags()
        artifacts = set(rec.list_artifacts())
        task = rec.load_object("task")
        saved = rec.load_object("config")
    for name in ("IC", "ICIR", "Rank IC", "Rank ICIR", "Long-Short Ann Return", "Long-Avg Ann Sharpe"):
        assert np.isfinite(metrics[name]), name
    assert params["model.class"] == "LGBModel" and params["model"] == "LGBModel"  # Qlib's flattened task too
    assert tags["qrecorder.kind"] == "run" and tags["qrecorder.model"] == "LGBModel" and "hostname" in tags
    assert {"pred.pkl", "label.pkl", "params.pkl", "dataset", "task", "config"} <= artifacts | {
        a.rsplit("/", 1)[-1] for a in artifacts}
    assert task["model"]["class"] == "LGBModel" and saved["qlib_init"]["provider_uri"] == str(tmp_path / "provider")

    # Qlib's own qrun on the same file (its default file: store) computes the same numbers
    qdir = tmp_path / "qrun"
    qdir.mkdir()
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    q = subprocess.run([QRUN, str(path)], cwd=qdir, capture_output=True, text=True, timeout=300, env=env)
    assert q.returncode == 0, q.stderr[-3000:]
    (ic_file,) = [p for p in (qdir / "mlruns").glob("*/*/metrics/IC")]
    assert float(ic_file.read_text().split()[1]) == pytest.approx(metrics["IC"], rel=1e-9)


def test_qlib_config_seed_and_base_config_path(R, tmp_path):
    """--seed reaches a Qlib model that takes one (LGBModel passes it to LightGBM); BASE_CONFIG_PATH
    (qrun's inheritance) merges the base file under this one."""
    from qrecorder.workflow.run import run_task

    base = write(tmp_path / "base.yaml", static_qlib_config(tmp_path, tmp_path / "provider"))
    child = write(tmp_path / "child.yaml", {"BASE_CONFIG_PATH": base.name, "experiment_name": "child",
                                            "task": {"model": {"kwargs": {"subsample": 0.7, "subsample_freq": 1}}}})
    a = run_task(child, seed=1)
    b = run_task(child, seed=1)
    c = run_task(child, seed=2)
    assert a["metrics"]["IC"] == b["metrics"]["IC"] != c["metrics"]["IC"]
    rec = R.get_recorder(recorder_id=c["recorder_id"], experiment_name="child")
    params = rec.list_params()
    assert params["model.kwargs.seed"] == "2" and params["model.kwargs.num_leaves"] == "7"
    assert params["model.kwargs.subsample"] == "0.7" and rec.list_tags()["qrecorder.seed"] == "2"


def test_qlib_run_that_fails_while_training_is_failed_with_its_traceback(R, tmp_path):
    """A failure Qlib only meets while training (an empty valid segment) ends the run FAILED, with the
    error as tag and traceback.txt, as qrecorder's own runs."""
    from qrecorder.workflow.run import run_task

    cfg = static_qlib_config(tmp_path, tmp_path / "provider")
    cfg["task"]["dataset"]["kwargs"]["segments"]["valid"] = ["2031-01-01", "2031-02-01"]
    with pytest.raises(ValueError, match="Empty data"):
        run_task(write(tmp_path / "wf.yaml", cfg))
    (rec,) = R.list_recorders(experiment_name="qlib_static").values()
    assert rec.status == "FAILED"
    assert "Empty data" in rec.list_tags()["qrecorder.exception"]
    assert "traceback.txt" in rec.list_artifacts()


# --- without Qlib ---------------------------------------------------------------------------------


def _python_without_qlib(tmp: Path) -> list[str]:
    """This venv's Python with a site-packages view that lacks pyqlib: what a user without the extra has."""
    import site

    view = tmp / "site-without-qlib"
    view.mkdir()
    for sp in site.getsitepackages():
        for entry in Path(sp).iterdir():
            if entry.name == "qlib" or entry.name.lower().startswith("pyqlib"):
                continue
            if not (view / entry.name).exists():
                (view / entry.name).symlink_to(entry)
    code = f"import site; site.addsitedir({str(view)!r}); from qrecorder.cli import main; main()"
    return [sys.executable, "-S", "-c", code]


def test_qlib_config_without_qlib_installed_says_what_to_install(tmp_path):
    cmd = _python_without_qlib(tmp_path)
    check = subprocess.run([*cmd[:3], cmd[3].replace("from qrecorder.cli import main; main()", "import qlib")],
                           capture_output=True, text=True)
    assert "No module named 'qlib'" in check.stderr  # the view really lacks Qlib
    cfg = write(tmp_path / "workflow_config_lightgbm_Alpha158.yaml",
                QLIB_LIGHTGBM_ALPHA158.replace("PROVIDER", str(tmp_path)))
    db = tmp_path / "mlflow.db"
    res = subprocess.run([*cmd, "run", str(cfg), "--uri", f"sqlite:///{db}"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr  # one line
    assert "pyqlib is not installed" in lines[0] and "pip install 'qrecorder[qlib]'" in lines[0]
    assert "examples/benchmarks/LightGBM/workflow_config_lightgbm_synthetic.yaml" in lines[0]
    assert run_statuses(db) == []
    # qrecorder's own configs still run there
    syn = write(tmp_path / "syn.yaml", config(LINEAR))
    ok = subprocess.run([*cmd, "run", str(syn), "--uri", f"sqlite:///{db}"], cwd=tmp_path, capture_output=True,
                        text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert run_statuses(db) == ["FINISHED"]


# --- qrecorder's own (synthetic) configs: the same rule ----------------------------------------------

SYNTHETIC_TYPOS = [
    (lambda c: c["task"]["model"]["kwargs"].update({"estimatr": "ols"}), "task.model.kwargs",
     "'estimatr' -> 'estimator'"),
    (lambda c: c["task"]["model"]["kwargs"].update({"estimator": "svm"}), "task.model.kwargs", "svm"),
    (lambda c: c["task"]["record"][2]["kwargs"]["config"]["backtest"].update({"benchmark": "SH000300"}),
     "task.record[2].kwargs", "'SH000300' is not available"),
    (lambda c: c["task"]["record"][1]["kwargs"].update({"ann_scalar": 252}), "task.record[1].kwargs",
     "'ann_scalar' -> 'ann_scaler'"),
    (lambda c: c["task"]["dataset"]["kwargs"]["segments"].update({"test": ["2031-01-01", "2031-12-31"]}),
     "task.dataset.kwargs", "holds no rows"),
    (lambda c: c["task"]["dataset"]["kwargs"]["segments"].pop("test"), "task.dataset.kwargs.segments",
     "missing the 'test' segment"),
    (lambda c: c["task"]["dataset"]["kwargs"]["source"]["kwargs"].update({"n_instrument": 5}),
     "task.dataset.kwargs.source.kwargs", "'n_instrument' -> 'n_instruments'"),
]


@pytest.mark.parametrize("mutate, field, text", SYNTHETIC_TYPOS)
def test_synthetic_config_errors_exit_2_and_leave_no_run(tmp_path, mutate, field, text):
    cfg = copy.deepcopy(config(LINEAR))
    mutate(cfg)
    path = write(tmp_path / "wf.yaml", cfg)
    db = tmp_path / "mlflow.db"
    res = qrec(["run", str(path), "--uri", f"sqlite:///{db}"], cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    err = error_line(res)
    assert f"{path}: {field}" in err and text in err, err
    assert "Traceback" not in res.stderr
    assert run_statuses(db) == []
