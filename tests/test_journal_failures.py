"""Background write failures are never silent: exit status, kept journal, `qrec recover`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

QREC = [sys.executable, "-c", "from qrecorder.cli import main; main()"]

SCRIPT = textwrap.dedent(
    """
    import sys
    from mlflow import MlflowClient
    from qrecorder import R
    R.set_uri(sys.argv[1])
    R.start_exp(experiment_name="lost", recorder_name="victim")
    rec = R.get_recorder()
    print(rec.id, flush=True)
    R.log_metrics(step=0, loss=1.0)
    R.get_recorder()._store.writer.flush()
    MlflowClient(sys.argv[1]).delete_run(rec.id)   # another hand deletes the run meanwhile
    for i in range(1, 50):
        R.log_metrics(step=i, loss=1.0 / (i + 1))
    # no later call: the script just ends; the run is ended at exit
    """
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QRECORDER_", "MLFLOW_"))}
    env["QRECORDER_JOURNAL_DIR"] = str(tmp_path / "journals")
    return env


def test_lost_values_make_the_exit_status_non_zero_and_stay_recoverable(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = _env(tmp_path)
    out = subprocess.run([sys.executable, "-c", SCRIPT, uri], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180)
    run_id = out.stdout.strip().splitlines()[0]
    assert out.returncode == 70, out.stderr[-2000:]
    assert "values could not be written" in out.stderr or "could not end run" in out.stderr
    assert "exiting with status 70" in out.stderr

    # The next process replays the kept values; the run is still deleted, so they are kept aside.
    rec = subprocess.run([*QREC, "recover", "--uri", uri, "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180)
    assert rec.returncode == 1, rec.stdout + rec.stderr
    report = json.loads(rec.stdout)
    assert run_id in report["errors"] and report["kept"]
    assert all(p.endswith(".failed") for p in report["kept"])

    # Restore the run, retry: all 50 values are there, each once.
    from mlflow import MlflowClient

    MlflowClient(uri).restore_run(run_id)
    again = subprocess.run([*QREC, "recover", "--uri", uri, "--retry-failed", "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["values"] >= 49
    steps = sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, "loss"))
    assert steps == list(range(50))
    assert not list((tmp_path / "journals").rglob("*.failed")) and not list((tmp_path / "journals").rglob("*.jrnl"))


def test_recover_with_nothing_to_do(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = subprocess.run([*QREC, "recover", "--uri", uri], cwd=tmp_path, env=_env(tmp_path),
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Replayed 0 value(s) of 0 run(s) from 0 journal(s)")


def test_full_journal_disk_refuses_the_call_clearly(tmp_path: Path) -> None:
    """A journal on a full disk: the call raises JournalWriteError and is not accepted; earlier ones are kept."""
    if os.geteuid() != 0:
        import pytest

        pytest.skip("mounting a tiny tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        code = textwrap.dedent(
            f"""
            import json, sys
            from qrecorder import R, JournalWriteError
            R.set_uri("sqlite:///{tmp_path / 'mlflow.db'}")
            accepted, error = 0, None
            with R.start(experiment_name="full"):
                rid = R.get_recorder().id
                for i in range(100_000):
                    try:
                        R.log_metrics(step=i, x=float(i))
                    except JournalWriteError as exc:
                        error = str(exc)
                        break
                    accepted += 1
            print(json.dumps({{"rid": rid, "accepted": accepted, "error": error}}))
            """
        )
        env = {**_env(tmp_path), "QRECORDER_JOURNAL_DIR": str(mnt)}
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        data = json.loads(out.stdout.strip().splitlines()[-1])
        assert data["error"] and "could not be written" in data["error"] and "QRECORDER_JOURNAL_DIR" in data["error"]
        assert 100 < data["accepted"] < 100_000
        from mlflow import MlflowClient

        steps = sorted(m.step for m in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(data["rid"], "x"))
        assert steps == list(range(data["accepted"]))  # every accepted value, not the refused one
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_hostile_journals_neither_block_nor_forge(tmp_path: Path) -> None:
    """A malformed journal must not stop the others; forged records (checksum tags, bad keys) are not written."""
    from mlflow import MlflowClient

    from qrecorder.mlflow import journal

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = _env(tmp_path)
    make = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from qrecorder import R
        R.set_uri({uri!r})
        with R.start(experiment_name="j"):
            R.save_objects(**{{"pred.pkl": [1]}})
            print(R.get_recorder().id)
    """)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    run_id = make.stdout.strip().splitlines()[-1]
    from qrecorder.mlflow.journal import journal_dir_for
    from qrecorder.uri import resolve_uri

    loc = resolve_uri(uri)
    os.environ["QRECORDER_JOURNAL_DIR"] = env["QRECORDER_JOURNAL_DIR"]
    try:
        folder = journal_dir_for(loc.uri, loc.kind, loc.path)
    finally:
        del os.environ["QRECORDER_JOURNAL_DIR"]
    folder.mkdir(parents=True, exist_ok=True)
    header = journal._frame(("qrecorder-journal-1", uri, 1, "h"))
    (folder / "aaaa-1-1.jrnl").write_bytes(header + journal._frame(("S", "not-a-number")))
    (folder / "bbbb-1-2.jrnl").write_bytes(header + journal._frame(("t", run_id, [("qrecorder.checksum.pred.pkl", "blake3:00")]))
                                           + journal._frame(("p", run_id, [("bad key\n(", "x")])))
    (folder / "zzzz-1-3.jrnl").write_bytes(header + journal._frame(("p", run_id, [("recovered", "yes")])))
    out = subprocess.run([*QREC, "recover", "--uri", uri, "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.params.get("recovered") == "yes"
    assert run.data.tags["qrecorder.checksum.pred.pkl"].startswith("blake3:") and run.data.tags["qrecorder.checksum.pred.pkl"] != "blake3:00"
    assert "bad key\n(" not in run.data.params
    assert not list(folder.glob("*.jrnl"))
