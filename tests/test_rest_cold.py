"""The cold path on a tracking server: a fresh process's plain run goes through
``qrecorder.mlflow.rest`` (``requests``, MLflow's own requests) without importing MLflow, and
the server sees and stores what MLflow's client would have sent."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import fresh_pg_database

from qrecorder.errors import AccessDeniedError, StoreUnavailableError
from qrecorder.mlflow import calls, rest
from qrecorder.server import ServerConfig, ServerProcess, free_port

PLAIN_ENV_DROPPED = ("QRECORDER_URI", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                     "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH", "QRECORDER_REST")

FIRST_RUN = """
import sys
from qrecorder import R
R.set_uri({url!r})
with R.start(experiment_name={exp!r}, recorder_name="first"):
    R.log_params(lr="0.1", layers="3", **{{f"p{{i}}": str(i) for i in range(150)}})
    R.log_metrics(step=0, loss=1.5, acc=0.25, bad=float("nan"), up=float("inf"), down=float("-inf"))
    for step in range(1, 1200):
        R.log_metrics(step=step, loss=1.0 / step)
    R.set_tags(stage="dev", **{{f"t{{i}}": "v" for i in range(120)}})
    rid = R.get_recorder().id
print(repr((rid, "mlflow" in sys.modules)))
"""


def _env(**extra: str) -> dict[str, str]:
    import qrecorder

    src = str(Path(qrecorder.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k not in PLAIN_ENV_DROPPED}
    env["PYTHONPATH"] = os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _python(code: str, cwd: Path, **extra: str) -> Any:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300,
                         env=_env(**extra))
    assert out.returncode == 0, out.stderr[-3000:]
    return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our output


@pytest.fixture(scope="module")
def server(pg_admin_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("rest_cold")
    with fresh_pg_database(pg_admin_uri, "qrec_restcold") as db:
        cfg = ServerConfig(backend_store_uri=db, artifacts_destination=str(folder / "artifacts"), port=free_port(),
                           workers=1)
        srv = ServerProcess(cfg, log_path=folder / "server.log").start()
        try:
            yield srv
        finally:
            srv.stop()


# ------------------------------------------------------------------ a real server
@pytest.mark.postgres
@pytest.mark.slow
def test_first_run_without_mlflow_same_as_mlflow_client(server: ServerProcess, tmp_path: Path) -> None:
    light_id, imported = _python(FIRST_RUN.format(url=server.url, exp="cold-light"), tmp_path)
    assert imported is False, "a plain first run on a tracking server imported MLflow"
    heavy_id, imported = _python(FIRST_RUN.format(url=server.url, exp="cold-mlflow"), tmp_path, QRECORDER_REST="0")
    assert imported is True

    from mlflow import MlflowClient

    client = MlflowClient(server.url)
    light, heavy = client.get_run(light_id), client.get_run(heavy_id)
    for attr in ("status", "lifecycle_stage", "run_name", "user_id"):
        assert getattr(light.info, attr) == getattr(heavy.info, attr), attr
    assert light.info.end_time >= light.info.start_time > 0
    assert light.info.artifact_uri.endswith(f"/{light_id}/artifacts")
    heavy_params = {k: v for k, v in heavy.data.params.items() if k != "QRECORDER_REST"}  # env params
    assert light.data.params == heavy_params and len(light.data.params) >= 152
    assert set(light.data.tags) == set(heavy.data.tags)
    volatile = {"qrecorder.pid", "qrecorder.process", "qrecorder.heartbeat", "mlflow.runName"}
    assert {k: v for k, v in light.data.tags.items() if k not in volatile} == {
        k: v for k, v in heavy.data.tags.items() if k not in volatile}
    lm, hm = light.data.metrics, heavy.data.metrics
    assert set(lm) == set(hm) == {"loss", "acc", "bad", "up", "down"}
    assert math.isnan(lm["bad"]) and math.isnan(hm["bad"])
    assert lm["up"] == hm["up"] and lm["down"] == hm["down"] and lm["up"] > 1e300 and lm["down"] < -1e300
    hist = client.get_metric_history(light_id, "loss")
    assert [m.step for m in hist] == list(range(1200))
    assert [m.value for m in hist] == [m.value for m in client.get_metric_history(heavy_id, "loss")]
    exp_light = client.get_experiment_by_name("cold-light")
    exp_heavy = client.get_experiment_by_name("cold-mlflow")
    assert exp_light.tags == exp_heavy.tags == {"mlflow.experimentKind": "custom_model_development"}
    assert exp_light.artifact_location.rsplit("/", 1)[0] == exp_heavy.artifact_location.rsplit("/", 1)[0]

    # The same experiment again: looked up, not created; the stale check's runs/get on a longer run.
    again, imported = _python(
        FIRST_RUN.format(url=server.url, exp="cold-light"), tmp_path, QRECORDER_HEARTBEAT_INTERVAL="0.05")
    assert imported is False
    assert client.get_run(again).info.experiment_id == exp_light.experiment_id
    assert client.get_run(again).info.status == "FINISHED"


@pytest.mark.postgres
@pytest.mark.slow
def test_fallback_to_mlflow_client_when_auth_is_set(server: ServerProcess, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """MLFLOW_TRACKING_AUTH names a request auth provider: every request goes through MLflow's
    client, which applies it (the light path would not)."""
    import requests
    from mlflow.tracking.request_auth import registry

    seen: list[str] = []

    class Counting(requests.auth.AuthBase):
        def __call__(self, r: Any) -> Any:
            seen.append(r.url)
            r.headers["X-Test-Auth"] = "1"
            return r

    monkeypatch.setattr(registry, "fetch_auth", lambda name: Counting())
    monkeypatch.chdir(tmp_path)
    for name in PLAIN_ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)
    from qrecorder import R
    from qrecorder.mlflow.store import get_store

    store = get_store(server.url)
    assert store.rest is not None  # plain now
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "counting")
    assert store.rest is None and not rest.plain_config(server.url)
    R.set_uri(server.url)
    try:
        with R.start(experiment_name="fallback-auth"):
            R.log_metrics(step=0, loss=1.0)
            rid = R.get_recorder().id
    finally:
        R.exp_manager._active.clear()
        R.set_uri(None)
    paths = [u.split("/api/2.0/mlflow", 1)[-1].split("?", 1)[0] for u in seen]
    assert "/experiments/get-by-name" in paths and "/runs/create" in paths
    assert "/runs/log-batch" in paths and "/runs/update" in paths
    from mlflow import MlflowClient

    assert MlflowClient(server.url).get_run(rid).data.metrics == {"loss": 1.0}


@pytest.mark.postgres
@pytest.mark.slow
def test_first_run_rides_out_a_server_restart(pg_admin_uri: str, tmp_path: Path) -> None:
    """The server is down when a fresh process starts its run and comes back within the
    budget: connection errors are transient, the run is made once, MLflow stays unimported."""
    with fresh_pg_database(pg_admin_uri, "qrec_restout") as db:
        cfg = ServerConfig(backend_store_uri=db, artifacts_destination=str(tmp_path / "artifacts"), port=free_port(),
                           workers=1)
        srv = ServerProcess(cfg, log_path=tmp_path / "server.log").start()
        try:
            srv.stop()
            code = FIRST_RUN.format(url=srv.url, exp="outage")
            child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=tmp_path, env=_env(QRECORDER_RETRY_SECONDS="180"))
            time.sleep(2)
            assert child.poll() is None  # still retrying
            srv.start()
            out, err = child.communicate(timeout=240)
            assert child.returncode == 0, err[-3000:]
            assert "busy or unreachable" in err  # retried, and said so
            rid, imported = eval(out.strip().splitlines()[-1])  # noqa: S307 - our output
            assert imported is False
            from mlflow import MlflowClient

            client = MlflowClient(srv.url)
            run = client.get_run(rid)
            assert run.info.status == "FINISHED" and len(client.get_metric_history(rid, "loss")) == 1200
            exp = client.get_experiment_by_name("outage")
            assert len(client.search_runs([exp.experiment_id])) == 1
        finally:
            srv.stop()


# ------------------------------------------------------------------ an auth server
@pytest.fixture(scope="module")
def auth_server(pg_admin_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    from qrecorder import server as S

    try:
        S.require_auth_capable_mlflow()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"qrec server --auth is refused on this MLflow: {exc}"[:200])

    folder = tmp_path_factory.mktemp("rest_auth")
    with fresh_pg_database(pg_admin_uri, "qrec_restauth") as db:
        mp = pytest.MonkeyPatch()
        mp.setenv("QRECORDER_ADMIN_PASSWORD", "admin-password-123")
        cfg = ServerConfig(backend_store_uri=db, artifacts_destination=str(folder / "artifacts"), port=free_port(),
                           workers=1, auth=True, auth_dir=folder / "auth")
        srv = ServerProcess(cfg, log_path=folder / "server.log").start()
        mp.undo()
        try:
            S.create_user(srv.url, "erin", "erin-password-123", admin_user="admin", admin_password="admin-password-123")
            yield srv
        finally:
            srv.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_401_and_403_map_to_access_denied(auth_server: ServerProcess, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    url = auth_server.url
    out = subprocess.run([sys.executable, "-c", f"""
