"""Secrets stay out of the store and off command lines.

- A run started by a real process with secrets in its argv and environment: the stored
  ``cmd-sys.argv`` and environment params hold ``***`` instead.
- A real ``qrec server`` on a fresh PostgreSQL database, with a password in the backend URI:
  no process it starts has the password in ``/proc/PID/cmdline``; the auth files are 0600.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PG_HOST, PG_PORT, fresh_pg_database

from qrecorder import provenance
from qrecorder.server import free_port, is_healthy

QREC = str(Path(sys.executable).with_name("qrec"))
SECRETS = ("hunter2", "s3cr3t-opt", "k3y-value", "t0ken-short", "envtok", "uripass", "qtok", "pgpw", "dsnpw",
           "hydrapw", "envpass", "envkey", "uri-env-pw", "q-env-tok")

SCRIPT = r"""
import sys
from qrecorder import R
R.set_uri(sys.argv[-1] if sys.argv[-1].startswith("sqlite") else None)
with R.start(experiment_name="secrets"):
    R.log_metrics(a=1.0)
    print(R.get_recorder().id)
"""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--password", "X"], ["--password", "***"]),
        (["--password=X"], ["--password=***"]),
        (["--api-key=X", "--api_key", "Y"], ["--api-key=***", "--api_key", "***"]),
        (["-p", "8080", "-token", "T"], ["-p", "8080", "-token", "***"]),  # one-letter options are not named
        (["MY_TOKEN=abc", "db.Password=x y"], ["MY_TOKEN=***", "db.Password=***"]),
        (["postgresql://u:secret@h:5432/db"], ["postgresql://u:***@h:5432/db"]),
        (["--uri=http://h/x?token=abc&a=1"], ["--uri=http://h/x?token=***&a=1"]),
        (["--dsn", "host=h password=pw dbname=d"], ["--dsn", "host=h password=*** dbname=d"]),
        (["--client-secret", "--verbose"], ["--client-secret", "--verbose"]),  # a flag: nothing to hide
        (["--Credentials-File", "/x/c.json", "--lr", "0.1"], ["--Credentials-File", "***", "--lr", "0.1"]),
    ],
)
def test_redact_argv_forms(argv: list[str], expected: list[str]) -> None:
    assert provenance.redact_argv(["train.py", *argv]) == ["train.py", *expected]


def test_env_params_redact_names_and_uri_passwords() -> None:
    env = {"QRECORDER_DB_PASSWD": "a", "QRECORDER_ACCESS_KEY": "b", "_QLIB_TOKEN": "c", "QRECORDER_SEED": "7",
           "QRECORDER_URI": "postgresql://u:pw@h/db", "QRECORDER_NOTE": "http://h/?access_token=q&x=1", "MY_TOKEN": "z"}
    assert provenance.env_params(env) == {
        "QRECORDER_DB_PASSWD": "***", "QRECORDER_ACCESS_KEY": "***", "_QLIB_TOKEN": "***", "QRECORDER_SEED": "7",
        "QRECORDER_URI": "postgresql://u:***@h/db", "QRECORDER_NOTE": "http://h/?access_token=***&x=1",
    }


def test_a_run_started_with_secrets_in_argv_and_env_stores_none(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    db = tmp_path / "mlflow.db"
    argv = [
        "--password", "hunter2", "--secret=s3cr3t-opt", "--api-key=k3y-value", "-token", "t0ken-short",
        "-p", "8080", "--lr", "0.1", "MY_TOKEN=envtok", "postgresql://user:uripass@db.example:5432/ml",
        "http://h.example/x?token=qtok&page=2", "--backup-uri=postgresql://u:pgpw@h/db",
        "host=h password=dsnpw dbname=d", "model.db_password=hydrapw", f"sqlite:///{db}",
    ]
    env = {**os.environ, "QRECORDER_DB_PASSWORD": "envpass", "QRECORDER_API_KEY": "envkey",
           "QRECORDER_BACKUP_URI": "postgresql://u:uri-env-pw@h/db", "QRECORDER_NOTE": "http://h/?token=q-env-tok",
           "QRECORDER_SEED": "7", "MY_TOKEN": "should-not-be-captured"}
    env.pop("QRECORDER_URI", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, str(script), *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip().splitlines()[-1]

    con = sqlite3.connect(str(db))
    params = dict(con.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)).fetchall())
    tags = dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall())
    con.close()
    stored = "\n".join(f"{k}={v}" for k, v in {**params, **tags}.items())
    for secret in SECRETS:
        assert secret not in stored, secret
    assert "should-not-be-captured" not in stored
    line = params["cmd-sys.argv"]
    assert line.startswith(str(script))
    for kept in ("--password ***", "--secret=***", "--api-key=***", "-token ***", "-p 8080", "--lr 0.1",
                 "MY_TOKEN=***", "postgresql://user:***@db.example:5432/ml", "http://h.example/x?token=***&page=2",
                 "--backup-uri=postgresql://u:***@h/db", "host=h password=*** dbname=d", "model.db_password=***"):
        assert kept in line, (kept, line)
    assert params["QRECORDER_DB_PASSWORD"] == "***" and params["QRECORDER_API_KEY"] == "***"
    assert params["QRECORDER_BACKUP_URI"] == "postgresql://u:***@h/db"
    assert params["QRECORDER_NOTE"] == "http://h/?token=***" and params["QRECORDER_SEED"] == "7"


def test_server_dry_run_warns_about_a_password_on_its_own_command_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QRECORDER_SERVER_BACKEND_URI"}
    out = subprocess.run([QREC, "server", "--backend-store-uri", "postgresql://u:pgpw@db/ml", "--dry-run"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pgpw" not in out.stdout and out.stdout.startswith("MLFLOW_BACKEND_STORE_URI=postgresql")
    assert "://u:***@db/ml " in out.stdout and "--backend-store-uri" not in out.stdout
    assert "Warning" in out.stderr and "QRECORDER_SERVER_BACKEND_URI" in out.stderr
    env["QRECORDER_SERVER_BACKEND_URI"] = "postgresql://u:pgpw@db/ml"
    out = subprocess.run([QREC, "server", "--dry-run"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and "Warning" not in out.stderr and "pgpw" not in out.stdout


def _tree(root: int) -> list[int]:
    """``root`` and every process descended from it (by parent pid, at this moment)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(text[text.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


@pytest.mark.postgres
@pytest.mark.slow
def test_qrec_server_keeps_the_backend_password_off_every_command_line(pg_admin_uri: str, tmp_path: Path) -> None:
    password = "s3cretpw"  # PostgreSQL here trusts 127.0.0.1: any password is accepted
    admin_password = "admin-pw-not-on-argv-42"
    with fresh_pg_database(pg_admin_uri, "qrec_sec") as db_uri:
        uri = db_uri.replace("postgres@", f"postgres:{password}@")
        assert uri.startswith(f"postgresql://postgres:{password}@{PG_HOST}:{PG_PORT}/")
        port = free_port()
        auth_dir = tmp_path / "auth"
        env = {**os.environ, "QRECORDER_SERVER_BACKEND_URI": uri, "QRECORDER_ADMIN_PASSWORD": admin_password}
        env.pop("MLFLOW_TRACKING_URI", None)
        log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [QREC, "server", "--port", str(port), "--workers", "2", "--auth", "--auth-dir", str(auth_dir),
             "--artifacts-destination", str(tmp_path / "artifacts")],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + 240
            while not is_healthy(f"http://127.0.0.1:{port}"):
                assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "server not healthy in time"
                time.sleep(0.5)
            tree = _tree(proc.pid)
            assert len(tree) >= 4  # qrec, mlflow server, uvicorn and its workers
            seen = []
            for pid in tree:
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                seen.append(cmdline)
                assert password not in cmdline, cmdline
                assert admin_password not in cmdline, cmdline
            assert any("mlflow server" in c for c in seen) and any("uvicorn" in c or "spawn_main" in c for c in seen)
            # MLflow got the URI (through the environment): its tables are in the fresh database.
            import psycopg2

            con = psycopg2.connect(db_uri)
            cur = con.cursor()
            cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'experiments'")
            assert cur.fetchone()[0] == 1
            con.close()
            # The auth configuration, its users database and the secret key: owner-only files.
            assert stat.S_IMODE(auth_dir.stat().st_mode) == 0o700
            for name in ("basic_auth.ini", "basic_auth.db", "secret_key"):
                assert stat.S_IMODE((auth_dir / name).stat().st_mode) == 0o600, name
            for extra in auth_dir.iterdir():
                assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0, extra
            assert (auth_dir / "basic_auth.db").stat().st_size > 0  # MLflow made its tables in it
            assert admin_password not in (auth_dir / "basic_auth.ini").read_text()
        finally:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(10)
            log.close()
