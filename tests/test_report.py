"""The results report: series read through the recorder, charts, monthly IC, links, notebook views."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from qrecorder.runner.results import TABLE_METRICS

MODELS = (("Linear", 0.02), ("LightGBM", 0.05), ("MLP", 0.03))


def make_runs(R, experiment: str = "report_check", seeds: int = 3, days: int = 160,  # noqa: N803
              models=MODELS) -> dict[tuple[str, int], dict]:
    """Runs as run-all leaves them: tags, the table's metrics, and the records' saved series."""
    dates = pd.bdate_range("2021-05-03", periods=days, name="datetime")
    saved = {}
    for mi, (model, edge) in enumerate(models):
        # seeds are created in reverse order so that the store's order is not the report's order
        for seed in reversed(range(seeds)):
            rng = np.random.default_rng(100 * mi + seed)
            with R.start(experiment_name=experiment, recorder_name=f"{model}-{seed}"):
                R.set_tags(**{"qrecorder.model": model, "qrecorder.seed": str(seed), "qrecorder.dataset": "synthetic"})
                ic = pd.Series(edge + 0.1 * rng.standard_normal(days), index=dates)
                ric = ic + 0.01 * rng.standard_normal(days)
                report = pd.DataFrame({"return": 0.001 * edge * 20 + 0.01 * rng.standard_normal(days),
                                       "bench": 0.002 * rng.standard_normal(days), "cost": 0.0003}, index=dates)
                R.save_objects(artifact_path="sig_analysis", **{"ic.pkl": ic, "ric.pkl": ric})
                R.save_objects(artifact_path="portfolio_analysis", **{"report_normal_1day.pkl": report})
                R.log_metrics(**{metric: float(ic.mean()) + 0.001 * k for k, (_, metric) in enumerate(TABLE_METRICS)})
                saved[(model, seed)] = {"ic": ic, "ric": ric, "report": report, "id": R.get_recorder().id}
    return saved


def test_report_files_series_and_monthly_ic(R, tmp_path: Path, monkeypatch) -> None:  # noqa: N803
    from qrecorder.runner.summary import compare_experiments

    monkeypatch.delenv("QRECORDER_UI_URL", raising=False)
    saved = make_runs(R)
    summary, paths = compare_experiments(["report_check"], baseline="Linear", out_dir=tmp_path / "out")
    for name in ("table.md", "table.csv", "table.tex", "runs.csv", "chart.png", "excess_return.png", "ic.png",
                 "monthly_ic.csv", "report.html"):
        assert paths[name].exists(), name
    for name in ("chart.png", "excess_return.png", "ic.png"):  # laptop-sized pictures
        width, height = Image.open(paths[name]).size
        assert width <= 1000 and height <= 600, (name, width, height)

    # the series are the saved ones, read back through each run's recorder
    assert not summary.series_missing
    for (model, seed), obj in saved.items():
        got = summary.series[(model, seed)]
        pd.testing.assert_series_equal(got["ic"], obj["ic"], check_names=False)
        pd.testing.assert_series_equal(got["ric"], obj["ric"], check_names=False)
        rep = obj["report"]
        pd.testing.assert_series_equal(got["excess"], rep["return"] - rep["bench"] - rep["cost"], check_names=False)

    # monthly IC: per seed the month's mean daily IC, then the mean over seeds
    monthly = pd.read_csv(paths["monthly_ic.csv"])
    for model, _ in MODELS:
        per_seed = pd.concat({s: saved[(model, s)]["ic"].resample("ME").mean() for s in range(3)}, axis=1).mean(axis=1)
        got = monthly[monthly["model"] == model].set_index("month")["IC"]
        assert list(got.index) == [p.strftime("%Y-%m") for p in per_seed.index]
        np.testing.assert_allclose(got.to_numpy(), per_seed.to_numpy())
        assert (monthly[monthly["model"] == model]["seeds"] == 3).all()

    # runs sorted by model then seed, in runs.csv and on the page; no UI address -> no links
    runs = pd.read_csv(paths["runs.csv"])
    assert list(zip(runs["model"], runs["seed"], strict=True)) == sorted(saved, key=lambda k: (k[0].lower(), k[1]))
    page = paths["report.html"].read_text()
    positions = [page.index(f"title='{saved[k]['id']}'") for k in sorted(saved, key=lambda k: (k[0].lower(), k[1]))]
    assert positions == sorted(positions)
    assert "#/experiments/" not in page and "QRECORDER_UI_URL" in page
    assert page.count("data:image/png;base64,") == 3
    for text in ("Monthly IC", "Cumulative excess return", "Holm", "95% CI", "max-width:1200px"):
        assert text in page, text


def test_report_links_runs_to_the_mlflow_ui(R, tmp_path: Path, monkeypatch) -> None:  # noqa: N803
    from qrecorder.runner.summary import compare_experiments

    saved = make_runs(R, seeds=2, days=40, models=MODELS[:2])
    exp_id = R.get_exp(experiment_name="report_check", create=False).id
    _, paths = compare_experiments(["report_check"], out_dir=tmp_path / "a", ui_url="http://ui.example:5000/")
    page = paths["report.html"].read_text()
    for obj in saved.values():
        assert f"href='http://ui.example:5000/#/experiments/{exp_id}/runs/{obj['id']}?workflowType=machine_learning'" in page
    monkeypatch.setenv("QRECORDER_UI_URL", "http://127.0.0.1:5001")
    _, paths = compare_experiments(["report_check"], out_dir=tmp_path / "b")
    assert f"href='http://127.0.0.1:5001/#/experiments/{exp_id}/runs/" in paths["report.html"].read_text()


class Foreign:
    """Not on the restricted allow-list: unpickling it would run __setstate__."""

    unpickled = False

    def __setstate__(self, state):
        Foreign.unpickled = True


def test_tampered_or_foreign_objects_are_not_loaded(R, tmp_path: Path) -> None:  # noqa: N803
    """Series are loaded checksum-verified and restricted: a changed file or a foreign class is refused."""
    from qrecorder.runner.summary import compare_experiments

    saved = make_runs(R, seeds=2, days=40, models=MODELS[:2])
    rec = R.get_recorder(recorder_id=saved[("Linear", 0)]["id"])
    ic_file = Path(rec.get_local_dir()) / "artifacts" / "sig_analysis" / "ic.pkl"  # Qlib: the run folder
    data = bytearray(ic_file.read_bytes())
    data[-5] ^= 0xFF
    ic_file.write_bytes(bytes(data))
    with R.start(experiment_name="report_check", recorder_name="foreign"):
        R.set_tags(**{"qrecorder.model": "MLP", "qrecorder.seed": "0"})
        R.log_metrics(IC=0.01)
        R.save_objects(artifact_path="sig_analysis", **{"ic.pkl": Foreign(), "ric.pkl": [1.0, 2.0]})
    summary, paths = compare_experiments(["report_check"], out_dir=tmp_path / "out")
    why = {(m, s): reason for m, s, reason in summary.series_missing}
    assert "sig_analysis/ic.pkl" in why[("Linear", 0)] and "ric.pkl" not in why[("Linear", 0)]
    assert "ic" not in summary.series[("Linear", 0)] and "ric" in summary.series[("Linear", 0)]
    assert "sig_analysis/ic.pkl (LoadObjectError" in why[("MLP", 0)] and "UnpicklingError" in why[("MLP", 0)]
    assert "ric.pkl (unusable: TypeError: a list, not a pandas Series)" in why[("MLP", 0)]
    assert not Foreign.unpickled
    page = paths["report.html"].read_text()
    assert "Runs without saved series (2)" in page


def test_runs_without_series_still_report(R, tmp_path: Path) -> None:  # noqa: N803
    from qrecorder.runner.summary import compare_experiments

    for model in ("A", "B"):
        for seed in range(2):
            with R.start(experiment_name="plain", recorder_name=f"{model}{seed}"):
                R.set_tags(**{"qrecorder.model": model, "qrecorder.seed": str(seed)})
                R.log_metrics(IC=0.01 * (seed + 1) + (model == "B") * 0.01)
    summary, paths = compare_experiments(["plain"], out_dir=tmp_path / "out")
    assert "excess_return.png" not in paths and "ic.png" not in paths and "monthly_ic.csv" not in paths
    assert "No saved series" in paths["report.html"].read_text()
    assert len(summary.series_missing) == 4


def test_markdown_latex_and_nan_counts(R, tmp_path: Path) -> None:  # noqa: N803
    from qrecorder.runner.report import latex, markdown
    from qrecorder.runner.results import summarize

    rows = []
    for model, f in (("Base", lambda s: 0.03 + 0.01 * s), ("Det", lambda s: 0.05), ("Copy", lambda s: 0.03 + 0.01 * s),
                     ("Gap", lambda s: np.nan if s == 1 else 0.2 + 0.01 * s * s)):
        for s in range(4):
            rows.append({"model": model, "dataset": "d", "seed": s, "recorder_id": f"{model}{s}",
                         **{d: f(s) for d, _ in TABLE_METRICS}})
    s = summarize(pd.DataFrame(rows), "Base")
    t = s.table.set_index("model")
    assert t.loc["Gap", "n"] == 4 and t.loc["Gap", "IC n"] == 3  # a NaN run is not counted
    assert t.loc["Gap", "IC mean"] == pytest.approx(np.mean([0.2, 0.24, 0.29]))
    assert t.loc["Copy", "IC test"] == "n/a (identical)" and math.isnan(t.loc["Copy", "IC p"])
    assert t.loc["Det", "IC test"] == "paired"  # a constant model against a varying baseline is a real test
    md = markdown(s)
    assert "(n=3)" in md and "n/a (identical)" in md and "Holm" in md and "[95% CI]" in md
    # Holm over the models that have a p-value on the metric (Det and Gap; Copy has none)
    assert t.loc[["Det", "Gap"], "IC p_holm"].tolist() == pytest.approx(_holm2(t.loc["Det", "IC p"], t.loc["Gap", "IC p"]))
    tex = latex(s)
    assert "Holm-adjusted p < 0.05" in tex
    for model in ("Det", "Gap"):
        starred = t.loc[model, "IC p_holm"] < 0.05
        line = next(ln for ln in tex.splitlines() if ln.startswith(model))
        assert ("$^{*}$" in line.split("&")[2]) == starred


def _holm2(p1: float, p2: float) -> list[float]:
    lo, hi = sorted((p1, p2))
    adj_lo, adj_hi = min(1, 2 * lo), max(min(1, 2 * lo), hi)
    return [adj_lo, adj_hi] if p1 <= p2 else [adj_hi, adj_lo]


def test_notebook_views(R, tmp_path: Path) -> None:  # noqa: N803
    from qrecorder.runner.summary import compare_experiments

    saved = make_runs(R, seeds=2, days=30, models=MODELS[:2])
    summary, _ = compare_experiments(["report_check"], baseline="Linear")
    html = summary._repr_html_()
    assert "<table>" in html and "Linear" in html and "LightGBM" in html and "Holm" in html
    frame = summary.to_frame()
    assert list(frame.index) == ["LightGBM", "Linear"]
    assert frame.loc["LightGBM", ("IC", "mean")] == pytest.approx(summary.table.set_index("model").loc["LightGBM", "IC mean"])
    assert frame.loc["LightGBM", ("", "test")] == "paired"
    assert {"mean", "std", "n", "diff", "ci_low", "ci_high", "d", "p", "p_holm", "test"} == set(frame["IC"].columns)

    rec = R.get_recorder(recorder_id=saved[("Linear", 0)]["id"])
    with R.start(experiment_name="report_check", recorder_name="<b>odd</b>"):
        R.log_params(note="<script>alert(1)</script>")
        odd = R.get_recorder()
    rhtml = rec._repr_html_()
    assert "FINISHED" in rhtml and "qrecorder.model" in rhtml and "IC" in rhtml and rec.id in rhtml
    assert "qrecorder.checksum" not in rhtml
    ohtml = R.get_recorder(recorder_id=odd.id)._repr_html_()
    assert "&lt;script&gt;" in ohtml and "<script>" not in ohtml and "&lt;b&gt;odd" in ohtml
    exp = R.get_exp(experiment_name="report_check", create=False)
    ehtml = exp._repr_html_()
    assert "report_check" in ehtml and all(obj["id"] in ehtml for obj in saved.values())
    assert "first 2 shown" in exp._repr_html_(max_rows=2)
