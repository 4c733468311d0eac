"""Results: one row per finished run, then per model n, mean, std and a test against a baseline.

Columns follow Qlib's run_all_model table; the portfolio columns are the *with cost* excess
return numbers (``1day.excess_return_with_cost.*``), as there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from qrecorder.analysis.stats import compare_to_baseline
from qrecorder.runner.cells import T_DATASET, T_HASH, T_KIND, T_MODEL, T_SEED

TABLE_METRICS: list[tuple[str, str]] = [
    ("IC", "IC"), ("ICIR", "ICIR"), ("Rank IC", "Rank IC"), ("Rank ICIR", "Rank ICIR"),
    ("Annualized Return", "1day.excess_return_with_cost.annualized_return"),
    ("Information Ratio", "1day.excess_return_with_cost.information_ratio"),
    ("Max Drawdown", "1day.excess_return_with_cost.max_drawdown"),
]


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df.columns else pd.Series([np.nan] * len(df), index=df.index, dtype=object)


def runs_frame(records: pd.DataFrame, experiment_name: str | None = None) -> pd.DataFrame:
    """Normalise a ``search_records`` frame to model, dataset, seed, recorder_id and the table metrics.

    Only FINISHED runs that are not summaries count. The model name comes from the tag
    ``qrecorder.model``, else the param ``model``, else the experiment name.
    """
    if records is None or len(records) == 0:
        return pd.DataFrame(columns=["model", "dataset", "seed", "recorder_id", "config_hash", "experiment"]
                            + [d for d, _ in TABLE_METRICS])
    df = records[records["status"] == "FINISHED"]
    df = df[_col(df, f"tags.{T_KIND}").fillna("run") != "summary"]
    model = _col(df, f"tags.{T_MODEL}").fillna(_col(df, "params.model")).fillna(experiment_name or "unknown")
    seed = pd.to_numeric(_col(df, f"tags.{T_SEED}").fillna(_col(df, "params.seed")), errors="coerce")
    out = pd.DataFrame({
        "model": model.astype(str), "dataset": _col(df, f"tags.{T_DATASET}").fillna(""), "seed": seed,
        "recorder_id": df["run_id"], "config_hash": _col(df, f"tags.{T_HASH}"), "experiment": experiment_name,
    }, index=df.index)
    for display, metric in TABLE_METRICS:
        out[display] = pd.to_numeric(_col(df, f"metrics.{metric}"), errors="coerce")
    return out.reset_index(drop=True)


@dataclass
class Summary:
    """Per-model statistics. ``table`` has columns model, dataset, n, test, and per metric mean/std/p."""

    table: pd.DataFrame
    baseline: str | None
    runs: pd.DataFrame
    failures: list[dict[str, Any]] = field(default_factory=list)


def summarize(runs: pd.DataFrame, baseline: str | None = None) -> Summary:
    """Aggregate runs per model and test each metric against ``baseline`` (default: the first model)."""
    models = sorted(runs["model"].unique(), key=str.lower) if len(runs) else []
    if baseline is not None and models and baseline not in models:
        match = [m for m in models if m.lower() == baseline.lower()]
        if not match:
            raise ValueError(f"baseline {baseline!r} is not among the models {models}")
        baseline = match[0]
    baseline = baseline or (models[0] if models else None)
    rows = []
    for m in models:
        sub = runs[runs["model"] == m]
        row: dict[str, Any] = {"model": m, "dataset": ",".join(sorted({str(d) for d in sub["dataset"] if d})),
                               "n": len(sub)}
        tests = set()
        for display, _ in TABLE_METRICS:
            vals = sub.set_index("seed")[display]
            row[f"{display} mean"] = vals.mean()
            row[f"{display} std"] = vals.std(ddof=1) if len(vals.dropna()) > 1 else np.nan
            if baseline is not None and m != baseline:
                base = runs[runs["model"] == baseline].set_index("seed")[display]
                res = compare_to_baseline(vals, base)
                row[f"{display} p"] = res.pvalue
                tests.add(res.test)
            else:
                row[f"{display} p"] = np.nan
        row["test"] = "baseline" if m == baseline else "/".join(sorted(tests))
        rows.append(row)
    return Summary(pd.DataFrame(rows), baseline, runs)


def collect(experiment_name: str, *, models: list[str] | None = None, seeds: list[int] | None = None,
            config_hashes: dict[str, str] | None = None) -> pd.DataFrame:
    """Finished runs of an experiment (optionally only these models / seeds / config hashes)."""
    from qrecorder import R

    exp = R.get_exp(experiment_name=experiment_name, create=False)
    runs = runs_frame(R.search_records([exp.id]), experiment_name)
    if models is not None:
        runs = runs[runs["model"].isin(models)]
    if seeds is not None:
        runs = runs[runs["seed"].isin(seeds)]
    if config_hashes:
        runs = runs[[config_hashes.get(m) in (None, h) for m, h in zip(runs["model"], runs["config_hash"], strict=True)]]
    # one run per (model, seed): the newest wins if a cell was run again
    return runs.drop_duplicates(subset=["model", "seed"], keep="first").reset_index(drop=True)
