"""The shipped examples run as a user would run them (real interpreter, own folder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("QRECORDER_URI", "MLFLOW_TRACKING_URI")}
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / script), *args], cwd=cwd, capture_output=True, text=True,
        timeout=300, env=env,
    )


def test_quickstart_runs_and_keeps_its_store_where_asked(tmp_path: Path):
    proc = _run("quickstart.py", tmp_path, str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "demo" / "mlflow.db").is_file()
    assert "FINISHED" in proc.stdout


def test_qlib_style_script_runs_unchanged_but_for_the_import(tmp_path: Path):
    proc = _run("qlib_style.py", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlartifacts").is_dir()
