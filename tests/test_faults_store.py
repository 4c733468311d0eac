"""Faults of the store's files, with real processes: a read-only database or folder, a URI
with query parameters, the database deleted mid-run, the artifact folder deleted mid-run, and
a full disk (a tiny tmpfs, mounted as root)."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_python

from qrecorder.errors import LoadObjectError, LoggingFailedError, StoreError, UnsupportedURIError


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QRECORDER_URI", "MLFLOW_TRACKING_URI")}
    env.update(extra)
    return env


def _make_store(db: Path) -> None:
    out = run_python(
        f"from qrecorder import R\nR.set_uri('sqlite:///{db}')\n"
        "with R.start(experiment_name='e', recorder_name='first'):\n    R.log_metrics(step=0, x=1.5)\n",
        db.parent,
        env=_env(),
    )
    assert out.returncode == 0, out.stderr[-3000:]


def _without_root_powers() -> list[str]:
    """A command prefix under which file permissions apply (root ignores them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a chmod 0444 file would still be writable")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


READ_ONLY_PROBE = """
import sys
from qrecorder import R
from qrecorder.errors import StoreReadOnlyError
R.set_uri(sys.argv[1])
print("EXPERIMENTS", sorted(R.list_experiments()))
rec = R.get_recorder(recorder_name="first", experiment_name="e")
print("METRICS", rec.list_metrics())
print("ROWS", len(R.search_records([R.get_exp(experiment_name="e", create=False).id])))
try:
    R.start_exp(experiment_name="e", recorder_name="second")
except StoreReadOnlyError as exc:
    print("REFUSED", exc)
else:
    print("WROTE")
"""


@pytest.fixture
def tmpfs() -> Iterator[Any]:
    """Mount tiny tmpfs file systems (root only); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root")
        path = Path(tempfile.mkdtemp(prefix="qrec-tmpfs-"))
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
        if out.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("how", ["chmod 0444 db", "chmod 0444 all files, 0555 folder", "read-only mount"])
def test_read_only_store_reads_work_and_writes_say_why(how: str, tmp_path: Path, tmpfs: Any) -> None:
    folder = tmpfs("16m") if how == "read-only mount" else tmp_path / "store"
    folder.mkdir(exist_ok=True)
    db = folder / "mlflow.db"
    _make_store(db)
    prefix: list[str] = []
    if how == "read-only mount":
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        prefix = _without_root_powers()
        targets = [db] if how == "chmod 0444 db" else [Path(f) for f in glob.glob(f"{db}*")]
        for f in targets:
            f.chmod(0o444)
        if how != "chmod 0444 db":
            folder.chmod(0o555)
    script = tmp_path / "probe.py"
    script.write_text(READ_ONLY_PROBE)
    try:
        out = subprocess.run(
            [*prefix, sys.executable, str(script), f"sqlite:///{db}"],
            cwd=tmp_path, env=_env(QRECORDER_JOURNAL_DIR=str(tmp_path / "journal")), capture_output=True, text=True, timeout=120,
        )
    finally:
        if how != "read-only mount":
            folder.chmod(0o755)
            for f in glob.glob(f"{db}*"):
                os.chmod(f, 0o644)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'e'" in out.stdout.split("EXPERIMENTS", 1)[1].split("\n", 1)[0], out.stdout
    assert "METRICS {'x': 1.5}" in out.stdout and "ROWS 1" in out.stdout
    assert "WROTE" not in out.stdout
    refused = out.stdout.split("REFUSED", 1)[1]
    assert f"create_run on the SQLite database {db}: the store is read-only" in refused
    assert "attempt to write a readonly database" in refused and "give write access" in refused


def test_sqlite_uri_query_parameters_are_passed_on_not_made_part_of_the_file_name(R: Any, store_dir: Path) -> None:
    uri = f"sqlite:///{store_dir}/x/mlflow.db?timeout=30"
    with R.start(experiment_name="q", recorder_name="r", uri=uri):
        R.log_metrics(step=0, x=2.0)
        R.save_objects(**{"o.pkl": 1})
    assert (store_dir / "x" / "mlflow.db").is_file()
    assert not any("?" in p.name for p in store_dir.rglob("*"))
    assert list((store_dir / "x" / "mlartifacts").rglob("o.pkl"))
    from qrecorder.mlflow.store import get_store

    store = get_store(uri)
    assert store.location.path == store_dir / "x" / "mlflow.db" and store.location.sqlite_timeout_ms == 30_000
    R.set_uri(f"sqlite:///{store_dir}/x/mlflow.db")  # the same file, without the parameter
    assert R.get_recorder(recorder_name="r", experiment_name="q").list_metrics() == {"x": 2.0}
    for bad in ("mode=ro", "uri=true", "isolation_level=DEFERRED", "timeout=soon", "timeout"):
        with pytest.raises(UnsupportedURIError, match="SQLite URI"):
            R.set_uri(f"sqlite:///{store_dir}/x/mlflow.db?{bad}")


DELETED = """
import glob, os, sys
from qrecorder import R
from qrecorder.errors import LoggingFailedError, StoreError
db = sys.argv[1]
R.set_uri('sqlite:///' + db)
R.start_exp(experiment_name='e', recorder_name='doomed')
R.log_metrics(step=0, x=1.0)
R.flush()
for f in glob.glob(db + '*'):
    if not f.endswith('.lock'):
        os.remove(f)
R.log_metrics(step=1, x=2.0)
try:
    R.flush()
except LoggingFailedError as exc:
    print('FLUSH', exc)
try:
    R.end_exp()
except StoreError as exc:
    print('END', type(exc).__name__, exc)
else:
    print('END OK')
"""


def test_database_deleted_mid_run_fails_loudly_and_a_new_process_starts_afresh(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    script = tmp_path / "deleted.py"
    script.write_text(DELETED)
    env = _env(QRECORDER_JOURNAL_DIR=str(tmp_path / "journal"))
    out = subprocess.run([sys.executable, str(script), str(db)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "FLUSH Values logged to run" in out.stdout and f"The SQLite database {db} was deleted" in out.stdout
    assert "END StoreError" in out.stdout and "END OK" not in out.stdout  # never a FINISHED into a deleted file
    out = run_python(
        f"from qrecorder import R\nR.set_uri('sqlite:///{db}')\nwith R.start(experiment_name='e2', recorder_name='new'):\n"
        "    R.log_metrics(x=3.0)\nprint(R.get_recorder(recorder_name='new', experiment_name='e2').status)\n",
        tmp_path, env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "FINISHED" in out.stdout


def test_artifact_folder_deleted_mid_run(R: Any, store_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with R.start(experiment_name="art", recorder_name="r"):
        R.save_objects(**{"a.pkl": [1]})
        R.log_params(long="x" * 7000)  # kept whole as an artifact
        shutil.rmtree(store_dir / "mlartifacts")
        R.save_objects(**{"b.pkl": [2]})  # the folders come back
        R.set_tags(longtag="y" * 9000)
        rec = R.get_recorder()
        assert rec.load_object("b.pkl") == [2]
        with pytest.raises(LoadObjectError, match="a.pkl"):
            rec.load_object("a.pkl")
        assert rec.list_params()["long"] == "x" * 7000  # the running process keeps what it logged
        assert rec.list_tags()["longtag"] == "y" * 9000
        R.log_metrics(x=1.0)
    # Read back from the store: the full text is gone with the folder. Reads still work, return
    # the stored shortened form and say so (one lost value must not make every read fail).
    back = R.get_recorder(recorder_id=rec.id)
    assert back.status == "FINISHED"
    with caplog.at_level(logging.WARNING, logger="qrecorder"):
        shortened = back.list_params()["long"]
    assert shortened.startswith("x" * 100) and shortened.endswith("long.txt]")
    assert "could not be read" in caplog.text and "long" in caplog.text
    assert back.list_tags()["longtag"] == "y" * 9000


FULL = """
import os, sys, time
from qrecorder import R
from qrecorder.errors import QRecorderError
db, filler = sys.argv[1], sys.argv[2]
R.set_uri('sqlite:///' + db)
R.start_exp(experiment_name='e', recorder_name='full')
R.log_metrics(step=0, x=1.0)
R.flush()
with open(filler, 'wb') as fh:                      # take the rest of the disk
    try:
        while True:
            fh.write(b'\\0' * 65536)
    except OSError:
        pass
t = time.monotonic()
try:
    for i in range(1, 400):
        R.log_metrics(step=i, **{f'm{k}': float(k) for k in range(100)})
        if i % 20 == 0:
            R.flush()
except QRecorderError as exc:
    print('LOG', round(time.monotonic() - t, 1), type(exc).__name__, exc)
try:
    R.save_objects(**{'big.pkl': b'x' * 2_000_000})
except QRecorderError as exc:
    print('SAVE', type(exc).__name__, exc)
staging = [p for p in os.popen('find ' + os.path.dirname(db) + ' -name "*.tmp"').read().split()]
print('TEMP FILES', staging)
os.remove(filler)                                   # free the disk: the store works again
try:
    R.end_exp('FAILED')
except QRecorderError as exc:
    print('END', type(exc).__name__)
with R.start(experiment_name='e', recorder_name='after'):
    R.log_metrics(step=0, y=2.0)
print('AFTER', R.get_recorder(recorder_name='after', experiment_name='e').list_metrics())
"""


def test_full_disk_is_reported_at_a_call_and_the_store_recovers(tmpfs: Any, tmp_path: Path) -> None:
    folder = tmpfs("12m")
    script = tmp_path / "full.py"
    script.write_text(FULL)
    out = subprocess.run(
        [sys.executable, str(script), str(folder / "mlflow.db"), str(folder / "filler")],
        cwd=tmp_path, env=_env(QRECORDER_RETRY_SECONDS="10", QRECORDER_JOURNAL_DIR=str(tmp_path / "journal")),
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout.split("LOG", 1)[1].split("\n", 1)[0]
    seconds = float(log.split()[0])
    assert seconds < 10, "a full disk is not a busy database: no retrying for the whole budget"
    assert "LoggingFailedError" in log and "the disk is full" in log and str(folder / "mlflow.db") in log
    assert "SAVE SaveObjectError" in out.stdout and "No space left" in out.stdout
    assert "TEMP FILES []" in out.stdout  # no half-written pickle left behind
    assert "AFTER {'y': 2.0}" in out.stdout


def test_store_errors_are_store_errors() -> None:
    from qrecorder.errors import StoreReadOnlyError, StoreUnavailableError

    assert issubclass(StoreReadOnlyError, StoreError) and issubclass(StoreReadOnlyError, PermissionError)
    assert issubclass(StoreUnavailableError, StoreError)
    assert issubclass(LoggingFailedError, RuntimeError)
