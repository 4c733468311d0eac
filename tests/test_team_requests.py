"""Requests one workflow makes through a real ``qrec server``, counted by a local proxy.

The proxy (``benchmarks/bench_team.py``'s ``CountingProxy``) forwards to a server without auth
on the real PostgreSQL and counts requests by method and path.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, fresh_pg_database

from qrecorder.server import ServerConfig, ServerProcess, free_port

sys.path.insert(0, str(REPO / "benchmarks"))
from bench_team import CountingProxy  # noqa: E402

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def proxy(pg_admin_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CountingProxy]:
    folder = tmp_path_factory.mktemp("team_requests")
    with fresh_pg_database(pg_admin_uri, "qrec_reqs") as db:
        cfg = ServerConfig(backend_store_uri=db, artifacts_destination=str(folder / "artifacts"), port=free_port(),
                           workers=1)
        srv = ServerProcess(cfg, log_path=folder / "server.log").start()
        counting = CountingProxy(srv.url)
        try:
            yield counting
        finally:
            counting.server.shutdown()
            srv.stop()


@pytest.fixture
def R(proxy: CountingProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[object]:  # noqa: N802
    monkeypatch.chdir(tmp_path)
    for name in ("QRECORDER_URI", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    from qrecorder import R as global_r

    global_r.set_uri(proxy.url)
    yield global_r
    global_r.exp_manager._active.clear()
    global_r.set_uri(None)


def test_requests_per_run(R, proxy: CountingProxy) -> None:  # noqa: N803
    R.get_exp(experiment_name="counted")
    proxy.take()
    with R.start(experiment_name="counted"):
        R.log_params(seed=0)
        for step in range(10):
            R.log_metrics(step=step, loss=1.0 / (step + 1))
    counts = proxy.take()
    # get-by-name, runs/create, one log-batch, runs/update; MLflow's own client needs 13 for the
    # same run. No get_run for a "View run" line, none for the stale check of a short run.
    assert sum(counts.values()) <= 4, counts
    assert "GET /api/2.0/mlflow/runs/get" not in counts, counts
    assert counts.get("POST /api/2.0/mlflow/runs/log-batch") == 1, counts


def test_a_longer_run_checks_for_a_stale_mark_before_it_ends(R, proxy: CountingProxy,  # noqa: N803
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Past half the stale limit (3 heartbeat intervals) `qrec gc` could have marked the run
    FAILED on another machine: its end reads the run first (one runs/get) and keeps a mark."""
    import time

    from qrecorder import tags

    monkeypatch.setenv("QRECORDER_HEARTBEAT_INTERVAL", "0.2")  # window: 0.3 s
    with R.start(experiment_name="counted-long"):
        R.log_params(seed=0)
        rec = R.get_recorder()
        time.sleep(0.6)
        proxy.take()
    counts = proxy.take()
    assert counts.get("GET /api/2.0/mlflow/runs/get") == 1, counts
    assert R.get_recorder(recorder_id=rec.id, experiment_name="counted-long").status == "FINISHED"
    # marked stale meanwhile (as `qrec gc` does): the end keeps FAILED and says so
    from mlflow import MlflowClient

    from qrecorder.mlflow.stale import StaleRunWarning

    client = MlflowClient(tracking_uri=proxy.url)
    with pytest.warns(StaleRunWarning), R.start(experiment_name="counted-long"):
        rec = R.get_recorder()
        client.set_tag(rec.id, tags.STALE, "1")
        client.set_terminated(rec.id, "FAILED")
        time.sleep(0.6)
    assert client.get_run(rec.id).info.status == "FAILED"


