"""Qlib users' scripts, attacked as an outside user would: the one-line swap
(``from qlib.workflow import R`` -> ``from qrecorder import R``) in scripts that keep Qlib's
models, record templates, trainers and online tools, and Qlib's ``R`` on ``QlibExpManager``.

No market data: Qlib's DatasetH over a StaticDataLoader panel (see test_qlib_inside.py).
"""

from __future__ import annotations

import json
import os
import pickle
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import reset_r, run_python

pytest.importorskip("qlib", reason="needs the optional extra `qlib` (pyqlib)")
pytest.importorskip("lightgbm", reason="Qlib's LGBModel needs lightgbm")

import qlib.workflow  # noqa: E402,F401 - Qlib imported, as in every script that uses its records

TESTS = Path(__file__).parent

# Qlib's examples/workflow_by_code.py with the one-line swap, on a data-free panel: qlib.init with
# Qlib's defaults (its manager on file:mlruns, which MLflow 3 refuses), LGBModel.fit logging its
# learning curves through Qlib's R, SignalRecord and SigAnaRecord on qrecorder's recorder.
WORKFLOW_BY_CODE = """
import json, os, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import qlib
from qlib.constant import REG_CN
qlib.init(provider_uri=str(Path("qlib_data").resolve()), region=REG_CN)
from qrecorder import R                       # was: from qlib.workflow import R
R.set_uri({uri!r})
from qlib.utils import flatten_dict
from qlib.workflow.record_temp import SignalRecord, SigAnaRecord
from qlib.contrib.model.gbdt import LGBModel
import test_qlib_inside as T
dataset = T.qlib_dataset(T.panel(n_inst=20))
model = LGBModel(**T.LGB_KWARGS)
with R.start(experiment_name="workflow"):
    R.log_params(**flatten_dict({{"model": {{"class": "LGBModel", "kwargs": T.LGB_KWARGS}}}}))
    model.fit(dataset)
    R.save_objects(**{{"params.pkl": model}})
    recorder = R.get_recorder()
    SignalRecord(model, dataset, recorder).generate()
    SigAnaRecord(recorder).generate()         # finds pred.pkl through Qlib's `except LoadObjectError`
    rid = recorder.id
rec = R.get_recorder(recorder_id=rid, experiment_name="workflow")
print(json.dumps({{"status": rec.status, "metrics": sorted(rec.list_metrics()),
                  "runs": {{n: len(e.list_recorders()) for n, e in R.list_experiments().items()}}}}))
"""


