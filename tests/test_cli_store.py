"""``qrec experiments | runs | show | rm | gc | export | ui | server`` on a real SQLite store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from qrecorder.cli import main

QREC = str(Path(sys.executable).with_name("qrec"))


@pytest.fixture
def store(R, sqlite_uri: str) -> dict:  # noqa: N803 - conftest's R fixture
    """Three runs in experiment 'demo' (two FINISHED, one FAILED) with params, metrics, an object."""
    ids = []
    for i in range(3):
        try:
            with R.start(experiment_name="demo", recorder_name=f"run{i}"):
                R.log_params(model="Linear", lr=0.1 * (i + 1))
                R.log_metrics(ic=0.01 * (i + 1), loss=1.0 / (i + 1))
                R.log_metrics(step=1, ic=0.02 * (i + 1))
                R.save_objects(pred={"i": i})
                R.set_tags(seed=str(i))
                ids.append(R.get_recorder().id)
                if i == 2:
                    raise RuntimeError("boom")
        except RuntimeError:
            pass
    return {"uri": sqlite_uri, "ids": ids}


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_help_teaches_and_is_cheap():
    res = invoke("--help")
    assert res.exit_code == 0
    for name in ("experiments", "runs", "show", "rm", "gc", "export", "ui", "server"):
        assert name in res.output
    res = invoke("runs", "--help")
    assert "Examples" in res.output and "--filter" in res.output and "--json" in res.output
    code = "import sys, qrecorder.cli; assert 'mlflow' not in sys.modules and 'pandas' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([QREC, "--help"], capture_output=True, text=True, check=True)
    assert "runs" in out.stdout  # its speed is measured in benchmarks/bench_import.py


def test_experiments_table_and_json(store):
    res = invoke("experiments", "--uri", store["uri"])
    assert res.exit_code == 0, res.output
    assert "demo" in res.output and "Runs" in res.output
    data = json.loads(invoke("experiments", "--uri", store["uri"], "--json").stdout)
    demo = next(e for e in data if e["name"] == "demo")
    assert demo["runs"] == 3


def test_runs_table_json_status_sort_filter_limit(store):
    res = invoke("runs", "demo", "--uri", store["uri"])
    assert res.exit_code == 0, res.output
    for rid in store["ids"]:
        assert rid in res.output
    assert "FAILED" in res.output and "FINISHED" in res.output and "ic" in res.output

    data = json.loads(invoke("runs", "demo", "--uri", store["uri"], "--json").stdout)
    assert data["total"] == 3 and [r["run_id"] for r in data["runs"]] == store["ids"][::-1]  # newest first
    first = data["runs"][-1]
    assert first["metrics"] == {"ic": pytest.approx(0.02), "loss": pytest.approx(1.0)}
    assert first["params"]["model"] == "Linear"

    failed = json.loads(invoke("runs", "demo", "--uri", store["uri"], "--status", "failed", "--json").stdout)
    assert [r["run_id"] for r in failed["runs"]] == [store["ids"][2]]

    by_loss = json.loads(invoke("runs", "demo", "--uri", store["uri"], "--sort", "metrics.loss ASC", "--json").stdout)
    assert [r["run_id"] for r in by_loss["runs"]] == store["ids"][::-1]

    flt = json.loads(invoke("runs", "demo", "--uri", store["uri"], "--filter", "params.lr = '0.1'", "--json").stdout)
    assert [r["run_id"] for r in flt["runs"]] == [store["ids"][0]]

    limited = invoke("runs", "demo", "--uri", store["uri"], "--limit", "1")
    assert "showing 1 of 3" in limited.output

    by_id = json.loads(invoke("runs", data["experiment_id"], "--uri", store["uri"], "--json").stdout)
    assert by_id["experiment_name"] == "demo"


def test_quick_path_and_core_agree(store, monkeypatch):
    fast = json.loads(invoke("runs", "demo", "--uri", store["uri"], "--json").stdout)
    monkeypatch.setenv("QRECORDER_FAST_READS", "0")
    slow = json.loads(invoke("runs", "demo", "--uri", store["uri"], "--json").stdout)
    assert [r["run_id"] for r in fast["runs"]] == [r["run_id"] for r in slow["runs"]]
    for a, b in zip(fast["runs"], slow["runs"], strict=True):
        assert a["metrics"] == b["metrics"] and a["params"] == b["params"] and a["status"] == b["status"]
        assert a["name"] == b["name"]


def test_show(store):
    rid = store["ids"][1]
    res = invoke("show", rid, "--uri", store["uri"])
    assert res.exit_code == 0, res.output
    for text in ("run1", "demo", "FINISHED", "Params", "model", "Linear", "Metrics", "loss", "Tags", "seed", "pred"):
        assert text in res.output
    info = json.loads(invoke("show", rid, "--uri", store["uri"], "--json").stdout)
    assert info["params"]["lr"] == "0.2"
    assert info["metrics"]["ic"] == pytest.approx(0.04)
    assert info["tags"]["seed"] == "1"
    assert {"path": "pred", "size": info["artifacts"][0]["size"]} in info["artifacts"]
    failed = json.loads(invoke("show", store["ids"][2], "--uri", store["uri"], "--json").stdout)
    assert failed["status"] == "FAILED" and "boom" in failed["tags"]["qrecorder.exception"]


def test_not_found_and_usage_exit_codes(store, tmp_path):
    res = invoke("show", "0" * 32, "--uri", store["uri"])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "Traceback" not in res.output
    res = invoke("runs", "nope", "--uri", store["uri"])
    assert res.exit_code == 1 and "No experiment named 'nope'" in res.output
    res = invoke("runs", "demo", "--uri", str(tmp_path / "missing.db"))
    assert res.exit_code == 1 and "No qrecorder store" in res.output
    assert not (tmp_path / "missing.db").exists()  # reading never creates a store
    res = invoke("runs", "demo", "--limit", "-3", "--uri", store["uri"])
    assert res.exit_code == 2
    res = invoke("runs")
    assert res.exit_code == 2


def test_unreachable_server_exit_3(monkeypatch):
    from qrecorder.server import free_port

    monkeypatch.setenv("QRECORDER_RETRY_SECONDS", "1")
    start = time.perf_counter()
    res = invoke("experiments", "--uri", f"http://127.0.0.1:{free_port()}")
    assert res.exit_code == 3, res.output
    assert "unreachable" in res.output and "Traceback" not in res.output
    assert time.perf_counter() - start < 20


def test_rm_and_gc_purge(store):
    uri = store["uri"]
    rid = store["ids"][0]
    res = invoke("rm", rid, "--uri", uri, "--json", "-y")
    assert res.exit_code == 0 and json.loads(res.stdout)["deleted"][0]["run_id"] == rid
    assert rid not in invoke("runs", "demo", "--uri", uri).output
    assert json.loads(invoke("show", rid, "--uri", uri, "--json").stdout)["lifecycle_stage"] == "deleted"
    res = invoke("rm", "0" * 32, "--uri", uri, "-y")
    assert res.exit_code == 1
    res = CliRunner().invoke(main, ["rm", store["ids"][1], "--uri", uri], input="n\n")
    assert res.exit_code == 1  # declined: nothing deleted
    assert store["ids"][1] in invoke("runs", "demo", "--uri", uri).output

    res = invoke("gc", "--purge", "--uri", uri, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["purged_runs"] == [rid]
    con = sqlite3.connect(uri[len("sqlite:///"):])
    assert con.execute("SELECT COUNT(*) FROM runs WHERE run_uuid = ?", (rid,)).fetchone()[0] == 0

    res = invoke("rm", "-e", "demo", "--uri", uri, "-y")
    assert res.exit_code == 0
    names = [e["name"] for e in json.loads(invoke("experiments", "--uri", uri, "--json").stdout)]
    assert "demo" not in names


def test_gc_marks_killed_process_failed(store_dir, sqlite_uri):
    code = (
        "import os\nfrom qrecorder import R\n"
        f"R.set_uri({sqlite_uri!r})\n"
        "R.start_exp(experiment_name='crash')\nR.log_metrics(x=1.0)\n"
        "import time\nrec = R.get_recorder()\n"
        "while 'qrecorder.process' not in rec.list_tags():\n    time.sleep(0.05)\n"  # written at start, async
        "R.flush()\n"
        "print(R.get_recorder().id, flush=True)\nos.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9
    rid = proc.stdout.split()[0]
    dry = json.loads(invoke("gc", "--dry-run", "--uri", sqlite_uri, "--json").stdout)
    assert dry["marked_failed"] == [rid]
    assert json.loads(invoke("show", rid, "--uri", sqlite_uri, "--json").stdout)["status"] == "RUNNING"
    res = invoke("gc", "crash", "--uri", sqlite_uri)
    assert res.exit_code == 0 and rid in res.output
    info = json.loads(invoke("show", rid, "--uri", sqlite_uri, "--json").stdout)
    assert info["status"] == "FAILED" and info["tags"]["qrecorder.stale"] == "1"


def test_export_csv_parquet_markdown(store, tmp_path):
    import pandas as pd

    uri = store["uri"]
    csv = tmp_path / "runs.csv"
    res = invoke("export", "demo", "--uri", uri, "-o", str(csv))
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(csv)
    assert len(frame) == 3 and {"metrics.ic", "params.lr", "tags.seed", "experiment_name"} <= set(frame.columns)
    pq = tmp_path / "runs.parquet"
    assert invoke("export", "demo", "--uri", uri, "-f", "parquet", "-o", str(pq), "--status", "FINISHED").exit_code == 0
    assert sorted(pd.read_parquet(pq)["run_id"]) == sorted(store["ids"][:2])
    md = invoke("export", "demo", "--uri", uri, "-f", "md", "--no-tags").output
    assert md.startswith("| run_id |") and "metrics.loss" in md and "tags." not in md and md.count("\n") == 5
    assert invoke("export", "demo", "--uri", uri, "-f", "parquet").exit_code == 1


def test_ui_and_server_dry_run(store, monkeypatch, tmp_path):
    res = invoke("ui", "--uri", store["uri"], "--port", "5055", "--dry-run")
    assert res.exit_code == 0 and "MLFLOW_BACKEND_STORE_URI=sqlite:///" in res.output and "mlflow ui" in res.output
    assert "--backend-store-uri" not in res.output and "5055" in res.output
    assert invoke("ui", "--uri", "http://127.0.0.1:1").exit_code == 1
    res = invoke("server", "--backend-store-uri", "postgresql://u:secret@db:5432/ml", "--artifacts-destination",
                 "s3://bucket/ml", "--host", "0.0.0.0", "--workers", "3", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "postgresql" in res.output and "://u:***@db:5432/ml" in res.output and "secret" not in res.output
    assert "--backend-store-uri" not in res.output.split("mlflow server")[1]  # by environment, not argv
    assert "--serve-artifacts --artifacts-destination s3://bucket/ml" in res.output and "--workers 3" in res.output
    monkeypatch.delenv("QRECORDER_ADMIN_PASSWORD", raising=False)
    res = invoke("server", "--backend-store-uri", "postgresql://db/ml", "--auth", "--auth-dir", str(tmp_path / "a"), "--dry-run")
    assert res.exit_code == 1 and "QRECORDER_ADMIN_PASSWORD" in res.output
    monkeypatch.setenv("QRECORDER_ADMIN_PASSWORD", "correct-horse-battery")
    res = invoke("server", "--backend-store-uri", "postgresql://db/ml", "--auth", "--auth-dir", str(tmp_path / "a"), "--dry-run")
    assert res.exit_code == 0 and "--app-name qrecorder" in res.output
    res = invoke("server", "--backend-store-uri", "postgresql://db/ml", "--no-fast-paths", "--dry-run")
    assert res.exit_code == 0 and "--app-name" not in res.output, res.output  # MLflow's own app, untouched
    from qrecorder.server import ServerConfig, build_env

    env = build_env(ServerConfig(backend_store_uri="postgresql://db/ml"), base={})
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false" and env["QRECORDER_SERVER_FAST_PATHS"] == "1"
    env = build_env(ServerConfig(backend_store_uri="postgresql://db/ml", jobs=True, fast_paths=False), base={})
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true" and env["QRECORDER_SERVER_FAST_PATHS"] == "0"
    env = build_env(ServerConfig(backend_store_uri="postgresql://db/ml"), base={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"  # the operator's own setting wins
    ini = (tmp_path / "a" / "basic_auth.ini").read_text()
    assert "admin_username = admin" in ini and "correct-horse" not in ini


def _fill_runs(db: Path, experiment: str, n: int) -> None:
    """Add ``n`` finished runs (4 metrics, 3 params each) to an existing experiment by SQL."""
    con = sqlite3.connect(str(db))
    exp_id, art = con.execute("SELECT experiment_id, artifact_location FROM experiments WHERE name = ?", (experiment,)).fetchone()
    now = int(time.time() * 1000)
    runs, metrics, params = [], [], []
    for i in range(n):
        rid = uuid.uuid4().hex
        start = now - i * 1000
        runs.append((rid, f"run{i}", "LOCAL", "x", "", "u", "FINISHED", start, start + 500, "", "active",
                     f"{art}/{rid}/artifacts", exp_id))
        metrics += [(k, (i % 97) / 97.0, start, 0, 0, rid) for k in ("ic", "rank_ic", "loss", "sharpe")]
        params += [(k, v, rid) for k, v in (("model", "Linear"), ("seed", str(i)), ("lr", "0.1"))]
    con.executemany(
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, "
        "end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", runs)
    con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?,?,?,?,?,?)", metrics)
    con.executemany("INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?,?,?,?,?,?)", metrics)
    con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", params)
    con.commit()
    con.close()


def test_real_subprocess_runs_over_10000_runs(store, store_dir):
    """The real command over 10,000 runs (its speed is measured in benchmarks/bench_reads.py)."""
    _fill_runs(store_dir / "mlflow.db", "demo", 10_000)
    env = {**os.environ, "QRECORDER_URI": store["uri"]}
    proc = subprocess.run([QREC, "runs", "demo"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "showing 50 of 10003 runs" in proc.stdout
    proc = subprocess.run([QREC, "runs", "demo", "--json", "--limit", "0"], capture_output=True, text=True, env=env, timeout=60)
    assert len(json.loads(proc.stdout)["runs"]) == 10_003
    proc = subprocess.run([QREC, "show", "nope"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("Error: No run with id 'nope'")
