"""``import qrecorder`` must not import MLflow (its import costs seconds)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys, time
t = time.perf_counter()
import qrecorder
from qrecorder import R
elapsed = time.perf_counter() - t
heavy = sorted(m for m in ("mlflow", "sqlalchemy", "alembic") if m in sys.modules)
print(repr((elapsed, heavy)))
"""


def test_import_qrecorder_does_not_import_mlflow() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=120
    )
    _elapsed, heavy = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own output
    assert heavy == [], f"import qrecorder pulled in {heavy}"
    # Its speed (target 0.3 s) is measured in benchmarks/bench_import.py, not asserted here.


def test_using_a_store_imports_mlflow_lazily(tmp_path) -> None:
    """A SQLite store is read and written without MLflow; its API is imported by the first
    call that needs it (here: an artifact upload)."""
    import os
    from pathlib import Path

    import qrecorder

    src = str(Path(qrecorder.__file__).resolve().parents[1])  # this checkout, whatever the cwd
    (tmp_path / "f.txt").write_text("x")
    code = (
        "import sys, qrecorder\n"
        "assert 'mlflow' not in sys.modules\n"
        f"qrecorder.R.set_uri({str('sqlite:///' + str(tmp_path / 'm.db'))!r})\n"
        "assert 'mlflow' not in sys.modules  # set_uri only resolves the URI\n"
        "assert sorted(qrecorder.R.list_experiments()) == ['Default']\n"
        "with qrecorder.R.start(experiment_name='e'):\n"
        "    qrecorder.R.log_metrics(loss=1.0)\n"
        "    assert 'mlflow' not in sys.modules, 'a run on SQLite needs no MLflow import'\n"
        "    qrecorder.R.log_artifact('f.txt')\n"
        "    assert 'mlflow' in sys.modules\n"
        "assert qrecorder.R.get_recorder(experiment_name='e', recorder_name='mlflow_recorder').list_artifacts() == ['f.txt']\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], timeout=300, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