import sys
from qrecorder import R
from qrecorder.errors import AccessDeniedError
R.set_uri({url!r})
try:
    with R.start(experiment_name="denied"):
        pass
except AccessDeniedError as exc:
    print(repr((str(exc), "mlflow" in sys.modules)))
"""], capture_output=True, text=True, cwd=tmp_path, timeout=120, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    message, imported = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our output
    assert "requires credentials" in message and imported is False

    monkeypatch.chdir(tmp_path)
    for name in PLAIN_ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)
    from qrecorder import R
    from qrecorder.mlflow.store import get_store

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "admin-password-123")
    R.set_uri(url)
    try:
        assert get_store(url).rest is not None
        with R.start(experiment_name="admins-only"):
            R.log_metrics(x=1.0)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-password-123")
        with pytest.raises(AccessDeniedError, match="requires credentials"):
            calls.call(get_store(url).rest.get_experiment_by_name, "admins-only")  # type: ignore[union-attr]
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "erin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "erin-password-123")
        with pytest.raises(AccessDeniedError, match="permission denied"):
            with R.start(experiment_name="admins-only"):  # erin may read it, not run in it
                pass
        # The same answers through MLflow's client map the same way.
        monkeypatch.setenv("QRECORDER_REST", "0")
        with pytest.raises(AccessDeniedError, match="permission denied"):
            with R.start(experiment_name="admins-only"):
                pass
    finally:
        R.exp_manager._active.clear()
        R.set_uri(None)


# ------------------------------------------------------------------ a scripted server
class _Scripted(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies: list[tuple[int, str]] = []
        self.requests: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        server: _Scripted = self.server  # type: ignore[assignment]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        with server.lock:
            server.requests.append((self.command, self.path, body))
            status, text = server.replies.pop(0) if server.replies else (200, "{}")
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if text.startswith("{") else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Scripted]:
    for name in PLAIN_ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    srv = _Scripted()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_5xx_and_429_retried_invalid_value_not(scripted: _Scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QRECORDER_RETRY_SECONDS", "20")
    client = rest.RestClient(scripted.url)
    assert client.available()
    scripted.replies = [(503, "Service Unavailable"), (429, "{}"), (408, ""), (502, "<html>bad gateway</html>"),
                        (500, json.dumps({"error_code": "INTERNAL_ERROR", "message": "boom"})),
                        (200, json.dumps({"experiment": {"experiment_id": "7", "name": "x", "lifecycle_stage": "active",
                                                         "tags": [{"key": "k", "value": "v"}]}}))]
    exp = calls.call(client.get_experiment_by_name, "x")
    assert exp is not None and (exp.experiment_id, exp.tags) == ("7", {"k": "v"})
    assert len(scripted.requests) == 6

    refused = {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid value for metric 'x'"}
    scripted.replies = [(400, json.dumps(refused))]
    with pytest.raises(Exception) as info:
        calls.call(client.log_batch, "r" * 32, [("x", 1.0, 1, 0)], [], [])
    from mlflow.exceptions import MlflowException, RestException

    assert type(info.value) is RestException and info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert str(info.value) == "INVALID_PARAMETER_VALUE: Invalid value for metric 'x'"
    scripted.replies = [(404, json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"}))]
    assert calls.call(client.get_experiment_by_name, "nope") is None

    # The same answers through MLflow's client: the same exceptions.
    from mlflow import MlflowClient

    mlflow_client = MlflowClient(scripted.url)
    scripted.replies = [(400, json.dumps(refused))]
    with pytest.raises(MlflowException) as theirs:
        calls.call(mlflow_client.get_experiment_by_name, "x")
    assert type(theirs.value) is RestException and str(theirs.value) == str(info.value)
    for status, text in ((401, "You are not authenticated."), (403, "Permission denied")):
        scripted.replies = [(status, text)]
        with pytest.raises(AccessDeniedError) as ours:
            calls.call(client.get_experiment_by_name, "x")
        scripted.replies = [(status, text)]
        with pytest.raises(AccessDeniedError) as mlflows:
            calls.call(mlflow_client.get_experiment_by_name, "x")
        assert str(ours.value).split("Server said:")[0] == str(mlflows.value).split("Server said:")[0]


def test_budget_spent_on_a_dead_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PLAIN_ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("QRECORDER_RETRY_SECONDS", "1")
    client = rest.RestClient(f"http://127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="QRECORDER_RETRY_SECONDS"):
        calls.call(client.get_experiment_by_name, "x")
    assert time.monotonic() - start < 10


# ------------------------------------------------------------------ the requests themselves
def _mlflow_requests(monkeypatch: pytest.MonkeyPatch, url: str, action: Any) -> list[dict[str, Any]]:
    """What MLflow's RestStore sends for ``action(store)`` (requests.Session.request captured)."""
    import requests
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.utils import request_utils
    from mlflow.utils.credentials import get_default_host_creds

    sent: list[dict[str, Any]] = []

    class Fake:
        def request(self, method: str, url: str, **kwargs: Any) -> Any:
            sent.append({"method": method, "url": url, **kwargs})
            response = requests.Response()
            response.status_code = 200
            response._content = b"{}"
            return response

    monkeypatch.setattr(request_utils, "_get_request_session", lambda *a, **k: Fake())
    store = RestStore(lambda: get_default_host_creds(url))
    try:
        action(store)
    except Exception:  # noqa: BLE001, S110 - an empty answer may not parse: the request is what counts
        pass
    return sent


