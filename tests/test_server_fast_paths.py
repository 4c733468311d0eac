"""``qrec server``'s fast paths (``qrecorder.server_app``) give MLflow's answers and rows.

Two real servers on two fresh PostgreSQL databases, one with the fast paths and one without
(plain MLflow handlers), get the same requests; their answers (status, error code, body)
and the rows they leave in MLflow's tables must be the same. A third server with basic auth
checks that the fast paths never answer a request that auth refuses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
import requests
from conftest import fresh_pg_database

from qrecorder import server as S
from qrecorder.server import ServerConfig, ServerProcess, free_port
from qrecorder.server_app import FAST_PATH_HEADER, parse_log_batch, parse_update_run

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

API = "/api/2.0/mlflow/"


class Target:
    """One server and its database."""

    def __init__(self, srv: ServerProcess, db: str) -> None:
        self.srv, self.db, self.session = srv, db, requests.Session()

    def post(self, path: str, body: Any, auth: tuple[str, str] | None = None) -> requests.Response:
        return self.session.post(self.srv.url + API + path, json=body, auth=auth, timeout=60)

    def new_run(self, exp_id: str) -> str:
        r = self.post("runs/create", {"experiment_id": exp_id, "start_time": 1_700_000_000_000, "run_name": "r",
                                      "tags": [{"key": "mlflow.user", "value": "u"}]})
        r.raise_for_status()
        return r.json()["run"]["info"]["run_id"]

    def rows(self, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
        con = psycopg2.connect(self.db)
        try:
            cur = con.cursor()
            out = {}
            for table, cols in (("metrics", "key, value, timestamp, step, is_nan"),
                                ("latest_metrics", "key, value, timestamp, step, is_nan"),
                                ("params", "key, value"), ("tags", "key, value")):
                cur.execute(f"SELECT {cols} FROM {table} WHERE run_uuid = %s ORDER BY {cols}", (run_id,))  # noqa: S608
                out[table] = cur.fetchall()
            cur.execute("SELECT status, end_time, lifecycle_stage, name FROM runs WHERE run_uuid = %s", (run_id,))
            out["runs"] = cur.fetchall()
            return out
        finally:
            con.close()


def _start(pg_admin_uri: str, folder: Any, prefix: str, **cfg: Any) -> Iterator[Target]:
    with fresh_pg_database(pg_admin_uri, prefix) as db:
        srv = ServerProcess(ServerConfig(backend_store_uri=db, artifacts_destination=str(folder / "artifacts"),
                                         port=free_port(), workers=1, **cfg), log_path=folder / "server.log").start()
        try:
            yield Target(srv, db)
        finally:
            srv.stop()


@pytest.fixture(scope="module")
def fast(pg_admin_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from _start(pg_admin_uri, tmp_path_factory.mktemp("fast"), "qrec_fast")


@pytest.fixture(scope="module")
def plain(pg_admin_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from _start(pg_admin_uri, tmp_path_factory.mktemp("plain"), "qrec_plain", fast_paths=False)


def _experiment(t: Target) -> str:
    r = t.post("experiments/create", {"name": f"e{time.monotonic_ns()}"})
    r.raise_for_status()
    return r.json()["experiment_id"]


def _metrics(n: int, start: int = 0, key: str = "loss") -> list[dict[str, Any]]:
    return [{"key": key, "value": 1.0 / (i + 1), "timestamp": 1_700_000_000_000 + i, "step": i} for i in range(start, start + n)]


# Each step: (path, body with "$RUN" for the run id). Compared answer by answer, then row by row.
PLAIN_SEQUENCE: list[tuple[str, dict[str, Any]]] = [
    ("runs/log-batch", {"run_id": "$RUN", "metrics": [
        {"key": "m", "value": "NaN", "timestamp": 5, "step": 1},
        {"key": "m", "value": "Infinity", "timestamp": 6, "step": 2},
        {"key": "n", "value": "-Infinity", "timestamp": 7},
        {"key": "n", "value": 3, "timestamp": "8", "step": "0"},
        {"key": "n", "value": 3, "timestamp": "8", "step": "0"},  # an exact repeat: kept once
    ], "params": [{"key": "lr", "value": "0.1"}], "tags": [{"key": "team", "value": "a"}]}),
    ("runs/log-batch", {"run_id": "$RUN", "metrics": _metrics(1000)}),
    ("runs/log-batch", {"run_id": "$RUN", "metrics": _metrics(3, start=2),  # older steps: latest unchanged
                        "params": [{"key": "lr", "value": "0.1"}],  # the same value again: fine
                        "tags": [{"key": "team", "value": "b"}]}),  # a tag changes
    ("runs/log-batch", {"run_id": "$RUN", "params": [{"key": "lr", "value": "0.2"}]}),  # a param cannot change
    ("runs/log-batch", {"run_id": "$RUN", "metrics": _metrics(1001)}),  # over MLflow's limit
    ("runs/log-batch", {"run_id": "$RUN", "metrics": [{"key": "bad/../key", "value": 1, "timestamp": 1}]}),
    ("runs/log-batch", {"run_id": "$RUN", "params": [{"key": "p", "value": "x" * 7000}]}),  # MLflow truncates it
    ("runs/log-batch", {"run_id": "$RUN", "params": [{"key": "k" * 300, "value": "1"}]}),  # key too long
    ("runs/log-batch", {"run_id": "$RUN", "tags": [{"key": "mlflow.runName", "value": "renamed"}]}),
    ("runs/log-batch", {"run_id": "not-a-run-id", "params": [{"key": "a", "value": "1"}]}),
    ("runs/log-batch", {"run_id": "$RUN", "params": [{"key": "dup", "value": "1"}, {"key": "dup", "value": "2"}]}),
    ("runs/update", {"run_id": "$RUN", "status": "RUNNING"}),
    ("runs/update", {"run_id": "$RUN", "status": "NOT_A_STATUS", "end_time": 5}),
    ("runs/update", {"run_id": "0" * 32, "status": "FINISHED", "end_time": 5}),
    ("runs/update", {"run_id": "$RUN", "run_uuid": "$RUN", "status": "FINISHED", "end_time": 1_700_000_009_000}),
]


def _fill(body: Any, run_id: str) -> Any:
    if isinstance(body, dict):
        return {k: _fill(v, run_id) for k, v in body.items()}
    if isinstance(body, list):
        return [_fill(v, run_id) for v in body]
    return run_id if body == "$RUN" else body


def _answer(r: requests.Response, run_id: str) -> tuple[int, Any]:
    try:
        body = r.json()
    except ValueError:
        return r.status_code, r.text
    if r.status_code == 200:
        return 200, _fill_back(body, run_id)
    return r.status_code, body.get("error_code")


def _fill_back(body: Any, run_id: str) -> Any:
    if isinstance(body, dict):
        return {k: _fill_back(v, run_id) for k, v in body.items() if k != "experiment_id"}
    if isinstance(body, list):
        return [_fill_back(v, run_id) for v in body]
    if isinstance(body, str) and run_id in body:
        return body.replace(run_id, "$RUN")
    return body


def test_same_answers_and_rows_as_mlflow(fast: Target, plain: Target) -> None:
    runs = {t: t.new_run(_experiment(t)) for t in (fast, plain)}
    used_fast = []
    for path, body in PLAIN_SEQUENCE:
        answers = {}
        for t, run_id in runs.items():
            r = t.post(path, _fill(body, run_id))
            answers[t] = _answer(r, run_id)
            if t is fast:
                used_fast.append(r.headers.get(FAST_PATH_HEADER) == "1")
            else:
                assert FAST_PATH_HEADER not in r.headers
        assert answers[fast] == answers[plain], (path, body if len(str(body)) < 300 else path)
    assert runs and fast.rows(runs[fast]) == plain.rows(runs[plain])
    # The plain shapes were answered by the fast path; errors and renames by MLflow.
    fast_steps = [i for i, used in enumerate(used_fast) if used]
    assert fast_steps == [0, 1, 2, 6, 11, 14], fast_steps
    final = fast.rows(runs[fast])
    assert final["runs"] == [("FINISHED", 1_700_000_009_000, "active", "renamed")]
    assert ("m", 0.0, 5, 1, True) in final["metrics"]  # NaN as MLflow stores it
    assert [len(v) for k, v in final["params"] if k == "p"] == [6000]  # truncated as MLflow does
    assert ("m", 1.7976931348623157e308, 6, 2, False) in final["metrics"]


def test_deleted_run_is_refused_like_mlflow(fast: Target, plain: Target) -> None:
    for t in (fast, plain):
        run_id = t.new_run(_experiment(t))
        t.post("runs/delete", {"run_id": run_id}).raise_for_status()
        r = t.post("runs/log-batch", {"run_id": run_id, "metrics": _metrics(2)})
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text
        assert FAST_PATH_HEADER not in r.headers
        r = t.post("runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 1})
        assert r.status_code == 400 and FAST_PATH_HEADER not in r.headers
        assert t.rows(run_id)["metrics"] == [] and t.rows(run_id)["runs"][0][0] == "RUNNING"


def test_qrecorder_run_through_the_fast_server_reads_back(fast: Target, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Any) -> None:
    from qrecorder import R

    monkeypatch.chdir(tmp_path)
    R.set_uri(fast.srv.url)
    try:
        with R.start(experiment_name="fast-readback"):
            R.log_params(seed=3)
            for step in range(2500):
                R.log_metrics(step=step, loss=1.0 / (step + 1), nan=math.nan)
            rec = R.get_recorder()
        back = R.get_recorder(recorder_id=rec.id, experiment_name="fast-readback")
        assert back.status == "FINISHED"
        assert back.list_params()["seed"] == "3"
        assert back.list_metrics()["loss"] == pytest.approx(1.0 / 2500)
        from mlflow import MlflowClient

        history = MlflowClient(tracking_uri=fast.srv.url).get_metric_history(rec.id, "loss")
        assert len(history) == 2500
        assert math.isnan(MlflowClient(tracking_uri=fast.srv.url).get_run(rec.id).data.metrics["nan"])
    finally:
        R.set_uri(None)


@pytest.fixture(scope="module")
def auth_capable() -> None:
    try:
        S.require_auth_capable_mlflow()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"qrec server --auth is refused on this MLflow: {exc}"[:200])


@pytest.fixture(scope="module")
def auth(auth_capable: None, pg_admin_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("fast_auth")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QRECORDER_ADMIN_PASSWORD", "admin-password-123")
        for target in _start(pg_admin_uri, folder, "qrec_fast_auth", auth=True, auth_dir=folder / "auth"):
            admin = {"admin_user": "admin", "admin_password": "admin-password-123"}
            S.create_user(target.srv.url, "reader", "reader-password-123", **admin)
            S.create_user(target.srv.url, "writer", "writer-password-123", **admin)
            yield target


def test_auth_runs_before_the_fast_paths(auth: Target) -> None:
    admin = ("admin", "admin-password-123")
    r = auth.post("experiments/create", {"name": "guarded"}, auth=admin)
    r.raise_for_status()
    exp_id = r.json()["experiment_id"]
    S.grant_permission(auth.srv.url, "reader", exp_id, "READ", admin_user="admin", admin_password="admin-password-123")
    S.grant_permission(auth.srv.url, "writer", exp_id, "EDIT", admin_user="admin", admin_password="admin-password-123")
    r = auth.post("runs/create", {"experiment_id": exp_id, "start_time": 1, "run_name": "g"}, auth=admin)
    r.raise_for_status()
    run_id = r.json()["run"]["info"]["run_id"]
    batch = {"run_id": run_id, "metrics": _metrics(3), "params": [{"key": "a", "value": "1"}]}
    for who, password in ((None, None), ("reader", "reader-password-123"), ("reader", "wrong-password"),
                          ("nobody", "nobody-password-1")):
        creds = (who, password) if who else None
        for path, body in (("runs/log-batch", batch), ("runs/update", {"run_id": run_id, "status": "KILLED", "end_time": 1})):
            r = auth.post(path, body, auth=creds)
            assert r.status_code in (401, 403), (who, path, r.status_code, r.text[:200])
            assert FAST_PATH_HEADER not in r.headers
    # Paths no route matches (before_request hooks still run for them; auth does not guard them)
    for path in ("/x/api/2.0/mlflow/runs/log-batch", "/api/2.0/mlflow/runs/log-batch/", "/api/9.9/mlflow/runs/log-batch"):
        r = auth.session.post(auth.srv.url + path, json=batch, auth=("reader", "reader-password-123"), timeout=60)
        assert r.status_code in (401, 403, 404, 405), (path, r.status_code)
        assert FAST_PATH_HEADER not in r.headers
    assert auth.rows(run_id)["metrics"] == [] and auth.rows(run_id)["runs"][0][0] == "RUNNING"
    r = auth.post("runs/log-batch", batch, auth=("writer", "writer-password-123"))
    assert r.status_code == 200 and r.headers.get(FAST_PATH_HEADER) == "1", r.text
    assert len(auth.rows(run_id)["metrics"]) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"run_id": "r", "metrics": [{"key": "k", "value": 1, "timestamp": 1, "model_id": "m-1"}]},
        {"run_id": "r", "metrics": [{"key": "k", "value": True, "timestamp": 1}]},
        {"run_id": "r", "metrics": [{"key": "k", "value": "1.5", "timestamp": 1}]},
        {"run_id": "r", "metrics": [{"key": "k", "value": 1}]},
        {"run_id": "r", "params": [{"key": "k", "value": 1}]},
        {"run_id": "r", "tags": [{"key": "mlflow.note.content", "value": "x"}]},
        {"run_id": "r", "extra": 1},
        {"run_id": 5},
        {"run_id": "r", "metrics": {"key": "k"}},
    ],
)
def test_other_shapes_go_to_mlflow(body: dict[str, Any]) -> None:
    assert parse_log_batch(body) is None


def test_update_shapes() -> None:
    assert parse_update_run({"run_id": "r", "status": "FINISHED", "end_time": "12"}) == ("r", "FINISHED", 12)
    assert parse_update_run({"run_uuid": "r", "status": "KILLED"}) == ("r", "KILLED", None)
    for body in ({"run_id": "r", "run_name": "x", "status": "FINISHED"}, {"run_id": "r"},
                 {"run_id": "r", "status": 3}, {"run_id": "r", "end_time": 1.5}, {"run_id": "r", "status": "DONE"}):
        assert parse_update_run(body) is None, body


def test_auth_on_an_older_mlflow_is_refused_with_the_way_out() -> None:
    from qrecorder.errors import ConfigurationError

    for old in ("3.9.0", "3.16.1"):
        with pytest.raises(ConfigurationError, match=r"needs MLflow 3\.17 or newer; MLflow .* is installed.*pip install"):
            S.require_auth_capable_mlflow(old)
    S.require_auth_capable_mlflow("3.17.2")
    S.require_auth_capable_mlflow("4.0.0")


def test_a_server_that_never_gets_ready_leaves_no_process(pg_admin_uri: str, tmp_path: Any) -> None:
    """start() gives up with an error and stops the whole process group (mlflow, uvicorn, workers)."""
    import os

    with fresh_pg_database(pg_admin_uri, "qrec_notready") as db:
        cfg = ServerConfig(backend_store_uri=db, artifacts_destination=str(tmp_path / "a"), port=free_port(), workers=1)
        srv = ServerProcess(cfg, log_path=tmp_path / "server.log")
        import qrecorder.server as server_mod

        real = server_mod.is_healthy
        server_mod.is_healthy = lambda url, timeout=2.0: False  # never ready
        try:
            with pytest.raises(Exception, match="not healthy within"):
                srv.start(timeout=15)
        finally:
            server_mod.is_healthy = real
        assert srv.proc is not None and srv.proc.poll() is not None
        deadline = time.monotonic() + 20  # SIGKILLed workers are reaped by init a moment later
        while time.monotonic() < deadline:
            try:
                os.killpg(srv.proc.pid, 0)
            except ProcessLookupError:
                break  # no process of the group is left
            time.sleep(0.2)
        else:
            pytest.fail(f"processes of the server's group {srv.proc.pid} are still running")


def test_static_prefix_server_is_found_ready(pg_admin_uri: str, tmp_path: Any) -> None:
    from qrecorder.server import static_prefix

    assert static_prefix(["--static-prefix", "/ml/"]) == "/ml" and static_prefix(["--static-prefix=ml"]) == "/ml"
    assert static_prefix(["--workers", "2"]) == ""
    with fresh_pg_database(pg_admin_uri, "qrec_prefix") as db:
        cfg = ServerConfig(backend_store_uri=db, artifacts_destination=str(tmp_path / "a"), port=free_port(), workers=1,
                           extra_args=["--static-prefix", "/ml"])
        with ServerProcess(cfg, log_path=tmp_path / "server.log") as srv:  # ready: /ml/health answered
            import importlib.metadata

            if tuple(int(x) for x in importlib.metadata.version("mlflow").split(".")[:2]) < (3, 17):
                return  # older MLflow serves its REST API outside the prefix (404 under it): readiness is the point
            t = Target(srv, db)
            r = t.session.post(srv.url + "/ml" + API + "experiments/create", json={"name": "p"}, timeout=60)
            assert r.status_code == 200, r.text
            exp_id = r.json()["experiment_id"]
            r = t.session.post(srv.url + "/ml" + API + "runs/create", json={"experiment_id": exp_id}, timeout=60)
            run_id = r.json()["run"]["info"]["run_id"]
            r = t.session.post(srv.url + "/ml" + API + "runs/log-batch", json={"run_id": run_id, "metrics": _metrics(3)},
                               timeout=60)
            assert r.status_code == 200 and r.headers.get(FAST_PATH_HEADER) == "1", r.text
            assert len(t.rows(run_id)["metrics"]) == 3
