"""Users and permissions on a real ``qrec server --auth`` (MLflow 3.17's basic-auth app, PostgreSQL).

MLflow 3.17 moved per-experiment permissions to ``/api/3.0/mlflow/users/permissions/*``; the
old ``/api/2.0/mlflow/experiments/permissions/create`` answers 404. These tests drive the
helpers in ``qrecorder.server`` and ``qrec users`` against one real server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import fresh_pg_database

from qrecorder import server as S
from qrecorder.cli import main
from qrecorder.errors import AccessDeniedError
from qrecorder.server import ServerConfig, ServerProcess, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ADMIN = {"admin_user": "admin", "admin_password": "admin-password-123"}
PASSWORDS = {name: f"{name}-password-123" for name in ("alice", "bob", "carol", "dave")}


@pytest.fixture(scope="module")
def auth_server(pg_admin_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("team_users")
    with fresh_pg_database(pg_admin_uri, "qrec_users") as db:
        mp = pytest.MonkeyPatch()
        mp.setenv("QRECORDER_ADMIN_PASSWORD", ADMIN["admin_password"])
        cfg = ServerConfig(backend_store_uri=db, artifacts_destination=str(folder / "artifacts"), port=free_port(),
                           workers=1, auth=True, auth_dir=folder / "auth")
        srv = ServerProcess(cfg, log_path=folder / "server.log").start()
        mp.undo()
        try:
            for name in ("alice", "bob", "carol"):
                S.create_user(srv.url, name, PASSWORDS[name], **ADMIN)
            yield srv
        finally:
            srv.stop()


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[object]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QRECORDER_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def login(name: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", name)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN["admin_password"] if name == "admin" else PASSWORDS[name])

    yield login
    from qrecorder import R

    R.exp_manager._active.clear()
    R.set_uri(None)


def test_ini_enables_the_credential_cache(auth_server: ServerProcess) -> None:
    ini = (auth_server.cfg.resolved_auth_dir() / S.AUTH_INI).read_text()
    assert "auth_cache_ttl_seconds = 60" in ini
    assert "admin_username = admin" in ini
    assert "StarletteDeprecationWarning" not in auth_server.tail_log(100_000)


def test_grant_revoke_get_on_mlflow_317(auth_server: ServerProcess, as_user) -> None:  # noqa: ANN001
    from qrecorder import R

    as_user("alice")
    R.set_uri(auth_server.url)
    exp_id = R.get_exp(experiment_name="alice-exp").id  # alice creates it: she manages it
    url = auth_server.url
    assert S.get_permission(url, "alice", exp_id, **ADMIN) == "MANAGE"
    assert S.get_permission(url, "bob", exp_id, **ADMIN) == "READ"  # the server's default
    # The creator may grant on her experiment (as MLFLOW_TRACKING_* = alice), bob may not.
    S.grant_permission(url, "bob", exp_id, "EDIT")
    assert S.get_permission(url, "bob", exp_id, **ADMIN) == "EDIT"
    with pytest.raises(AccessDeniedError, match="403"):
        S.grant_permission(url, "carol", exp_id, "EDIT", admin_user="bob", admin_password=PASSWORDS["bob"])
    S.revoke_permission(url, "bob", exp_id, **ADMIN)
    assert S.get_permission(url, "bob", exp_id, **ADMIN) == "READ"
    # The old create_user(..., permission=, experiment_id=) signature works again (was HTTP 404).
    S.create_user(url, "dave", PASSWORDS["dave"], permission="MANAGE", experiment_id=exp_id, **ADMIN)
    assert S.get_permission(url, "dave", exp_id, **ADMIN) == "MANAGE"
    S.delete_user(url, "dave", **ADMIN)
    assert "dave" not in [u["username"] for u in S.list_users(url, **ADMIN)]
    with pytest.raises(S.ConfigurationError, match="permission must be one of"):
        S.grant_permission(url, "bob", exp_id, "WRITE", **ADMIN)


def test_qrec_users_cli(auth_server: ServerProcess, as_user) -> None:  # noqa: ANN001
    url = auth_server.url
    as_user("admin")
    runner = CliRunner()

    def qrec(*args: str, code: int = 0, stdin: str | None = None) -> str:
        res = runner.invoke(main, [*args, "--uri", url], input=stdin)
        assert res.exit_code == code, res.output
        assert "Traceback" not in res.output
        return res.output

    qrec("users", "add", "dave", "--password-stdin", stdin=PASSWORDS["dave"] + "\n")
    qrec("users", "grant", "dave", "bob", "--experiment", "cli-shared", "--create", "--permission", "EDIT")
    listing = qrec("users", "list", "--experiment", "cli-shared")
    assert "dave  EDIT" in listing and "bob  EDIT" in listing and "carol  READ" in listing
    assert "admin  (admin)" in listing
    qrec("users", "revoke", "bob", "--experiment", "cli-shared")
    assert "bob  READ" in qrec("users", "list", "-e", "cli-shared")
    qrec("users", "grant", "carol", "--all-experiments", "--permission", "EDIT")
    assert "carol  EDIT" in qrec("users", "list", "-e", "cli-shared")
    qrec("users", "revoke", "carol", "--all-experiments")
    assert "error" in qrec("users", "grant", "bob", "-e", "no-such-exp", code=1).lower()
    qrec("users", "remove", "dave", "-y")
    assert "dave" not in qrec("users", "list")
    # bob may not grant on an experiment he does not manage; a wrong password is a login error.
    # Exit code 3, one line.
    as_user("bob")
    assert "HTTP 403" in qrec("users", "grant", "carol", "-e", "cli-shared", code=3)
    os.environ["MLFLOW_TRACKING_PASSWORD"] = "wrong-password-123"
    assert "HTTP 401" in qrec("users", "list", code=3)


SHARE = r"""
from qrecorder import R
R.set_uri({url!r})
with R.start(experiment_name={exp!r}):
    R.log_metrics(x=1.0)
print("ok")
"""


def _three_clients(url: str, exp: str) -> list[subprocess.CompletedProcess[str]]:
    procs = []
    for name in ("alice", "bob", "carol"):
        env = {**os.environ, "MLFLOW_TRACKING_USERNAME": name, "MLFLOW_TRACKING_PASSWORD": PASSWORDS[name]}
        procs.append(subprocess.Popen([sys.executable, "-c", SHARE.format(url=url, exp=exp)], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_three_clients_share_one_experiment(auth_server: ServerProcess, as_user) -> None:  # noqa: ANN001
    """The reported bug: three clients, one experiment, two fail at R.start with access denied.

    With the default permission READ the first client creates the experiment and manages it;
    the others may only read it. Sharing is a grant: done once, by an admin, before the runs."""
    url = auth_server.url
    results = _three_clients(url, "unshared")
    failed = [r for r in results if r.returncode != 0]
    assert len(failed) == 2
    for r in failed:
        assert "AccessDeniedError" in r.stderr and "permission denied" in r.stderr

    as_user("admin")
    res = CliRunner().invoke(main, ["users", "grant", "alice", "bob", "carol", "-e", "shared", "--create",
                                    "--uri", url])
    assert res.exit_code == 0, res.output
    results = _three_clients(url, "shared")
    for r in results:
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
        assert "View run" not in r.stdout  # quiet by default through an http store
