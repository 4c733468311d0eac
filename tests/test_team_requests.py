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
    # get-by-name, runs/create, one log-batch, runs/update (+ at most one runs/get); MLflow's own
    # client needs 13 for the same run. No get_run for a "View run" line.
    assert sum(counts.values()) <= 5, counts
    assert counts.get("POST /api/2.0/mlflow/runs/log-batch") == 1, counts


def test_object_downloaded_once_per_process(R, proxy: CountingProxy) -> None:  # noqa: N803
    with R.start(experiment_name="counted"):
        R.save_objects(pred={"a": list(range(100))})
        rec = R.get_recorder()
    proxy.take()
    assert rec.load_object("pred") == {"a": list(range(100))}
    first = proxy.take()
    assert any(k.startswith("GET /api/2.0/mlflow-artifacts/artifacts/") for k in first), first
    assert rec.load_object("pred") == {"a": list(range(100))}
    second = proxy.take()
    assert not any("mlflow-artifacts" in k for k in second), second  # served from the process cache
    assert sum(second.values()) <= 1, second  # the run's tags (the checksum), nothing else
    # A new save under the same name has a new checksum: downloaded again, the new value.
    with R.start(recorder_id=rec.id, experiment_name="counted", resume=True):
        R.save_objects(pred={"a": "changed"})
    proxy.take()
    assert rec.load_object("pred") == {"a": "changed"}
    assert any(k.startswith("GET /api/2.0/mlflow-artifacts/artifacts/") for k in proxy.take())
