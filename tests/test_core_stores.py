"""URIs and stores: resolution, legacy Qlib mlruns folders, PostgreSQL direct."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest

from qrecorder import FileStoreNotAllowedError, UnsupportedURIError
from qrecorder.uri import configured_uri, lock_path_for, resolve_uri


def test_relative_paths_become_absolute_once(store_dir: Path, monkeypatch):
    loc = resolve_uri("sqlite:///sub/x.db")
    assert loc.uri == f"sqlite:///{store_dir / 'sub' / 'x.db'}" and loc.kind == "sqlite"
    assert resolve_uri("file:mlruns").uri == (store_dir / "mlruns").as_uri()
    assert resolve_uri(str(store_dir / "mlruns")).kind == "file"
    assert resolve_uri("runs.db").kind == "sqlite"
    assert resolve_uri("postgres://u@h/db").uri == "postgresql://u@h/db"
    assert resolve_uri("http://host:5000/").uri == "http://host:5000"
    assert lock_path_for(loc) == store_dir / "sub" / "x.db.qrecorder.lock"
    for bad in ("ftp://x", "sqlite://", "sqlite:///:memory:", ""):
        with pytest.raises(UnsupportedURIError):
            resolve_uri(bad)
    assert configured_uri() == f"sqlite:///{store_dir / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///m.db")
    assert configured_uri().endswith("/m.db")
    monkeypatch.setenv("QRECORDER_URI", "sqlite:///q.db")
    assert configured_uri().endswith("/q.db")


def test_set_uri_resolves_at_set_time(R, store_dir: Path, monkeypatch, tmp_path_factory):
    R.set_uri("sqlite:///rel.db")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    assert R.get_uri() == f"sqlite:///{store_dir / 'rel.db'}"


def test_default_store_is_mlflow_db_in_cwd(store_dir: Path):
    from qrecorder import R

    R.set_uri(None)
    with R.start(experiment_name="default-store"):
        R.log_metrics(a=1)
        rec = R.get_recorder()
    assert (store_dir / "mlflow.db").is_file()
    assert Path(rec.get_local_dir()).is_relative_to(store_dir / "mlartifacts")


def _make_qlib_mlruns(root: Path) -> tuple[str, pd.DataFrame]:
    """Write an mlruns folder the way Qlib 0.9 does: file store, pickle artifacts, no qrecorder tags."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=root.as_uri())
    exp_id = client.create_experiment("qlib_exp")
    run = client.create_run(exp_id, run_name="mlflow_recorder")
    client.log_metric(run.info.run_id, "IC", 0.05)
    client.log_param(run.info.run_id, "model", "LGBModel")
    pred = pd.DataFrame({"score": [0.1, 0.2]})
    tmp = root.parent / "pred.pkl"
    tmp.write_bytes(pickle.dumps(pred))
    client.log_artifact(run.info.run_id, str(tmp))
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id, pred


def test_legacy_qlib_mlruns_readable_when_allowed(R, store_dir: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run_id, pred = _make_qlib_mlruns(store_dir / "mlruns")
    R.set_uri("file:mlruns")
    recs = R.list_recorders(experiment_name="qlib_exp")
    assert list(recs) == [run_id]
    rec = R.get_recorder(recorder_name="mlflow_recorder", experiment_name="qlib_exp")
    assert rec.list_metrics() == {"IC": 0.05} and rec.list_params()["model"] == "LGBModel"
    pd.testing.assert_frame_equal(rec.load_object("pred.pkl"), pred)
    assert rec.status == "FINISHED"


def _mlflow_at_least(*version: int) -> bool:
    import importlib.metadata

    parts = tuple(int(p) for p in importlib.metadata.version("mlflow").split(".")[:2])
    return parts >= version


@pytest.mark.skipif(not _mlflow_at_least(3, 13), reason="MLflow refuses legacy file: stores from 3.13 on")
def test_legacy_file_store_refused_with_clear_message(R, store_dir: Path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    R.set_uri(f"file:{store_dir / 'old_mlruns'}")
    with pytest.raises(FileStoreNotAllowedError, match="MLFLOW_ALLOW_FILE_STORE=true"):
        R.list_experiments()


@pytest.mark.postgres
def test_postgresql_direct(R, pg_uri: str, store_dir: Path, monkeypatch):
    monkeypatch.setenv("QRECORDER_ARTIFACT_ROOT", str(store_dir / "pg-artifacts"))
    with R.uri_context(pg_uri):
        with R.start(experiment_name="pg", recorder_name="r"):
            R.log_params(a=1)
            for step in range(1500):  # more than one log_batch chunk
                R.log_metrics(step=step, loss=float(step))
            R.save_objects(frame=pd.DataFrame({"x": [1]}))
            rid = R.get_recorder().id
        rec = R.get_recorder(recorder_name="r", experiment_name="pg")
        assert rec.id == rid and rec.status == "FINISHED"
        assert len(rec.get_metric_history("loss")) == 1500
        pd.testing.assert_frame_equal(rec.load_object("frame"), pd.DataFrame({"x": [1]}))
        assert Path(rec.get_local_dir()).is_relative_to(store_dir / "pg-artifacts")


def test_mlflow_telemetry_is_off_even_when_mlflow_was_imported_first(tmp_path: Path):
    """MLflow's telemetry thread removes an environment variable while qrecorder's writer thread
    may iterate os.environ (requests does, per HTTP request): a log-batch failed with KeyError
    '_MLFLOW_TELEMETRY_SESSION_ID'. qrecorder turns it off unless the user set it."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    ci_markers = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE")
    env = {k: v for k, v in os.environ.items() if k not in ci_markers and k != "MLFLOW_DISABLE_TELEMETRY"}
    env["PYTHONPATH"] = str(REPO / "src")
    code = """
import sys
order = sys.argv[1]
if order == "mlflow-first":
    import mlflow
    from mlflow.telemetry.client import get_telemetry_client
    assert get_telemetry_client() is not None, "the check is void: MLflow's telemetry did not start"
from qrecorder import R
R.set_uri("sqlite:///" + sys.argv[2])
with R.start(experiment_name="t"):
    R.log_metrics(x=1.0)
    R.get_recorder().client  # MLflow's client is open
import os
from mlflow.telemetry.client import get_telemetry_client
print(get_telemetry_client(), os.environ.get("MLFLOW_DISABLE_TELEMETRY"), "_MLFLOW_TELEMETRY_SESSION_ID" in os.environ)
"""
    for order in ("mlflow-first", "qrecorder-first"):
        out = subprocess.run([sys.executable, "-c", code, order, str(tmp_path / f"{order}.db")], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["None", "true", "False"], (order, out.stdout)
    env["MLFLOW_DISABLE_TELEMETRY"] = "false"  # the user's choice stands
    out = subprocess.run([sys.executable, "-c", code, "mlflow-first", str(tmp_path / "opt-in.db")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("<mlflow.telemetry.client.TelemetryClient") and out.stdout.split()[-2] == "false", out.stdout
