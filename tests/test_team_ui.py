"""Experiments qrecorder creates are tagged as machine-learning experiments for MLflow's UI.

qrecorder sets ``mlflow.experimentKind = custom_model_development`` on every experiment it
creates. MLflow 3.17.2's bundle, however, lets a UI-wide switch decide the landing view (the
``workflowType`` URL parameter, remembered in the browser's localStorage; default ``genai``,
which opens the GenAI overview) -- its "use the experiment's kind" branch is compiled out. So
links to the UI carry ``?workflowType=machine_learning`` (docs/team.md). The browser check runs
Debian's headless Chromium (Playwright) against a real ``qrec server --auth``, logged in with
HTTP basic credentials.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrecorder.mlflow.manager import EXPERIMENT_KIND_ML, EXPERIMENT_KIND_TAG

CHROMIUM = "/usr/bin/chromium"
ADMIN_PASSWORD = "ui-admin-password-123"


def test_experiments_are_tagged_for_the_runs_view(R) -> None:  # noqa: N803
    with R.start(experiment_name="tagged"):
        R.log_metrics(x=1.0)
    exp = R.get_exp(experiment_name="tagged", create=False)
    client = R.exp_manager.store().client
    assert client.get_experiment(exp.id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND_ML == "custom_model_development"


@pytest.fixture(scope="module")
def auth_server(pg_admin_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from conftest import fresh_pg_database

    from qrecorder.server import ServerConfig, ServerProcess, free_port

    folder = tmp_path_factory.mktemp("team_ui")
    with fresh_pg_database(pg_admin_uri, "qrec_ui") as db:
        mp = pytest.MonkeyPatch()
        mp.setenv("QRECORDER_ADMIN_PASSWORD", ADMIN_PASSWORD)
        cfg = ServerConfig(backend_store_uri=db, artifacts_destination=str(folder / "artifacts"), port=free_port(),
                           workers=1, auth=True, auth_dir=folder / "auth")
        srv = ServerProcess(cfg, log_path=folder / "server.log").start()
        mp.undo()
        try:
            yield srv
        finally:
            srv.stop()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
def test_landing_view_with_auth(auth_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    playwright_sync = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    from qrecorder import R

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    R.set_uri(auth_server.url)
    try:
        with R.start(experiment_name="landing", recorder_name="landing_run_0"):
            R.log_params(model_kind="LinearProbe")
            R.log_metrics(ic_score=0.0123)
        exp_id = R.get_exp(experiment_name="landing", create=False).id
        tags = R.exp_manager.store().client.get_experiment(exp_id).tags  # through the server
        assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND_ML
    finally:
        R.exp_manager._active.clear()
        R.set_uri(None)

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with playwright_sync.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=flags,
            viewport={"width": 1600, "height": 1000},
            http_credentials={"username": "admin", "password": ADMIN_PASSWORD},
        )
        try:
            page = context.new_page()
            page.goto(f"{auth_server.url}/#/experiments/{exp_id}?workflowType=machine_learning", wait_until="load",
                      timeout=120_000)
            page.get_by_text("landing_run_0").first.wait_for(timeout=60_000)  # the runs table
            page.screenshot(path=str(tmp_path / "landing.png"), full_page=True)
            assert "/traces" not in page.url and "overview" not in page.url.lower(), page.url
            assert "Run Name" in page.inner_text("body")
        finally:
            context.close()
