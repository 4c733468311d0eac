"""docs/team.md as written: every ```bash runnable block runs against a real ``qrec server``.

A block marked ``bash runnable`` runs against a server without auth, ``bash runnable auth``
against one started with ``--auth`` and the admin password the docs use. ``127.0.0.1:5000`` in
a block is replaced by the test server's address. Blocks run with ``bash -euo pipefail`` at the
root of the repository, with this virtualenv's ``python``/``qrec`` first on PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, fresh_pg_database

from qrecorder.server import ServerConfig, ServerProcess, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DOC = REPO / "docs" / "team.md"
DOC_ADMIN_PASSWORD = "a long admin password"
FENCE = re.compile(r"^```bash runnable(?P<auth> auth)?\n(?P<body>.*?)^```", re.M | re.S)


def runnable_blocks() -> list[tuple[bool, str]]:
    return [(bool(m.group("auth")), m.group("body")) for m in FENCE.finditer(DOC.read_text(encoding="utf-8"))]


def test_docs_have_runnable_blocks() -> None:
    kinds = [auth for auth, _ in runnable_blocks()]
    assert kinds.count(False) >= 1 and kinds.count(True) >= 1
    assert DOC_ADMIN_PASSWORD in DOC.read_text()


@pytest.fixture(scope="module")
def servers(pg_admin_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[bool, ServerProcess]]:
    folder = tmp_path_factory.mktemp("team_docs")
    with fresh_pg_database(pg_admin_uri, "qrec_docs") as db:
        started: dict[bool, ServerProcess] = {}
        mp = pytest.MonkeyPatch()
        mp.setenv("QRECORDER_ADMIN_PASSWORD", DOC_ADMIN_PASSWORD)
        try:
            for auth in (False, True):  # one after the other: the first creates the schema
                cfg = ServerConfig(backend_store_uri=db, artifacts_destination=str(folder / f"art{auth}"),
                                   port=free_port(), workers=1, auth=auth, auth_dir=folder / "auth")
                started[auth] = ServerProcess(cfg, log_path=folder / f"server{auth}.log").start()
            mp.undo()
            yield started
        finally:
            mp.undo()
            for srv in started.values():
                srv.stop()


def _run_block(body: str, url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = body.replace("http://127.0.0.1:5000", url)
    env = {k: v for k, v in os.environ.items()
           if k not in ("QRECORDER_URI", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["HOME"] = str(tmp_path)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=300)


@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "auth"])
def test_runnable_blocks(servers: dict[bool, ServerProcess], auth: bool, tmp_path: Path) -> None:
    blocks = [body for block_auth, body in runnable_blocks() if block_auth == auth]
    assert blocks
    for body in blocks:
        res = _run_block(body, servers[auth].url, tmp_path)
        assert res.returncode == 0, f"block failed:\n{body}\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"
        assert "Traceback" not in res.stderr
        # quickstart logged to the server as written: its run is listed, FINISHED.
        assert "quickstart" in res.stdout and "FINISHED" in res.stdout
        # Quiet: no MLflow "View run" lines, no INFO log lines, no warnings.
        assert "View run" not in res.stdout and "View experiment" not in res.stdout
        assert " INFO " not in res.stderr and "Warning" not in res.stderr, res.stderr[-3000:]
        assert "Downloading artifacts" not in res.stderr, res.stderr[-3000:]  # load_object: no progress bar
    if auth:
        assert "alice  EDIT" in res.stdout and "bob  EDIT" in res.stdout
    log = servers[auth].tail_log(1_000_000)
    assert "DeprecationWarning" not in log, log[-3000:]