def _light_requests(monkeypatch: pytest.MonkeyPatch, action: Any) -> list[dict[str, Any]]:
    import requests

    sent: list[dict[str, Any]] = []

    class Fake:
        def request(self, method: str, url: str, **kwargs: Any) -> Any:
            sent.append({"method": method, "url": url, **kwargs})
            response = requests.Response()
            response.status_code = 200
            response._content = b"{}"
            return response

    monkeypatch.setattr(rest, "session", lambda: Fake())
    try:
        action()
    except Exception:  # noqa: BLE001, S110
        pass
    return sent


@pytest.mark.parametrize("auth", ["none", "basic", "token"])
def test_requests_are_mlflows(monkeypatch: pytest.MonkeyPatch, auth: str, tmp_path: Path) -> None:
    from mlflow.entities import ExperimentTag, Metric, Param, RunStatus, RunTag

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials
    for name in PLAIN_ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    if auth == "basic":
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ann")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw:é")
    elif auth == "token":
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")
    url = "http://127.0.0.1:1"
    client = rest.RestClient(url)
    assert client.available()
    metrics = [("a", float("nan"), 1, 0), ("b", float("inf"), 2, 1), ("c", -float("inf"), 3, -2), ("d", 3, 10**15, 5)]
    tags = {"mlflow.user": "ann", "qrecorder.pid": "1", "qrecorder.host": "h", "x": "y"}
    cases = [
        (lambda: client.log_batch("r1", metrics, [("p", "1")], [("t", "v")]),
         lambda s: s.log_batch("r1", [Metric(*m) for m in metrics], [Param("p", "1")], [RunTag("t", "v")])),
        (lambda: client.update_run("r1", "FINISHED", 123),
         lambda s: s.update_run_info("r1", RunStatus.from_string("FINISHED"), 123, None)),
        (lambda: client.get_run("r1"), lambda s: s.get_run("r1")),
        (lambda: client.get_experiment_by_name("e x"), lambda s: s.get_experiment_by_name("e x")),
        (lambda: client.get_experiment("5"), lambda s: s.get_experiment("5")),
        (lambda: client.request("POST", "/experiments/delete-experiment-tag", {"experiment_id": "5", "key": "k"}),
         lambda s: s.delete_experiment_tag("5", "k")),
    ]
    for light, theirs in cases:
        ours = _light_requests(monkeypatch, light)
        mlflows = _mlflow_requests(monkeypatch, url, theirs)
        assert len(ours) == len(mlflows) == 1
        assert ours[0] == mlflows[0], (ours[0], mlflows[0])

    # Creations: the body of the first request is MLflow's (token, start time fixed here).
    monkeypatch.setattr("qrecorder.mlflow.store._unique_start_ms", lambda: 1700000000000)
    ours = _light_requests(monkeypatch, lambda: client.create_run("3", "first", tags))
    mlflows = _mlflow_requests(monkeypatch, url, lambda s: s.create_run(
        "3", "ann", 1700000000000, [RunTag(k, v) for k, v in tags.items()], "first"))
    assert ours[0] == mlflows[0]
    monkeypatch.setattr("uuid.uuid4", lambda: type("U", (), {"hex": "f" * 32})())
    ours = _light_requests(monkeypatch, lambda: client.create_experiment("e", None, {"k": "v"}))
    mlflows = _mlflow_requests(monkeypatch, url, lambda s: s.create_experiment(
        "e", None, [ExperimentTag("k", "v"), ExperimentTag("qrecorder.create_token", "f" * 32)]))
    assert ours[0] == mlflows[0]


