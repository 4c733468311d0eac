"""Team mode against a real ``mlflow server`` on 127.0.0.1 backed by the real PostgreSQL.

One fresh database per test session (``qrec_srv_<random>``, dropped afterwards). Servers are
started with ``qrecorder.server`` exactly as ``qrec server`` starts them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fresh_pg_database

from qrecorder.server import ServerConfig, ServerProcess, create_user, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ADMIN_PASSWORD = "admin-password-123"
READER_PASSWORD = "reader-password-123"


@pytest.fixture(scope="session")
def srv_db(pg_admin_uri: str) -> Iterator[str]:
    with fresh_pg_database(pg_admin_uri, "qrec_srv") as uri:
        yield uri


def _server(db: str, folder: Path, workers: int = 2, auth: bool = False) -> ServerProcess:
    cfg = ServerConfig(backend_store_uri=db, artifacts_destination=str(folder / "artifacts"), port=free_port(),
                       workers=workers, auth=auth, auth_dir=folder / "auth")
    return ServerProcess(cfg, log_path=folder / "server.log")


@pytest.fixture(scope="module")
def server(srv_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = _server(srv_db, tmp_path_factory.mktemp("server"), workers=2).start()
    yield srv
    srv.stop()


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("QRECORDER_URI", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def R(client_env: None) -> Iterator[object]:  # noqa: N802 - overrides conftest's R: no SQLite store here
    from qrecorder import R as global_r

    yield global_r
    global_r.exp_manager._active.clear()
    global_r.set_uri(None)


WORKER = r"""
import json, sys
from qrecorder import R
url, i = sys.argv[1], int(sys.argv[2])
R.set_uri(url)
with R.start(experiment_name="shared16", recorder_name=f"worker{i}"):
    R.log_params(worker=i)
    for step in range(50):
        R.log_metrics(step=step, value=i * 1000.0 + step)
    R.save_objects(obj={"worker": i, "data": list(range(i))})
    rid = R.get_recorder().id
