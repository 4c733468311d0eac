"""Attacks on the light REST path (``qrecorder.mlflow.rest``): the caller must see what it
sees through MLflow's client (``QRECORDER_REST=0``) on the same store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PLAIN_ENV_DROPPED = ("QRECORDER_URI", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                     "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH", "QRECORDER_REST")

FAILING_START = """
import os
from qrecorder import R
R.set_uri({url!r})
try:
    with R.start(experiment_name="x"):
        pass
except Exception as exc:
    print(repr((type(exc).__module__ + "." + type(exc).__name__, str(exc))))
"""


def _both(code: str, tmp_path: Path, **extra: str) -> tuple[Any, Any]:
    import qrecorder

    src = str(Path(qrecorder.__file__).resolve().parents[1])
    out = []
    for rest in ("1", "0"):
        env = {k: v for k, v in os.environ.items() if k not in PLAIN_ENV_DROPPED}
        env.update(PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), QRECORDER_REST=rest,
                   QRECORDER_RETRY_SECONDS="2", HOME=str(tmp_path), **extra)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                              env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        out.append(eval(done.stdout.strip().splitlines()[-1]))  # noqa: S307 - our output
    return out[0], out[1]


@pytest.mark.parametrize(("url", "extra"), [
    ("http://127.0.0.1:99999", {}),  # an invalid port: InvalidUrlException
    ("http://exa mple.com", {}),  # an invalid host: InvalidUrlException
    ("http://127.0.0.1:1", {"MLFLOW_TRACKING_TOKEN": "abc\ndef"}),  # a header requests refuses
    ("http://127.0.0.1:1", {"MLFLOW_TRACKING_TOKEN": "t\u043eken"}),  # not latin-1
])
def test_request_that_cannot_be_sent_raises_mlflows_exception(url: str, extra: dict[str, str], tmp_path: Path) -> None:
    """MLflow's http_request turns any failure to send a request into MlflowException
    (InvalidUrlException for an invalid URL); the light path raised requests' or Python's own."""
    light, heavy = _both(FAILING_START.format(url=url), tmp_path, **extra)
    assert light == heavy
    assert light[0].startswith("mlflow.exceptions.")


@pytest.mark.parametrize("env", [
    {"MLFLOW_TRACKING_SERVER_CERT_PATH": ""},  # MLflow: verify="" (no verification)
    {"MLFLOW_TRACKING_SERVER_CERT_PATH": "/ca.pem", "MLFLOW_TRACKING_INSECURE_TLS": "true"},
    {"MLFLOW_TRACKING_CLIENT_CERT_PATH": ""},
    {"MLFLOW_TRACKING_CLIENT_CERT_PATH": "/client.pem"},
    {"MLFLOW_TRACKING_TOKEN": ""},
    {"MLFLOW_TRACKING_INSECURE_TLS": "TRUE"},
    {"MLFLOW_HTTP_REQUEST_TIMEOUT": " 7 "},
    {"MLFLOW_HTTP_REQUEST_TIMEOUT": "0"},
    {"MLFLOW_ALLOW_HTTP_REDIRECTS": "FALSE"},
    {"MLFLOW_TRACKING_USERNAME": "ann", "MLFLOW_TRACKING_TOKEN": "tok"},  # no password: the token
    {"MLFLOW_TRACKING_PASSWORD": "pw", "MLFLOW_TRACKING_TOKEN": "tok"},
    {"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": "", "MLFLOW_TRACKING_TOKEN": "tok"},
])
def test_edge_configurations_send_mlflows_request(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    from test_rest_cold import _light_requests, _mlflow_requests

    from qrecorder.mlflow import rest

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in PLAIN_ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    url = "http://127.0.0.1:1"
    if not rest.plain_config(url):
        return  # MLflow's client sends it: nothing to compare
    client = rest.RestClient(url)
    ours = _light_requests(monkeypatch, lambda: client.get_run("r1"))
    mlflows = _mlflow_requests(monkeypatch, url, lambda s: s.get_run("r1"))
    assert ours == mlflows


def test_unreadable_credentials_file_raises_as_mlflow(tmp_path: Path) -> None:
    """MLflow reads ~/.mlflow/credentials before it sends: its configparser error is not an
    MlflowException (the light path must not wrap it as a request that failed)."""
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text(
        "[mlflow]\nmlflow_tracking_username = ann\nmlflow_tracking_password = a%b\n")
    light, heavy = _both(FAILING_START.format(url="http://127.0.0.1:1"), tmp_path)
    assert light == heavy
    assert light[0] == "configparser.InterpolationSyntaxError"


@pytest.mark.parametrize("env", [
    {"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "abc"},
    {"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "500"},  # above MLflow's limit (120)
    {"MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "x"},
    {"_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT": "-1"},
    {"MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "maybe"},
    {"MLFLOW_HTTP_POOL_MAXSIZE": "many"},
])
def test_http_settings_mlflow_refuses_are_not_plain(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    """MLflow's client raises on every request for these values; the light path sent the
    requests anyway (and the run succeeded). Not plain: MLflow's client raises its error."""
    from test_rest_cold import _mlflow_requests

    from qrecorder.mlflow import rest

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in PLAIN_ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    url = "http://127.0.0.1:1"
    if "MLFLOW_HTTP_POOL_MAXSIZE" not in env:  # read when MLflow makes its session (patched out here)
        assert _mlflow_requests(monkeypatch, url, lambda s: s.get_run("r1")) == []  # MLflow refused to send
    assert not rest.plain_config(url)


@pytest.mark.parametrize(("status", "code"), [
    (500, "INVALID_PARAMETER_VALUE"),  # MLflow's session gives up on the status: retried
    (503, "INVALID_PARAMETER_VALUE"),
    (400, "INTERNAL_ERROR"),  # RestException's status comes from its error code (500): retried
    (400, "TEMPORARILY_UNAVAILABLE"),
])
def test_status_and_error_code_disagree_retried_as_mlflow(status: int, code: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer whose HTTP status and JSON error code disagree (a proxy, another server): the
    light path judged it by the other one, raising at once where MLflow's client is retried."""
    import json
    import threading

    from mlflow import MlflowClient
    from test_rest_cold import _Scripted

    from qrecorder.errors import StoreUnavailableError
    from qrecorder.mlflow import calls, rest

    for name in PLAIN_ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("QRECORDER_RETRY_SECONDS", "0.5")
    srv = _Scripted()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        answer = (status, json.dumps({"error_code": code, "message": "odd"}))
        for client in (MlflowClient(srv.url), rest.RestClient(srv.url)):
            srv.replies = [answer] * 100
            srv.requests.clear()
            with pytest.raises(StoreUnavailableError):
                calls.call(client.get_experiment_by_name, "x")
            assert len(srv.requests) > 1
    finally:
        srv.shutdown()
        srv.server_close()
