"""The R API on the embedded SQLite store, in the cases Qlib documents."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qrecorder import (
    Experiment,
    ExperimentNotFoundError,
    NoActiveRecorderError,
    Recorder,
    RecorderNotFoundError,
)


def test_qlib_documented_flow(R):
    pred = pd.DataFrame({"score": np.linspace(0, 1, 10)})
    with R.start(experiment_name="workflow", recorder_name="lgb") as exp:
        assert isinstance(exp, Experiment) and exp.name == "workflow"
        R.log_params(learning_rate=0.01, depth=6)
        for step in range(3):
            R.log_metrics(step=step, loss=1.0 / (step + 1), ic=0.01 * step)
        R.set_tags(model="lgb", universe="csi300")
        R.save_objects(**{"pred.pkl": pred})
        recorder_id = R.get_recorder().id
        assert R.get_recorder().status == Recorder.STATUS_R

    rec = R.get_recorder(recorder_id=recorder_id, experiment_name="workflow")
    assert rec.status == Recorder.STATUS_FI
    assert rec.end_time is not None and rec.name == "lgb"
    assert rec.list_params()["learning_rate"] == "0.01"
    assert rec.list_params()["depth"] == "6"
    assert rec.list_metrics() == {"loss": pytest.approx(1 / 3), "ic": pytest.approx(0.02)}
    assert rec.list_tags()["model"] == "lgb"
    pd.testing.assert_frame_equal(rec.load_object("pred.pkl"), pred)
    assert [s for s, _, _ in rec.get_metric_history("loss")] == [0, 1, 2]
    assert "pred.pkl" in rec.list_artifacts()


def test_log_without_active_run_starts_default_experiment_and_recorder(R):
    R.log_metrics(step=0, x=1.5)
    rec = R.get_recorder()
    assert rec.name == "mlflow_recorder" and rec.status == Recorder.STATUS_R
    exp = R.get_exp()
    assert exp.name == "Experiment"
    R.end_exp()
    assert R.get_exp(experiment_name="Experiment", create=False).get_recorder(recorder_id=rec.id).list_metrics() == {"x": 1.5}


def test_resume_continues_the_same_recorder(R):
    with R.start(experiment_name="e", recorder_name="r"):
        first = R.get_recorder().id
        R.log_metrics(step=0, loss=1.0)
        R.log_params(seed=1)
    with R.start(experiment_name="e", recorder_name="r", resume=True):
        assert R.get_recorder().id == first
        R.log_metrics(step=1, loss=0.5)
        R.log_params(seed=1)  # same value again: fine
    with R.start(experiment_name="e", recorder_id=first, resume=True):
        assert R.get_recorder().id == first
    rec = R.get_recorder(recorder_id=first)
    assert [s for s, _, _ in rec.get_metric_history("loss")] == [0, 1]
    assert rec.status == Recorder.STATUS_FI
    assert len(R.list_recorders(experiment_name="e")) == 1


def test_without_resume_a_new_recorder_each_time(R):
    for _ in range(2):
        with R.start(experiment_name="e", recorder_name="same"):
            R.log_metrics(a=1)
    assert len(R.list_recorders(experiment_name="e")) == 2


def test_uri_context_switches_and_restores(R, store_dir: Path):
    other = f"sqlite:///{store_dir / 'other' / 'o.db'}"
    default = R.get_uri()
    with R.uri_context(other):
        assert R.get_uri() == other
        with R.start(experiment_name="elsewhere"):
            R.log_metrics(a=1)
    assert R.get_uri() == default
    assert "elsewhere" not in R.list_experiments()
    with R.uri_context(other):
        assert "elsewhere" in R.list_experiments()


def test_start_with_uri_writes_to_that_store(R, store_dir: Path):
    other = f"sqlite:///{store_dir / 'x.db'}"
    with R.start(experiment_name="e", uri=other):
        assert R.get_uri() == other
        R.log_metrics(a=1)
    with R.uri_context(other):
        assert list(R.list_experiments()) and "e" in R.list_experiments()


def test_get_recorder_by_name_returns_latest(R):
    ids = []
    for i in range(3):
        with R.start(experiment_name="e", recorder_name="dup"):
            R.log_metrics(i=i)
            ids.append(R.get_recorder().id)
    assert R.get_recorder(recorder_name="dup", experiment_name="e").id == ids[-1]


def test_get_recorder_by_id_alone_finds_it_in_any_experiment(R):
    with R.start(experiment_name="somewhere"):
        rid = R.get_recorder().id
    rec = R.get_recorder(recorder_id=rid)
    assert rec.id == rid
    assert rec.experiment_id == R.get_exp(experiment_name="somewhere", create=False).id


def test_list_and_search(R):
    for i in range(3):
        with R.start(experiment_name="grid", recorder_name=f"r{i}"):
            R.log_params(i=i)
            R.log_metrics(score=float(i))
            R.set_tags(kind="even" if i % 2 == 0 else "odd")
    exps = R.list_experiments()
    assert "grid" in exps and isinstance(exps["grid"], Experiment)
    recs = R.list_recorders(experiment_name="grid")
    assert len(recs) == 3 and all(isinstance(r, Recorder) and r.id == k for k, r in recs.items())
    exp_id = exps["grid"].id
    df = R.search_records([exp_id], order_by=["metrics.score DESC"])
    assert isinstance(df, pd.DataFrame)
    assert list(df["metrics.score"]) == [2.0, 1.0, 0.0]
    assert {"params.i", "tags.kind", "run_id", "status"} <= set(df.columns)
    assert len(R.search_records([exp_id], filter_string="tags.kind = 'even'")) == 2
    assert len(R.search_records([exp_id], max_results=100000)) == 3  # Qlib's value, capped in MLflow 3
    exp = exps["grid"]
    assert len(exp.list_recorders(rtype="list", status="FINISHED")) == 3
    assert exp.list_recorders(status="RUNNING") == {}
    assert isinstance(exp.search_records(), pd.DataFrame)


def test_delete_recorder_and_experiment(R):
    with R.start(experiment_name="gone", recorder_name="a"):
        rid = R.get_recorder().id
    with R.start(experiment_name="gone", recorder_name="b"):
        pass
    R.get_exp(experiment_name="gone").delete_recorder(recorder_name="b")
    assert list(R.list_recorders(experiment_name="gone")) == [rid]
    R.delete_recorder(recorder_id=rid)
    assert R.list_recorders(experiment_name="gone") == {}
    R.delete_exp(experiment_name="gone")
    assert "gone" not in R.list_experiments()
    with pytest.raises(ExperimentNotFoundError, match="deleted"):
        R.get_exp(experiment_name="gone", create=False)


def test_get_exp_rules(R):
    with pytest.raises(ExperimentNotFoundError):
        R.get_exp(experiment_name="nope", create=False)
    created = R.get_exp(experiment_name="new")
    assert created.name == "new"
    assert R.get_exp(experiment_id=created.id, create=False).name == "new"
    with R.start(experiment_name="active"):
        assert R.get_exp().name == "active"
    assert R.get_exp().name == "Experiment"  # default, created on demand


def test_nested_starts_form_a_stack(R):
    with R.start(experiment_name="outer"):
        outer = R.get_recorder().id
        with R.start(experiment_name="inner"):
            inner = R.get_recorder().id
            R.log_metrics(v=2)
        assert R.get_recorder().id == outer
        R.log_metrics(v=1)
    assert R.get_recorder(recorder_id=inner).list_metrics() == {"v": 2}
    assert R.get_recorder(recorder_id=outer).list_metrics() == {"v": 1}


def test_threads_each_own_a_run(R):
    ids: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with R.start(experiment_name="threads", recorder_name=f"t{i}"):
                for step in range(50):
                    R.log_metrics(step=step, value=float(i))
                ids[i] = R.get_recorder().id
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids.values())) == 6
    for i, rid in ids.items():
        rec = R.get_recorder(recorder_id=rid)
        assert rec.list_metrics() == {"value": float(i)} and rec.status == "FINISHED"
        assert len(rec.get_metric_history("value")) == 50


def test_helper_thread_logs_into_the_single_active_run(R):
    with R.start(experiment_name="e"):
        t = threading.Thread(target=lambda: R.log_metrics(from_thread=1.0))
        t.start()
        t.join()
        assert R.get_recorder().list_metrics() == {"from_thread": 1.0}


def test_get_recorder_without_active_run_is_a_clear_error(R):
    with pytest.raises(NoActiveRecorderError, match="R.start"):
        R.get_recorder()
    with pytest.raises(NoActiveRecorderError):
        R.load_object("pred.pkl")


def test_unknown_ids_and_names(R):
    R.get_exp(experiment_name="e")
    with pytest.raises(RecorderNotFoundError):
        R.get_recorder(recorder_id="0" * 32)
    with pytest.raises(RecorderNotFoundError):
        R.get_recorder(recorder_name="missing", experiment_name="e")
    with pytest.raises(ExperimentNotFoundError):
        R.get_recorder(recorder_name="x", experiment_name="no-such-exp")
    with pytest.raises(ExperimentNotFoundError):
        R.get_exp(experiment_id="424242", create=False)
    with pytest.raises(ExperimentNotFoundError):
        R.list_recorders(experiment_name="no-such-exp")


def test_recorders_used_directly(R):
    exp = R.get_exp(experiment_name="direct")
    a, b = exp.create_recorder("a"), exp.create_recorder("b")
    a.start_run()
    b.start_run()
    a.log_metrics(x=1)
    b.log_metrics(x=2)
    a.end_run(Recorder.STATUS_FA)
    b.end_run()
    assert exp.get_recorder(recorder_id=a.id, create=False).status == "FAILED"
    assert exp.get_recorder(recorder_id=b.id, create=False).list_metrics() == {"x": 2.0}


def test_get_local_dir_is_the_run_folder(R):
    with R.start(experiment_name="e"):
        R.save_objects(obj=[1, 2])
        rec = R.get_recorder()
        local = Path(rec.get_local_dir())
    assert (local / "artifacts" / "obj").is_file()
    assert local.name == rec.id and local.is_absolute()


def test_positional_arguments_of_older_qlib_releases(R):
    with R.start("old_style", "rec1"):
        R.log_metrics(0, loss=1.0)  # step positional, as Qlib allows
        rid = R.get_recorder().id
    assert R.get_recorder(rid, None, "old_style").list_metrics() == {"loss": 1.0}
    assert R.get_exp(None, "old_style", False).name == "old_style"
    R.start_exp("old_style", "rec2")
    R.end_exp("FAILED")
    assert R.get_recorder(recorder_name="rec2", experiment_name="old_style").status == "FAILED"


def test_reads_see_values_logged_just_before(R):
    with R.start(experiment_name="fresh"):
        R.log_metrics(score=0.5)
        exp_id = R.get_exp().id
        df = R.search_records([exp_id])
        assert list(df["metrics.score"]) == [0.5]
        recs = R.list_recorders(experiment_name="fresh")
        assert next(iter(recs.values())).list_metrics() == {"score": 0.5}


def test_start_with_recorder_id_alone_resumes_it_in_its_experiment(R):
    with R.start(experiment_name="home", recorder_name="r"):
        rid = R.get_recorder().id
    with R.start(recorder_id=rid):
        assert R.get_exp().name == "home"
        R.log_metrics(more=1.0)
    assert R.get_recorder(recorder_id=rid).list_metrics() == {"more": 1.0}


def test_store_calls_work_while_other_threads_run(R):
    import threading

    from qrecorder import AmbiguousActiveRunError

    started, release = threading.Barrier(3, timeout=60), threading.Event()  # a failing thread breaks it, no hang

    def work(i: int) -> None:
        with R.start(experiment_name="busy", recorder_name=f"t{i}"):
            started.wait()
            release.wait(30)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    started.wait()
    try:
        assert R.get_uri().startswith("sqlite:///")
        assert "busy" in R.list_experiments()
        assert len(R.list_recorders(experiment_name="busy")) == 2
        with pytest.raises(AmbiguousActiveRunError):
            R.log_metrics(x=1.0)
    finally:
        release.set()
        for t in threads:
            t.join(60)


def test_odd_object_names_and_resumed_long_params(R):
    long_value = "v" * 7000
    with R.start(experiment_name="odd"):
        R.save_objects(**{"my pred (v2).pkl": [1, 2]})
        R.log_params(config=long_value)
        rid = R.get_recorder().id
    rec = R.get_recorder(recorder_id=rid)
    assert rec.load_object("my pred (v2).pkl") == [1, 2]
    with R.start(recorder_id=rid, resume=True):
        R.log_params(config=long_value)  # the same long value again: no conflict
    assert R.get_recorder(recorder_id=rid).list_params()["config"] == long_value


def test_experiment_renamed_or_deleted_by_someone_else_is_noticed(R):
    from qrecorder import ExperimentDeletedError

    with R.start(experiment_name="moving"):
        pass
    exp = R.get_exp(experiment_name="moving", create=False)
    exp.client.rename_experiment(exp.id, "moved")  # another process renames it
    with R.start(experiment_name="moving"):
        assert R.get_exp().id != exp.id  # a new experiment named "moving"
    exp.client.delete_experiment(R.get_exp(experiment_name="moving", create=False).id)
    with pytest.raises(ExperimentDeletedError):
        with R.start(experiment_name="moving"):
            pass


def test_recorders_and_experiments_pickle_and_clients_see_queued_values(R):
    """Qlib's TrainerR pickles recorders; Qlib's users read through ``rec.client`` mid-run."""
    import pickle

    with R.start(experiment_name="pk", recorder_name="r"):
        R.log_metrics(step=0, loss=1.0)
        R.log_metrics(step=1, loss=0.5)
        rec = R.get_recorder()
        history = rec.client.get_metric_history(rec.id, "loss")  # queued values are written first
        assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5)]
        assert R.get_exp().client.get_run(rec.id).data.metrics == {"loss": 0.5}
    back = pickle.loads(pickle.dumps(rec))
    assert (type(back), back.id, back.name, back.experiment_id, back.status) == (type(rec), rec.id, "r", rec.experiment_id, "FINISHED")
    assert back.list_metrics() == {"loss": 0.5}
    exp = pickle.loads(pickle.dumps(R.get_exp(experiment_name="pk")))
    assert (exp.id, exp.name) == (rec.experiment_id, "pk")
    assert [r.id for r in exp.list_recorders(rtype="list")] == [rec.id]