print(json.dumps({"run_id": rid}))
"""


def test_16_processes_get_or_create_and_log(server: ServerProcess, R, tmp_path: Path) -> None:  # noqa: N803
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, server.url, str(i)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(16)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err and "ERROR" not in err, err[-3000:]
    run_ids = [json.loads(out.strip().splitlines()[-1])["run_id"] for out, _ in outs]

    R.set_uri(server.url)
    store = R.exp_manager.store()
    matching = store.client.search_experiments(filter_string="name = 'shared16'", view_type=3)
    assert len(matching) == 1, "get-or-create made duplicates"
    exp = R.get_exp(experiment_name="shared16", create=False)
    recorders = exp.list_recorders()
    assert sorted(recorders) == sorted(run_ids)
    for i, rid in enumerate(run_ids):
        rec = R.get_recorder(recorder_id=rid)
        assert rec.status == "FINISHED"
        assert rec.list_params()["worker"] == str(i)
        history = rec.get_metric_history("value")
        assert [(s, v) for s, v, _ in history] == [(s, i * 1000.0 + s) for s in range(50)]
        # Saved through the server's proxied artifact store, loaded back through it.
        assert rec.artifact_uri.startswith("mlflow-artifacts:")
        assert rec.load_object("obj") == {"worker": i, "data": list(range(i))}
    stored = list((Path(server.cfg.artifacts_destination)).rglob("obj"))
    assert len(stored) == 16


def test_objects_through_proxied_artifacts(server: ServerProcess, R, tmp_path: Path) -> None:  # noqa: N803
    import numpy as np
    import pandas as pd

    R.set_uri(server.url)
    frame = pd.DataFrame({"a": np.arange(1000), "b": np.random.default_rng(0).normal(size=1000)})
    (tmp_path / "report.txt").write_text("hello")
    with R.start(experiment_name="objects"):
        R.save_objects(pred=frame, artifact_path="sub")
        R.log_artifact(tmp_path / "report.txt")
        rec = R.get_recorder()
        pd.testing.assert_frame_equal(rec.load_object("sub/pred"), frame)
    assert sorted(rec.list_artifacts()) == ["report.txt", "sub"]
    path = rec.download_artifact("report.txt", str(tmp_path / "dl"))
    assert Path(path).read_text() == "hello"
    from qrecorder.errors import LoadObjectError

    with pytest.raises(LoadObjectError):
        rec.load_object("missing")


# ------------------------------------------------------------------------------ auth
@pytest.fixture(scope="module")
def auth_server(srv_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    mp = pytest.MonkeyPatch()
    mp.setenv("QRECORDER_ADMIN_PASSWORD", ADMIN_PASSWORD)
    srv = _server(srv_db, tmp_path_factory.mktemp("auth_server"), workers=1, auth=True).start()
    create_user(srv.url, "reader", READER_PASSWORD, admin_user="admin", admin_password=ADMIN_PASSWORD)
    mp.undo()
    yield srv
    srv.stop()


def _login(monkeypatch: pytest.MonkeyPatch, user: str | None, password: str | None) -> None:
    for name, value in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def test_auth_anonymous_refused(auth_server: ServerProcess, R, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: N803
    from qrecorder.errors import AccessDeniedError

    R.set_uri(auth_server.url)
    _login(monkeypatch, None, None)
    with pytest.raises(AccessDeniedError, match="MLFLOW_TRACKING_USERNAME"):
        R.list_experiments()
    with pytest.raises(AccessDeniedError):
        with R.start(experiment_name="anon"):
            pass
    _login(monkeypatch, "admin", "wrong-password-123")
    with pytest.raises(AccessDeniedError, match="requires credentials"):
        R.list_experiments()

    from click.testing import CliRunner

    from qrecorder.cli import main

    _login(monkeypatch, None, None)
    res = CliRunner().invoke(main, ["experiments", "--uri", auth_server.url])
    assert res.exit_code == 3 and res.output.startswith("Error: The tracking server requires credentials")
    assert "Traceback" not in res.output


def test_auth_read_only_user_cannot_write(auth_server: ServerProcess, R, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: N803
    from qrecorder.errors import AccessDeniedError, LoggingFailedError

    R.set_uri(auth_server.url)
    _login(monkeypatch, "admin", ADMIN_PASSWORD)
    with R.start(experiment_name="admins"):
        R.log_metrics(x=1.0)
        admin_run = R.get_recorder().id

    _login(monkeypatch, "reader", READER_PASSWORD)
    assert "admins" in R.list_experiments()  # READ is allowed
    assert R.get_recorder(recorder_id=admin_run).list_metrics() == {"x": 1.0}
    with pytest.raises(AccessDeniedError, match="permission denied"):
        with R.start(experiment_name="admins"):
            pass
    # A refused write from the background writer ends as LoggingFailedError caused by AccessDeniedError.
    rec = R.get_recorder(recorder_id=admin_run)
    rec.log_metrics(y=2.0)
    with pytest.raises(LoggingFailedError, match="permission denied") as info:
        rec.flush()
    assert isinstance(info.value.__cause__, AccessDeniedError)

    from click.testing import CliRunner

    from qrecorder.cli import main

    res = CliRunner().invoke(main, ["rm", admin_run, "-y", "--uri", auth_server.url])
    assert res.exit_code == 3 and "permission denied" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["show", admin_run, "--uri", auth_server.url, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["metrics"] == {"x": 1.0}


# ------------------------------------------------------------------------------ resilience
@pytest.fixture
def lone_server(srv_db: str, tmp_path: Path) -> Iterator[ServerProcess]:
    srv = _server(srv_db, tmp_path / "lone", workers=1).start()
    yield srv
    srv.stop()


def test_server_restarted_mid_run(lone_server: ServerProcess, R, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: N803
    monkeypatch.setenv("QRECORDER_RETRY_SECONDS", "180")
    R.set_uri(lone_server.url)
    R.start_exp(experiment_name="restart")
    rec = R.get_recorder()
    R.log_params(phase="one")
    for step in range(20):
        R.log_metrics(step=step, loss=1.0 / (step + 1))
    R.flush()
    lone_server.kill()  # SIGKILL to the whole server process group
    assert lone_server.proc is not None and lone_server.proc.poll() is not None
    for step in range(20, 40):  # buffered while the server is down
        R.log_metrics(step=step, loss=1.0 / (step + 1))
    R.set_tags(after="restart")
    lone_server.start(wait=False)  # same port; ready in ~20 s
    start = time.monotonic()
    R.end_exp()  # waits for the writer's bounded retries, then ends the run
    assert time.monotonic() - start < 180
    rec = R.get_recorder(recorder_id=rec.id, experiment_name="restart")
    assert rec.status == "FINISHED"
    assert [s for s, _, _ in rec.get_metric_history("loss")] == list(range(40))
    assert rec.list_tags()["after"] == "restart"
    assert rec.list_params()["phase"] == "one"


def test_server_down_longer_than_budget(lone_server: ServerProcess, R, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: N803
    from qrecorder.errors import LoggingFailedError, StoreUnavailableError

    monkeypatch.setenv("QRECORDER_RETRY_SECONDS", "3")
    R.set_uri(lone_server.url)
    R.start_exp(experiment_name="outage")
    run_id = R.get_recorder().id
    for step in range(10):
        R.log_metrics(step=step, acked=float(step))
    R.flush()  # acknowledged by the server
    lone_server.kill()
    for step in range(10, 20):
        R.log_metrics(step=step, acked=float(step))
    start = time.monotonic()
    with pytest.raises((LoggingFailedError, StoreUnavailableError), match="QRECORDER_RETRY_SECONDS"):
        R.end_exp()
    elapsed = time.monotonic() - start
    assert elapsed < 30, f"the retry budget was not bounded: {elapsed:.1f}s"
    assert R.exp_manager.active_experiment is None

    lone_server.start()
    rec = R.get_recorder(recorder_id=run_id)
    history = rec.get_metric_history("acked")
    assert [s for s, _, _ in history][:10] == list(range(10))  # nothing acknowledged is lost
    assert rec.refresh().status in ("RUNNING", "FAILED")  # never FINISHED with values missing
