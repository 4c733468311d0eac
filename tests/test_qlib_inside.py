"""Qlib's own objects on qrecorder's manager: qlib.init(exp_manager=QlibExpManager), no market data.

Qlib's DatasetH / DataHandlerLP / StaticDataLoader over a generated panel, Qlib's LGBModel,
SignalRecord, SigAnaRecord, TrainerR, RollingGen, RecorderCollector and OnlineToolR run through
Qlib's ``R``; everything is read back through Qlib's ``R`` and through qrecorder's ``R`` (same
run ids, metrics, objects), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import fresh_pg_database, run_python

pytest.importorskip("qlib", reason="needs the optional extra `qlib` (pyqlib)")
pytest.importorskip("lightgbm", reason="Qlib's LGBModel needs lightgbm")

from qrecorder import R as QR  # noqa: E402
from qrecorder import Recorder, objects  # noqa: E402

DATES = pd.bdate_range("2020-01-01", periods=160)
SEGMENTS = {
    "train": (DATES[0], DATES[89]),
    "valid": (DATES[90], DATES[119]),
    "test": (DATES[120], DATES[-1]),
}
LGB_KWARGS = {"loss": "mse", "num_boost_round": 40, "early_stopping_rounds": 10, "num_leaves": 8,
              "learning_rate": 0.1, "verbosity": -1, "num_threads": 1, "seed": 0}


def panel(n_inst: int = 40, seed: int = 0) -> pd.DataFrame:
    """Features and a label with signal in them, indexed (datetime, instrument) as Qlib's are."""
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product([DATES, [f"SH{600000 + i}" for i in range(n_inst)]], names=["datetime", "instrument"])
    x = rng.normal(size=(len(idx), 5))
    y = x @ np.array([0.5, -0.3, 0.2, 0.0, 0.1]) + rng.normal(scale=1.0, size=len(idx))
    cols = pd.MultiIndex.from_tuples([("feature", f"F{i}") for i in range(5)] + [("label", "LABEL0")])
    return pd.DataFrame(np.column_stack([x, y]), index=idx, columns=cols)


def qlib_dataset(frame: pd.DataFrame) -> Any:
    from qlib.data.dataset import DatasetH
    from qlib.data.dataset.handler import DataHandlerLP
    from qlib.data.dataset.loader import StaticDataLoader

    return DatasetH(DataHandlerLP(data_loader=StaticDataLoader(config=frame)), segments=SEGMENTS)


def daily_ic(pred: pd.DataFrame, label: pd.DataFrame, method: str = "pearson") -> pd.Series:
    df = pd.concat([pred["score"], label.iloc[:, 0]], axis=1, keys=["score", "label"])
    return df.groupby(level="datetime").apply(lambda d: d["score"].corr(d["label"], method=method))


def lgb_task(folder: Path, n_inst: int = 20, seed: int = 1) -> dict[str, Any]:
    """A Qlib task config (model, dataset, records) whose data is a pickled panel, no market data."""
    data_file = folder / f"panel_{n_inst}_{seed}.pkl"
    panel(n_inst=n_inst, seed=seed).to_pickle(data_file)
    return {
        "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt", "kwargs": dict(LGB_KWARGS)},
        "dataset": {
            "class": "DatasetH",
            "module_path": "qlib.data.dataset",
            "kwargs": {
                "handler": {
                    "class": "DataHandlerLP",
                    "module_path": "qlib.data.dataset.handler",
                    "kwargs": {"data_loader": {"class": "StaticDataLoader", "module_path": "qlib.data.dataset.loader",
                                               "kwargs": {"config": str(data_file)}}},
                },
                "segments": {k: (str(a.date()), str(b.date())) for k, (a, b) in SEGMENTS.items()},
            },
        },
        "record": [
            {"class": "SignalRecord", "module_path": "qlib.workflow.record_temp"},
            {"class": "SigAnaRecord", "module_path": "qlib.workflow.record_temp", "kwargs": {"ana_long_short": False}},
        ],
    }