def test_workflow_by_code_with_the_one_line_swap_runs_and_keeps_the_learning_curves(store_dir: Path) -> None:
    (store_dir / "qlib_data").mkdir()
    uri = f"sqlite:///{store_dir / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_FILE_STORE"}
    code = textwrap.dedent(WORKFLOW_BY_CODE).format(tests=str(TESTS), uri=uri)
    proc = run_python(code, store_dir, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["status"] == "FINISHED"
    # LGBModel's curves (logged through Qlib's R) are in the qrecorder run, beside SigAnaRecord's IC
    assert {"l2.train", "l2.valid", "IC", "ICIR", "Rank IC", "Rank ICIR"} <= set(out["metrics"])
    assert out["runs"] == {"Default": 0, "workflow": 1}  # no second run anywhere
    assert not (store_dir / "mlruns").exists()  # nothing went to Qlib's default file store


# ---------------------------------------------------------------------- in-process
@pytest.fixture
def swapped(R: Any, store_dir: Path) -> Iterator[Any]:  # noqa: N803 - the name users know
    """qrecorder's R on this test's store, Qlib initialised with its own defaults (as a script
    that swapped the import still calls qlib.init for its data)."""
    import qlib

    (store_dir / "qlib_data").mkdir()
    qlib.init(provider_uri=str(store_dir / "qlib_data"), region="cn", expression_cache=None, dataset_cache=None)
    yield R
    reset_r(R)


def test_swapped_recorders_are_qlibs_recorders(swapped: Any) -> None:
    """Qlib's record templates catch Qlib's LoadObjectError, its trainers and online tools test
    isinstance(x, qlib.workflow.recorder.Recorder), Qlib's call_in_subproc pickles recorders."""
    from qlib.utils.exceptions import LoadObjectError as QlibLoadObjectError
    from qlib.workflow.exp import Experiment as QlibExperimentBase
    from qlib.workflow.record_temp import SigAnaRecord
    from qlib.workflow.recorder import Recorder as QlibRecorderBase

    from qrecorder import LoadObjectError, Recorder

    with swapped.start(experiment_name="swap", recorder_name="r") as exp:
        swapped.save_objects(**{"pred.pkl": pd.DataFrame({"score": [0.5, -0.5]})})
        rec = swapped.get_recorder()
    assert isinstance(exp, QlibExperimentBase)
    assert isinstance(rec, QlibRecorderBase) and isinstance(rec, Recorder)
    again = swapped.get_recorder(recorder_id=rec.id, experiment_name="swap")
    assert isinstance(again, QlibRecorderBase) and again.async_log is None  # Qlib's attribute
    with pytest.raises(QlibLoadObjectError) as info:
        again.load_object("missing.pkl")
    assert isinstance(info.value, LoadObjectError)  # qrecorder's class too
    # SigAnaRecord.load looks in sig_analysis/ first, then (on Qlib's LoadObjectError) in its parent's place
    pd.testing.assert_frame_equal(SigAnaRecord(again).load("pred.pkl"), again.load_object("pred.pkl"))
    copy = pickle.loads(pickle.dumps(again))
    assert copy.id == rec.id and copy.load_object("pred.pkl")["score"].tolist() == [0.5, -0.5]
    # qrecorder's own semantics are kept: search_records is a DataFrame
    assert list(swapped.search_records([exp.id])["run_id"]) == [rec.id]


def test_qlibs_r_stores_into_the_swapped_r_run(swapped: Any, store_dir: Path) -> None:
    """Qlib's models log through Qlib's R (LGBModel.fit, the PyTorch models): inside
    `with qrecorder.R.start()` that must be the qrecorder run; Qlib's trainers (R.start)
    store where qrecorder's R does."""
    from qlib.model.trainer import TrainerR
    from qlib.workflow import R as qlib_r
    from qlib.workflow.online.utils import OnlineToolR

    with swapped.start(experiment_name="swap_curves") as exp:
        qlib_r.log_metrics(step=0, **{"l2.train": 0.5})  # what LGBModel.fit does
        assert qlib_r.get_recorder().id == swapped.get_recorder().id
        assert qlib_r.get_exp().id == exp.id
        rid = swapped.get_recorder().id
    assert swapped.get_recorder(recorder_id=rid, experiment_name="swap_curves").list_metrics() == {"l2.train": 0.5}
    assert qlib_r.exp_manager.active_experiment is None and swapped.exp_manager.active_experiment is None

    def train(task: dict, experiment_name: str, recorder_name: str | None = None) -> Any:  # a task_train stand-in
        with qlib_r.start(experiment_name=experiment_name, recorder_name=recorder_name):
            qlib_r.log_params(**task)
            qlib_r.save_objects(task=task)
            return qlib_r.get_recorder()

    recs = TrainerR(experiment_name="swap_trained", train_func=train).train([{"seed": 1}, {"seed": 2}])
    mine = swapped.list_recorders(experiment_name="swap_trained")
    assert set(mine) == {r.id for r in recs} and all(r.status == "FINISHED" for r in mine.values())
    OnlineToolR("swap_trained").reset_online_tag(mine[recs[0].id])  # isinstance(rec, Recorder) in Qlib
    assert OnlineToolR("swap_trained").get_online_tag(mine[recs[0].id]) == OnlineToolR.ONLINE_TAG
    assert not (store_dir / "mlruns").exists()


# ---------------------------------------------------------------------- Qlib's R on QlibExpManager
@pytest.fixture
def qlib_r(store_dir: Path) -> Iterator[Any]:
    from test_qlib_inside import init_qlib

    r = init_qlib(store_dir, f"sqlite:///{store_dir / 'mlflow.db'}")
    yield r
    manager = r.exp_manager
    for exp in reversed(manager.active_experiments()):
        if exp.active_recorder is not None:
            exp.active_recorder.end_run("FAILED")
    manager._active.clear()


def test_search_records_returns_mlflows_paged_list(qlib_r: Any) -> None:
    """Qlib's MLflowExpManager returned MlflowClient.search_runs' PagedList (code pages with .token)."""
    from mlflow.store.entities.paged_list import PagedList

    with qlib_r.start(experiment_name="paged"):
        qlib_r.log_metrics(ic=0.1)
        rid = qlib_r.get_recorder().id
    exp = qlib_r.get_exp(experiment_name="paged", create=False)
    for runs in (qlib_r.search_records([exp.id]), exp.search_records(max_results=10)):
        assert isinstance(runs, PagedList) and runs.token is None
        assert [r.info.run_id for r in runs] == [rid]


def test_qlib_init_inside_a_swapped_run_still_works(swapped: Any, store_dir: Path) -> None:
    """Once Qlib's R follows qrecorder's, qlib.init inside a qrecorder run must not raise Qlib's
    "don't reinitialize while a recorder is active" (that run is not Qlib's)."""
    import qlib
    from qlib.utils.exceptions import RecorderInitializationError
    from qlib.workflow import R as qlib_r

    with swapped.start(experiment_name="reinit"):
        qlib_r.log_metrics(a=1.0)  # Qlib's R follows qrecorder's now
        qlib.init(provider_uri=str(store_dir / "qlib_data"), region="cn")  # e.g. a script switching data
        rid = swapped.get_recorder().id
    assert swapped.get_recorder(recorder_id=rid, experiment_name="reinit").status == "FINISHED"
    with swapped.start(experiment_name="reinit"):  # Qlib's R follows again
        with pytest.raises(RecorderInitializationError):  # Qlib's own rule, for a run of Qlib's R
            with qlib_r.start(experiment_name="inner"):
                qlib.init(provider_uri=str(store_dir / "qlib_data"), region="cn")


def test_set_uri_after_qlib_init_makes_qlibs_trainers_store_there(swapped: Any, store_dir: Path) -> None:
    """A swapped script that trains with Qlib's TrainerR before any run of its own: R.set_uri
    (what the migration guide tells it to call) points Qlib's R at the same store."""
    from qlib.model.trainer import TrainerR

    other = f"sqlite:///{store_dir / 'other.db'}"
    swapped.set_uri(other)

    def train(task: dict, experiment_name: str, recorder_name: str | None = None) -> Any:
        from qlib.workflow import R as qlib_r

        with qlib_r.start(experiment_name=experiment_name, recorder_name=recorder_name):
            qlib_r.log_params(**task)
            return qlib_r.get_recorder()

    (rec,) = TrainerR(experiment_name="first", train_func=train).train([{"seed": 1}])
    assert list(swapped.list_recorders(experiment_name="first")) == [rec.id]
    assert rec.uri == swapped.get_resolved_uri()


def test_mlflow_clients_of_recorder_and_manager_see_what_was_logged(qlib_r: Any) -> None:
    """Qlib users read curves with MLflow's client (Qlib's recorder and manager expose one):
    in the middle of a run, it must see the values qrecorder's writer still has queued."""
    with qlib_r.start(experiment_name="client"):
        for step in range(5):
            qlib_r.log_metrics(step=step, loss=1.0 / (step + 1))
        qlib_r.log_params(a=1)
        rec = qlib_r.get_recorder()
        assert [m.step for m in rec.client.get_metric_history(rec.id, "loss")] == [0, 1, 2, 3, 4]
        assert rec.client.get_run(rec.id).data.params["a"] == "1"
        qlib_r.log_metrics(ic=0.3)
        exp_id = qlib_r.get_exp().id
        runs = qlib_r.exp_manager.client.search_runs([exp_id], "metrics.ic > 0.2")
        assert [r.info.run_id for r in runs] == [rec.id]


def test_one_experiment_is_equal_whichever_r_handed_it_out(swapped: Any, store_dir: Path) -> None:
    from qlib.workflow import R as qlib_r

    from qrecorder.mlflow.experiment import MLflowExperiment

    with swapped.start(experiment_name="same") as exp:
        assert qlib_r.get_exp() == exp and qlib_r.get_exp(experiment_name="same") == exp
    plain = MLflowExperiment(exp.id, exp.name, exp.uri)  # what qrecorder's R made before Qlib was imported
    assert plain == exp and hash(plain) == hash(exp) and len({plain, exp}) == 1
    with swapped.uri_context(f"sqlite:///{store_dir / 'other.db'}"):
        elsewhere = swapped.get_exp(experiment_name="same")
    assert elsewhere.id == exp.id and elsewhere != exp  # the same id in another store is another experiment