def test_object_downloaded_once_per_process(R, proxy: CountingProxy) -> None:  # noqa: N803
    from qrecorder.mlflow import recorder as recorder_mod

    with R.start(experiment_name="counted"):
        R.save_objects(pred={"a": list(range(100))})
        rec = R.get_recorder()
        proxy.take()
        # While the run is ours: its tags are known and the uploaded bytes kept, no request at all.
        assert rec.load_object("pred") == {"a": list(range(100))}
        assert proxy.take() == {}
    recorder_mod._DOWNLOADS.clear()  # as in another process: nothing downloaded yet
    proxy.take()
    assert rec.load_object("pred") == {"a": list(range(100))}
    first = proxy.take()
    assert sum(v for k, v in first.items() if k.startswith("GET /api/2.0/mlflow-artifacts/artifacts/")) == 1, first
    assert rec.load_object("pred") == {"a": list(range(100))}
    second = proxy.take()
    assert not any("mlflow-artifacts" in k for k in second), second  # served from the process cache
    assert second == {"GET /api/2.0/mlflow/runs/get": 1}, second  # the ended run's tags (the checksum)
    # A new save under the same name has a new checksum: downloaded again, the new value.
    with R.start(recorder_id=rec.id, experiment_name="counted", resume=True):
        R.save_objects(pred={"a": "changed"})
    recorder_mod._DOWNLOADS.clear()
    proxy.take()
    assert rec.load_object("pred") == {"a": "changed"}
    assert any(k.startswith("GET /api/2.0/mlflow-artifacts/artifacts/") for k in proxy.take())


LINEAR = REPO / "examples" / "benchmarks" / "Linear" / "workflow_config_linear_synthetic.yaml"
ARTIFACTS = ("pred.pkl", "label.pkl", "sig_analysis/ic.pkl", "sig_analysis/ric.pkl", "sig_analysis/long_short_r.pkl",
             "sig_analysis/long_avg_r.pkl", "portfolio_analysis/report_normal_1day.pkl",
             "portfolio_analysis/positions_normal_1day.pkl", "portfolio_analysis/port_analysis_1day.pkl")


def test_workflow_requests(R, proxy: CountingProxy) -> None:  # noqa: N803
    """The Linear workflow (train, SignalRecord, SigAnaRecord, PortAnaRecord) through the server.

    Each of its 9 artifacts is one upload; around them: get-by-name, runs/create, the batches of
    values and checksum tags, the end-of-run stale check (runs/get) and runs/update. Nothing is
    read back from the server while the run is ours: no runs/get for tags, no artifact listing,
    no logged-models search, no download of an object this process saved.
    """
    from qrecorder.mlflow import recorder as recorder_mod
    from qrecorder.workflow.run import run_task

    R.get_exp(experiment_name="wf")
    proxy.take()
    result = run_task(LINEAR, experiment_name="wf")
    counts = proxy.take()
    uploads = {k: v for k, v in counts.items() if k.startswith("PUT /api/2.0/mlflow-artifacts/artifacts/")}
    meta = {k: v for k, v in counts.items() if k not in uploads}
    run_id = result["recorder_id"]
    assert sorted(k.split(f"/{run_id}/artifacts/", 1)[1] for k in uploads) == sorted(ARTIFACTS), uploads
    assert set(uploads.values()) == {1}, uploads
    assert not any(k.startswith("GET /api/2.0/mlflow-artifacts") for k in counts), counts  # no download, no listing
    assert "POST /api/2.0/mlflow/logged-models/search" not in counts, counts
    assert meta.get("GET /api/2.0/mlflow/runs/get", 0) <= 1, meta  # the stale check of a run > 15 s, nothing else
    assert meta["POST /api/2.0/mlflow/runs/create"] == 1 and meta["POST /api/2.0/mlflow/runs/update"] == 1, meta
    # One log-batch per save_objects call (its checksum tags, with what is pending), one at the
    # end; the writer's own batches depend on timing (one per second while values arrive on a
    # tracking server): 16 requests on an idle machine, room left for a slow one.
    assert sum(meta.values()) <= 10, meta
    assert sum(counts.values()) <= 19, counts
    rec = R.get_recorder(recorder_id=run_id, experiment_name="wf")
    assert rec.status == "FINISHED"
    # the metrics the run reported from its own cache are what the server holds
    assert rec.list_metrics() == result["metrics"]
    assert {"IC", "Rank IC", "time.fit_seconds"} <= set(result["metrics"]), result["metrics"]
    assert rec.list_params()["model"] == "LinearModel"

    # Another process (an empty download cache) reading the run: each object downloaded once.
    recorder_mod._DOWNLOADS.clear()
    proxy.take()
    for _ in range(2):
        for name in ("pred.pkl", "label.pkl"):
            assert len(rec.load_object(name)) > 0
    counts = proxy.take()
    downloads = {k: v for k, v in counts.items() if k.startswith("GET /api/2.0/mlflow-artifacts/artifacts/")}
    assert sorted(k.rsplit("/", 1)[1] for k in downloads) == ["label.pkl", "pred.pkl"], counts
    assert set(downloads.values()) == {1}, counts
