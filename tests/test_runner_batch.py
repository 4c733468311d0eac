"""run-all with real worker processes: parallel cells, failure isolation, retries, resume, reports."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _runner_helpers import LGB, LINEAR, write_bench

from qrecorder.runner.discovery import discover
from qrecorder.workflow import ConfigError

QREC = str(Path(sys.executable).parent / "qrec")


def _qrec(args, cwd, env=None, timeout=300):
    import os

    return subprocess.run([QREC, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _runs(R, exp="run_all_model"):
    df = R.search_records([R.get_exp(experiment_name=exp, create=False).id])
    return df[df["tags.qrecorder.kind"] == "run"]


def test_discovery_layout_and_bad_names(tmp_path):
    root = write_bench(tmp_path / "b", {"Linear": LINEAR, "LightGBM": LGB})
    (root / "Linear" / "workflow_config_linear_synthetic_csi300.yaml").write_text(
        (root / "Linear" / "workflow_config_linear_synthetic.yaml").read_text())
    (root / "Linear" / "requirements.txt").write_text("# nothing\n")
    found = discover(root)
    assert [m.name for m in found] == ["LightGBM", "Linear"]
    assert found[1].config_path.name == "workflow_config_linear_synthetic.yaml"
    assert found[1].requirements == root / "Linear" / "requirements.txt" and found[0].requirements is None
    assert [m.name for m in discover(root, universe="csi300")] == ["Linear"]
    assert [m.name for m in discover(root, models="lightgbm", exclude=True)] == ["Linear"]
    with pytest.raises(ConfigError, match=r"unknown model name\(s\) \['XGBoost'\]; available: \['LightGBM', 'Linear'\]"):
        discover(root, models="XGBoost,Linear")
    with pytest.raises(ConfigError, match="no config matches"):
        discover(root, dataset="alpha158")


@pytest.mark.slow
def test_run_all_isolation_retries_resume_and_reports(R, sqlite_uri, store_dir):
    bench = write_bench(store_dir / "bench", {
        "Linear": LINEAR, "LightGBM": LGB,
        "Boom": {"class": "Boom", "module_path": "user"},
        "Flaky": {"class": "Flaky", "module_path": "user", "kwargs": {"marker_dir": str(store_dir)}},
    })
    res = _qrec(["run-all", str(bench), "--times", "2", "--workers", "2", "--retries", "1", "--uri", sqlite_uri,
                 "--baseline", "Linear", "--out", "out", "--no-progress"], cwd=store_dir)
    assert res.returncode == 1, res.stderr  # a model failed: non-zero, but everything else ran
    assert "FAILED Boom seed=0" in res.stderr and "boom: this model always fails" in res.stderr
    runs = _runs(R)
    status = runs.groupby(["tags.qrecorder.model", "status"]).size().to_dict()
    assert status[("Linear", "FINISHED")] == 2 and status[("LightGBM", "FINISHED")] == 2
    assert status[("Boom", "FAILED")] == 4  # 2 seeds x (1 + 1 retry)
    assert status[("Flaky", "FAILED")] == 2 and status[("Flaky", "FINISHED")] == 2  # retry succeeded
    assert sorted(runs[runs["tags.qrecorder.model"] == "Linear"]["params.seed"].astype(int)) == [0, 1]
    boom = runs[runs["tags.qrecorder.model"] == "Boom"].iloc[0]
    rec = R.get_recorder(recorder_id=boom["run_id"], experiment_name="run_all_model")
    assert "boom" in rec.list_tags()["qrecorder.exception"]
    # reports
    out = store_dir / "out"
    md = (out / "table.md").read_text()
    assert "| Model Name | Dataset | IC | ICIR | Rank IC | Rank ICIR | Annualized Return | Information Ratio | Max Drawdown |" in md
    table = pd.read_csv(out / "table.csv").set_index("model")
    assert set(table.index) == {"Flaky", "LightGBM", "Linear"} and table.loc["Linear", "n"] == 2
    lin = runs[runs["tags.qrecorder.model"] == "Linear"]["metrics.IC"].astype(float)
    assert table.loc["Linear", "IC mean"] == pytest.approx(lin.mean())
    assert table.loc["Linear", "IC std"] == pytest.approx(lin.std())
    assert table.loc["LightGBM", "test"] == "paired"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "boom" in html
    assert (out / "chart.png").read_bytes()[:4] == b"\x89PNG" and "\\begin{tabular}" in (out / "table.tex").read_text()
    summ = R.search_records([R.get_exp(experiment_name="run_all_model", create=False).id])
    summ = summ[summ["tags.qrecorder.kind"] == "summary"]
    assert len(summ) == 1
    srec = R.get_recorder(recorder_id=summ["run_id"].iloc[0], experiment_name="run_all_model")
    assert any(a.endswith("table.md") for a in srec.list_artifacts("summary"))

    # resume: nothing finished is run again; only the failing model's cells are retried
    res2 = _qrec(["run-all", str(bench), "--times", "2", "--workers", "2", "--uri", sqlite_uri, "--out", "out2",
                  "--no-progress", "--models", "Linear,LightGBM,Flaky"], cwd=store_dir)
    assert res2.returncode == 0, res2.stderr
    assert "0 cells run, 6 resumed" in res2.stdout
    assert len(_runs(R)) == len(runs)
    # a third repeat runs only the new seed
    res3 = _qrec(["run-all", str(bench), "--times", "3", "-m", "Linear", "--uri", sqlite_uri, "--out", "out3",
                  "--no-progress"], cwd=store_dir)
    assert "1 cells run, 2 resumed" in res3.stdout, res3.stdout
    # compare rebuilds the table from the store
    res4 = _qrec(["compare", "-e", "run_all_model", "--baseline", "Linear", "--uri", sqlite_uri, "--out", "cmp"],
                 cwd=store_dir)
    assert res4.returncode == 0, res4.stderr
    cmp_table = pd.read_csv(store_dir / "cmp" / "table.csv").set_index("model")
    assert cmp_table.loc["Linear", "n"] == 3 and cmp_table.loc["LightGBM", "n"] == 2
    json.dumps(cmp_table.reset_index().to_dict())


def test_run_all_unknown_model_is_a_clear_error(tmp_path, sqlite_uri):
    bench = write_bench(tmp_path / "b", {"Linear": LINEAR})
    res = _qrec(["run-all", str(bench), "-m", "Transformer", "--uri", sqlite_uri, "--no-progress"], cwd=tmp_path)
    assert res.returncode == 2
    assert "unknown model name(s) ['Transformer']; available: ['Linear']" in res.stderr
    assert str(bench) in res.stderr


def test_run_all_in_process_leaves_no_global_state_behind(R, store_dir, monkeypatch):
    """run_all called as a library: R's store and the process environment are as before."""
    import os

    from qrecorder.runner.batch import run_all

    monkeypatch.delenv("QRECORDER_URI", raising=False)
    bench = write_bench(store_dir / "bench", {"Linear": LINEAR})
    other = f"sqlite:///{store_dir / 'batch.db'}"
    before = R.get_uri()
    result = run_all(bench, times=1, workers=1, uri=other, out_dir=store_dir / "out", progress=False, report=False)
    assert R.get_uri() == before and "QRECORDER_URI" not in os.environ
    with R.uri_context(other):
        runs = R.search_records([R.get_exp(experiment_name="run_all_model", create=False).id])
    assert list(runs["status"]) == ["FINISHED"] and result.experiment_name == "run_all_model"
