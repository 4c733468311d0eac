"""Build the results table of a batch (or of any experiments) and keep it as a summary recorder.

The MLflow UI address used to link each run in report.html is ``ui_url`` when given, else the
environment variable ``QRECORDER_UI_URL`` (e.g. ``http://127.0.0.1:5000``), else none.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from qrecorder import tags as tag_keys  # `tags` is a parameter below
from qrecorder.runner.report import write_all
from qrecorder.runner.results import Summary, collect, load_series, runs_frame, summarize

UI_URL_ENV = "QRECORDER_UI_URL"


def resolve_ui_url(ui_url: str | None) -> str | None:
    """``ui_url``, else ``$QRECORDER_UI_URL``, else None (no links)."""
    return (ui_url or os.environ.get(UI_URL_ENV) or "").strip() or None


def save_summary_recorder(experiment_name: str, paths: dict[str, Path], summary: Summary,
                          tags: dict[str, str] | None = None) -> str:
    """A recorder tagged ``qrecorder.kind=summary`` holding every report file as an artifact."""
    from qrecorder import R

    with R.start(experiment_name=experiment_name, recorder_name=f"summary-{(tags or {}).get(tag_keys.BATCH, 'compare')}"):
        rec = R.get_recorder()
        rec.set_tags(**{tag_keys.KIND: tag_keys.KIND_SUMMARY, **(tags or {})})
        if summary.baseline:
            rec.log_params(baseline=summary.baseline)
        for p in paths.values():
            rec.log_artifact(str(p), artifact_path="summary")
        rec.save_objects(artifact_path="summary", **{"summary.pkl": summary.table, "runs.pkl": summary.runs})
        assert rec.id is not None, "a started recorder has an id"
        return rec.id


def summarize_batch(result: Any, configs: Iterable[Any], *, baseline: str | None, out_dir: Path,
                    ui_url: str | None = None) -> Summary:
    """Table over every finished cell of this batch's models and seeds (resumed ones included)."""
    models = sorted({c.model for c in result.cells})
    seeds = sorted({c.seed for c in result.cells})
    hashes = {c.model: c.config_hash for c in result.cells}
    runs = collect(result.experiment_name, models=models, seeds=seeds, config_hashes=hashes)
    summary = summarize(runs, baseline)
    summary.failures = result.failures
    summary.ui_url = resolve_ui_url(ui_url)
    load_series(summary)
    result.summary = summary
    result.paths = write_all(summary, out_dir, title=f"qrec run-all: {result.experiment_name}")
    result.summary_recorder_id = save_summary_recorder(result.experiment_name, result.paths, summary,
                                                       {tag_keys.BATCH: result.batch})
    return summary


def compare_experiments(experiment_names: list[str], *, baseline: str | None = None, models: list[str] | None = None,
                        out_dir: str | Path | None = None, save: bool = False,
                        ui_url: str | None = None) -> tuple[Summary, dict[str, Path]]:
    """Rebuild the table from finished runs already in the store (any experiments, any origin).

    With ``out_dir`` the runs' saved series are read too (for the curves in report.html).
    """
    from qrecorder import R

    frames = []
    for name in experiment_names:
        exp = R.get_exp(experiment_name=name, create=False)
        frames.append(runs_frame(R.search_records([exp.id]), name))
    runs = pd.concat(frames, ignore_index=True) if frames else runs_frame(None)
    if models:
        keys = {m.lower() for m in models}
        runs = runs[runs["model"].str.lower().isin(keys)]
    summary = summarize(runs.reset_index(drop=True), baseline)
    summary.ui_url = resolve_ui_url(ui_url)
    if out_dir:
        load_series(summary)
    paths = write_all(summary, out_dir, title=f"qrec compare: {', '.join(experiment_names)}") if out_dir else {}
    if save and paths:
        save_summary_recorder(experiment_names[0], paths, summary, {tag_keys.BATCH: "compare"})
    return summary, paths