@pytest.mark.parametrize("var", ["MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4", "MLFLOW_WORKSPACE"])
def test_not_plain_configurations(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for name in PLAIN_ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)
    assert rest.plain_config("http://h:5000")
    monkeypatch.setenv(var, "x")
    assert not rest.plain_config("http://h:5000")


def test_other_not_plain_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PLAIN_ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    assert not rest.plain_config("http://h:5000")  # MLflow's own retries asked for
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert not rest.plain_config("databricks://profile")
    assert not rest.plain_config("https://x.cloud.databricks.com")
    monkeypatch.setenv("QRECORDER_REST", "0")
    assert not rest.plain_config("http://h:5000")
    monkeypatch.delenv("QRECORDER_REST")
    monkeypatch.setattr(rest, "_plugins", True)  # a request header/auth provider plugin is installed
    assert not rest.plain_config("http://h:5000")


def test_one_session_per_process() -> None:
    first = rest.session()
    assert rest.session() is first
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        os.write(w, b"1" if rest.session() is not first and rest.session() is rest.session() else b"0")
        os._exit(0)
    os.close(w)
    answer = os.read(r, 1)
    os.waitpid(pid, 0)
    os.close(r)
    assert answer == b"1"


def test_answers_without_json_raise_as_mlflow_does(scripted: _Scripted) -> None:
    from mlflow import MlflowClient

    client, theirs = rest.RestClient(scripted.url), MlflowClient(scripted.url)
    for status, text in ((404, "<html>not here</html>"), (400, "plain text"), (200, "not json")):
        errors = []
        for fn in (client.get_experiment_by_name, theirs.get_experiment_by_name):
            scripted.replies = [(status, text)]
            with pytest.raises(Exception) as info:
                calls.call(fn, "x")
            errors.append(info.value)
        ours, mlflows = errors
        assert type(ours) is type(mlflows), (ours, mlflows)
        assert ours.error_code == mlflows.error_code  # type: ignore[attr-defined]
        if status != 200:
            assert str(ours) == str(mlflows)
            # MLflow < 3.17 has no SQLSTATE or error class on its exceptions (None on both then)
            assert (getattr(ours, "sqlstate", None), getattr(ours, "error_class", None)) == (
                getattr(mlflows, "sqlstate", None), getattr(mlflows, "error_class", None))


def test_session_is_set_up_as_mlflows(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.utils.request_utils import _get_request_session

    monkeypatch.setattr(rest, "_session", None)
    ours = rest.session().get_adapter("http://x")
    theirs = _get_request_session(0, 2, 1.0, frozenset([429]), True, True).get_adapter("http://x")
    theirs_options = theirs.poolmanager.connection_pool_kw.get("socket_options")
    if theirs_options is not None:  # MLflow 3.17 sets TCP keepalive; older releases leave the defaults
        assert ours.poolmanager.connection_pool_kw["socket_options"] == theirs_options
    assert (ours._pool_connections, ours._pool_maxsize) == (theirs._pool_connections, theirs._pool_maxsize)
