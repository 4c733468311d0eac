"""Provenance: Qlib's code_* artifacts and cmd-sys.argv, env params, nothing outside git."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import run_python

SCRIPT = (
    "from qrecorder import R\n"
    "with R.start(experiment_name='prov'):\n"
    "    R.log_metrics(a=1)\n"
    "    print(R.get_recorder().id)\n"
)


def _read(rid: str, cwd: Path) -> list[str]:
    out = run_python(
        "from qrecorder import R\n"
        f"r = R.get_recorder(recorder_id='{rid}')\n"
        "print(sorted(r.list_artifacts()))\nprint(r.list_params())\nprint(r.list_tags().get('mlflow.source.git.commit'))\n"
        "import pathlib\nart = pathlib.Path(r.get_local_dir()) / 'artifacts'\n"
        "print(repr((art / 'code_diff.txt').read_text() if (art / 'code_diff.txt').exists() else None))\n",
        cwd,
    )
    return out.stdout.splitlines()


def test_git_repository_with_uncommitted_change(tmp_path: Path):
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "model.py").write_text("alpha = 1\n")
    git("add", "model.py")
    git("commit", "-qm", "init")
    (tmp_path / "model.py").write_text("alpha = 2\n")
    commit = git("rev-parse", "HEAD").strip()
    proc = run_python(SCRIPT, tmp_path, env={"QRECORDER_SEED": "7", "_QLIB_FLAG": "x", "QRECORDER_DB_PASSWORD": "hunter2"})
    rid = proc.stdout.strip()
    artifacts, params, tag, diff = _read(rid, tmp_path)
    for name in ("code_diff.txt", "code_status.txt", "code_cached.txt"):
        assert name in artifacts
    assert "+alpha = 2" in diff
    assert tag == commit
    assert "'cmd-sys.argv': '-c'" in params
    assert "'QRECORDER_SEED': '7'" in params and "'_QLIB_FLAG': 'x'" in params
    assert "hunter2" not in params


def test_outside_git_nothing_is_run_or_printed(tmp_path: Path):
    proc = run_python(SCRIPT, tmp_path)
    rid = proc.stdout.strip()
    assert "git" not in proc.stderr.lower()
    artifacts, _params, tag, _diff = _read(rid, tmp_path)
    assert artifacts == "[]" and tag == "None"