# ---------------------------------------------------------------------- stores and Qlib's R
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_uri(request: pytest.FixtureRequest, store_dir: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{store_dir / 'mlflow.db'}"
        return
    with fresh_pg_database(request.getfixturevalue("pg_admin_uri"), "qrec_qlib") as uri:
        yield uri


def init_qlib(store_dir: Path, uri: str) -> Any:
    """qlib.init on an empty data folder (a trading calendar only, for RollingGen), qrecorder as manager."""
    import qlib

    data = store_dir / "qlib_data"
    (data / "calendars").mkdir(parents=True, exist_ok=True)
    calendar = pd.bdate_range(DATES[0], periods=len(DATES) + 60)  # trading days beyond the data, as real calendars have
    days = "\n".join(d.strftime("%Y-%m-%d") for d in calendar) + "\n"
    for name in ("day.txt", "day_future.txt"):
        (data / "calendars" / name).write_text(days)
    qlib.init(
        provider_uri=str(data),
        region="cn",
        expression_cache=None,
        dataset_cache=None,
        exp_manager={
            "class": "QlibExpManager",
            "module_path": "qrecorder.qlib",
            "kwargs": {"uri": uri, "default_exp_name": "Experiment"},
        },
    )
    from qlib.workflow import R

    return R


@pytest.fixture
def qlib_R(store_uri: str, store_dir: Path) -> Iterator[Any]:  # noqa: N802 - Qlib's name
    R = init_qlib(store_dir, store_uri)  # noqa: N806
    yield R
    manager = R.exp_manager
    for exp in reversed(manager.active_experiments()):
        if exp.active_recorder is not None:
            exp.active_recorder.end_run("FAILED")
    manager._active.clear()


# ---------------------------------------------------------------------- the workflow
def test_qlib_workflow_is_stored_by_qrecorder(qlib_R: Any, store_uri: str) -> None:
    from qlib.contrib.model.gbdt import LGBModel
    from qlib.workflow.exp import Experiment as QlibExperiment
    from qlib.workflow.record_temp import SigAnaRecord, SignalRecord
    from qlib.workflow.recorder import Recorder as QlibRecorder

    from qrecorder.qlib import QlibExpManager

    assert isinstance(qlib_R.exp_manager, QlibExpManager)
    dataset = qlib_dataset(panel())
    model = LGBModel(**LGB_KWARGS)
    with qlib_R.start(experiment_name="qlib_inside", recorder_name="lgb"):
        qlib_R.log_params(model="LGBModel", seed=0)
        model.fit(dataset)  # Qlib's LGBModel logs its learning curves through R
        qlib_R.save_objects(trained_model=model)
        recorder = qlib_R.get_recorder()
        assert isinstance(recorder, QlibRecorder) and isinstance(recorder, Recorder)
        assert recorder.status == "RUNNING" and qlib_R.get_uri() == store_uri
        rid = recorder.id
        SignalRecord(model, dataset, recorder).generate()
        SigAnaRecord(recorder, ana_long_short=True, ann_scaler=252).generate()
    assert recorder.status == "FINISHED"

    # ---- read back through Qlib's R
    rec = qlib_R.get_recorder(recorder_id=rid, experiment_name="qlib_inside")
    assert rec.id == rid and rec.name == "lgb" and rec.status == "FINISHED"
    exp = qlib_R.get_exp(experiment_name="qlib_inside", create=False)
    assert isinstance(exp, QlibExperiment) and rid in exp.list_recorders()
    assert list(qlib_R.list_recorders(experiment_name="qlib_inside")) == [rid]
    metrics = rec.list_metrics()
    assert {"IC", "ICIR", "Rank IC", "Rank ICIR", "Long-Short Ann Return", "l2.train", "l2.valid"} <= set(metrics)
    pred, label = rec.load_object("pred.pkl"), rec.load_object("label.pkl")
    assert pred.index.equals(label.index) and len(pred) == 40 * 40  # the test segment
    ic, ric = daily_ic(pred, label), daily_ic(pred, label, "spearman")
    assert metrics["IC"] == pytest.approx(ic.mean()) and metrics["IC"] > 0.2  # the panel has signal
    assert metrics["Rank IC"] == pytest.approx(ric.mean())
    assert metrics["ICIR"] == pytest.approx(ic.mean() / ic.std())
    np.testing.assert_allclose(SigAnaRecord(rec).load("ic.pkl").to_numpy(), ic.to_numpy())
    runs = qlib_R.search_records([exp.id])
    assert [r.info.run_id for r in runs] == [rid] and runs[0].data.metrics["IC"] == metrics["IC"]

    # ---- the same run through qrecorder's own R
    with QR.uri_context(store_uri):
        q = QR.get_recorder(recorder_id=rid)
        assert q.experiment_id == exp.id and q.status == "FINISHED"
        assert q.list_metrics() == metrics and q.list_params() == rec.list_params()
        assert q.list_params()["model"] == "LGBModel"
        pd.testing.assert_frame_equal(q.load_object("pred.pkl"), pred)
        steps = [s for s, _, _ in q.get_metric_history("l2.train")]
        assert steps == list(range(len(steps))) and len(steps) >= 10
        tags = q.list_tags()
        for name in ["trained_model", "pred.pkl", "label.pkl", "sig_analysis/ic.pkl", "sig_analysis/ric.pkl"]:
            assert objects.checksum_tag(name) in tags, name
        assert tags["qrecorder.pid"] and "qrecorder.heartbeat" in tags  # qrecorder's write path made the run
        frame = QR.search_records([exp.id])
        assert list(frame["run_id"]) == [rid] and frame["metrics.IC"].iloc[0] == metrics["IC"]
        reloaded = q.load_object("trained_model")
    np.testing.assert_allclose(reloaded.predict(dataset).to_numpy(), pred["score"].to_numpy())


def test_trainer_rolling_and_collectors(qlib_R: Any, store_uri: str, store_dir: Path) -> None:
    """Qlib's task tools: RollingGen makes tasks, TrainerR trains them (task_train → records),
    RecorderCollector and OnlineToolR read the recorders back."""
    from qlib.model.trainer import TrainerR
    from qlib.workflow.online.utils import OnlineToolR
    from qlib.workflow.task.collect import RecorderCollector
    from qlib.workflow.task.gen import RollingGen, task_generator

    task = lgb_task(store_dir, n_inst=20, seed=1)
    tasks = task_generator(task, RollingGen(step=20, rtype=RollingGen.ROLL_SD))
    assert len(tasks) == 2  # the 40-day test segment in two 20-day windows
    trainer = TrainerR(experiment_name="rolling")
    recs = trainer.end_train(trainer.train(tasks))
    assert len(recs) == 2 and all(r.status == "FINISHED" for r in recs)

    collected = RecorderCollector(
        experiment="rolling", artifacts_path={"pred": "pred.pkl", "ic": "sig_analysis/ic.pkl", "missing": "nothing.pkl"}
    )()  # a missing artifact is skipped: the collector catches Qlib's LoadObjectError
    assert set(collected["pred"]) == set(collected["ic"]) == {r.id for r in recs} and "missing" not in collected
    assert sorted(rec.load_object("task")["dataset"]["kwargs"]["segments"]["test"] for rec in recs) == sorted(
        t["dataset"]["kwargs"]["segments"]["test"] for t in tasks
    )
    for rec in recs:
        assert rec.list_tags()[TrainerR.STATUS_KEY] == TrainerR.STATUS_END  # tags set after the run ended
        pd.testing.assert_frame_equal(collected["pred"][rec.id], rec.load_object("pred.pkl"))
        assert collected["ic"][rec.id].mean() == pytest.approx(rec.list_metrics()["IC"])

    tool = OnlineToolR("rolling")
    tool.reset_online_tag(recs[1])
    assert [r.id for r in tool.online_models()] == [recs[1].id]

    with QR.uri_context(store_uri):
        mine = QR.list_recorders(experiment_name="rolling")
        assert set(mine) == {r.id for r in recs}
        assert all(m.status == "FINISHED" and m.list_tags()[OnlineToolR.ONLINE_KEY] for m in mine.values())
        for rec in recs:
            assert objects.checksum_tag("pred.pkl") in mine[rec.id].list_tags()
            assert mine[rec.id].list_metrics()["IC"] == rec.list_metrics()["IC"]


SUBPROC_SCRIPT = """
import json, pickle, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import test_qlib_inside as T
from qlib.model.trainer import TrainerR
T.init_qlib(Path.cwd(), {uri!r})
(rec,) = TrainerR(experiment_name="subproc", call_in_subproc=True).train([pickle.loads({task!r})])
print(json.dumps({{"cls": type(rec).__name__, "id": rec.id, "status": rec.status,
                  "rows": len(rec.load_object("pred.pkl")), "ic": rec.list_metrics()["IC"]}}))
"""


def test_trainer_in_a_subprocess_returns_usable_recorders(store_uri: str, store_dir: Path) -> None:
    """TrainerR(call_in_subproc=True) trains in a child process (Qlib re-inits there from its
    config C, which holds the store) and pickles the recorder back to the parent.

    Run from a fresh interpreter: LightGBM's OpenMP pool, once used by another test in this
    process, hangs in a forked child (a LightGBM/OpenMP limit, not qrecorder's)."""
    import json
    import pickle

    code = textwrap.dedent(SUBPROC_SCRIPT).format(
        tests=str(Path(__file__).parent), uri=store_uri, task=pickle.dumps(lgb_task(store_dir, n_inst=10, seed=2))
    )
    proc = run_python(code, store_dir, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["cls"] == "QlibRunRecorder" and out["status"] == "FINISHED" and out["rows"] == 40 * 10
    with QR.uri_context(store_uri):
        rec = QR.get_recorder(recorder_id=out["id"])
        assert rec.status == "FINISHED" and rec.list_metrics()["IC"] == out["ic"]
        assert objects.checksum_tag("pred.pkl") in rec.list_tags()


def test_qrun_with_qrecorder_as_exp_manager(store_uri: str, store_dir: Path) -> None:
    """Qlib's `qrun` with `exp_manager` in its qlib_init section stores through qrecorder."""
    import yaml

    (store_dir / "qlib_data").mkdir(exist_ok=True)
    config = {
        "qlib_init": {
            "provider_uri": str(store_dir / "qlib_data"),
            "region": "cn",
            "exp_manager": {"class": "QlibExpManager", "module_path": "qrecorder.qlib",
                            "kwargs": {"uri": store_uri, "default_exp_name": "Experiment"}},
        },
        "experiment_name": "qrun_exp",
        "task": lgb_task(store_dir, n_inst=10, seed=3),
    }
    for part in config["task"]["dataset"]["kwargs"]["segments"]:
        config["task"]["dataset"]["kwargs"]["segments"][part] = list(config["task"]["dataset"]["kwargs"]["segments"][part])
    (store_dir / "workflow.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(Path(sys.executable).with_name("qrun")), "workflow.yaml"], cwd=store_dir,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (store_dir / "mlruns").exists()  # nothing went to Qlib's default file store
    with QR.uri_context(store_uri):
        (rec,) = QR.list_recorders(experiment_name="qrun_exp").values()
        assert rec.status == "FINISHED" and "IC" in rec.list_metrics()
        assert rec.load_object("config")["experiment_name"] == "qrun_exp"
        tags = rec.list_tags()
        assert objects.checksum_tag("pred.pkl") in tags and objects.checksum_tag("config") in tags


def test_long_params_are_not_truncated_by_qlibs_mlflow_patch(
    qlib_R: Any, store_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing Qlib's recorder module lowers MLflow's param limit to 1,000 characters; through
    MLflow's own write path (QRECORDER_FAST_WRITE=0) a 3,000-character param must still be whole,
    and a 10,000-character one is kept whole as an artifact."""
    monkeypatch.setenv("QRECORDER_FAST_WRITE", "0")  # read when this test's fresh store is first written to
    mid, huge = "m" * 3000, "h" * 10_000
    with qlib_R.start(experiment_name="long"):
        qlib_R.log_params(mid=mid, huge=huge)
        rid = qlib_R.get_recorder().id
    params = qlib_R.get_recorder(recorder_id=rid, experiment_name="long").list_params()
    assert params["mid"] == mid and params["huge"] == huge


# ---------------------------------------------------------------------- statuses
def test_exception_in_qlib_start_ends_failed(qlib_R: Any, store_uri: str) -> None:
    with pytest.raises(ZeroDivisionError):
        with qlib_R.start(experiment_name="fails", recorder_name="div"):
            qlib_R.log_metrics(before=1.0)
            1 / 0  # noqa: B018
    assert qlib_R.exp_manager.active_experiment is None
    (rec,) = qlib_R.list_recorders(experiment_name="fails").values()
    assert rec.status == "FAILED" and rec.list_metrics() == {"before": 1.0}
    assert rec.list_tags()["qrecorder.exception"].startswith("ZeroDivisionError")
    assert "traceback.txt" in rec.list_artifacts()
    with QR.uri_context(store_uri):
        assert QR.get_recorder(recorder_id=rec.id).status == "FAILED"


def test_interrupt_caught_in_process_is_ended_killed_by_end_exp(qlib_R: Any) -> None:
    """A KeyboardInterrupt caught inside the process (a notebook cell interrupted) leaves Qlib's
    R.start without a word to the manager: the run stays active until R.end_exp("KILLED")."""
    with pytest.raises(KeyboardInterrupt):
        with qlib_R.start(experiment_name="notebook"):
            qlib_R.log_metrics(loss=0.25)
            raise KeyboardInterrupt
    rec = qlib_R.get_recorder()
    assert rec.status == "RUNNING"  # Qlib's R.start only handles Exception
    qlib_R.end_exp("KILLED")
    assert qlib_R.exp_manager.active_experiment is None
    again = qlib_R.get_recorder(recorder_id=rec.id, experiment_name="notebook")
    assert again.status == "KILLED" and again.list_metrics() == {"loss": 0.25}


SCRIPT = """
import os, signal, sys, time
import qlib
qlib.init(provider_uri={data!r}, region="cn", exp_manager={{"class": "QlibExpManager",
          "module_path": "qrecorder.qlib", "kwargs": {{"uri": {uri!r}, "default_exp_name": "Experiment"}}}})
from qlib.workflow import R
with R.start(experiment_name="interrupted", recorder_name={name!r}):
    R.log_metrics(step=0, loss=0.5)
    print("started", flush=True)
    os.kill(os.getpid(), signal.{sig})
    time.sleep(30)
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_in_qlib_start_ends_killed(store_uri: str, store_dir: Path, sig: str) -> None:
    """Qlib's R.start catches only Exception, and its excepthook/atexit ask for FAILED/FINISHED:
    with qrecorder as the manager the run still ends KILLED, its logged values kept."""
    (store_dir / "qlib_data").mkdir(exist_ok=True)
    code = textwrap.dedent(SCRIPT).format(data=str(store_dir / "qlib_data"), uri=store_uri, name=sig, sig=sig)
    proc = run_python(code, store_dir, timeout=180)
    assert "started" in proc.stdout, proc.stderr[-3000:]
    expected_rc = (-signal.SIGINT, 130) if sig == "SIGINT" else (143,)
    assert proc.returncode in expected_rc, (proc.returncode, proc.stderr[-3000:])
    with QR.uri_context(store_uri):
        rec = QR.get_recorder(recorder_name=sig, experiment_name="interrupted")
        assert rec.status == "KILLED", proc.stderr[-3000:]
        assert rec.list_metrics() == {"loss": 0.5}


def test_deleted_experiment_name_raises_qlibs_error(qlib_R: Any) -> None:
    """Qlib's manager raised ExpAlreadyExistError for a deleted experiment's (reserved) name."""
    from qlib.utils.exceptions import ExpAlreadyExistError as QlibExpAlreadyExistError

    from qrecorder import ExperimentDeletedError

    qlib_R.get_exp(experiment_name="gone", create=True)
    qlib_R.delete_exp(experiment_name="gone")
    with pytest.raises(QlibExpAlreadyExistError) as info:
        qlib_R.get_exp(experiment_name="gone")
    assert isinstance(info.value, ExperimentDeletedError)
