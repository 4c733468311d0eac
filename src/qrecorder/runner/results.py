"""Results: one row per finished run, then per model n, mean, std and a test against a baseline.

Columns follow Qlib's run_all_model table; the portfolio columns are the *with cost* excess
return numbers (``1day.excess_return_with_cost.*``), as there.

``Summary.table`` has one row per model (sorted by name) with ``model``, ``dataset``, ``n`` (runs)
and ``test`` (the tests used), then for each metric ``<metric> <field>``:

==========  ====================================================================================
``mean``    mean over the runs whose value is not NaN
``std``     sample std (ddof=1); NaN with fewer than two values
``n``       runs with a value (a NaN metric is not counted)
``diff``    mean difference to the baseline (paired: mean of the per-seed differences)
``ci_low``  95% t confidence interval of ``diff`` (paired t interval or Welch interval)
``ci_high``
``d``       standardised effect size (Cohen's d_z paired; Welch: diff / sqrt(mean variance))
``p``       raw two-sided p-value (NaN when no test was made)
``p_holm``  Holm-adjusted p-value over the models compared with the baseline on this metric
``test``    ``paired``, ``welch``, ``n/a``, ``n/a (identical)``, ``n/a (no variance)``, ``baseline``
==========  ====================================================================================
"""

from __future__ import annotations

import html as _html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from qrecorder import tags
from qrecorder.analysis.stats import compare_to_baseline, holm
from qrecorder.runner.messages import FailureRow

TABLE_METRICS: list[tuple[str, str]] = [
    ("IC", "IC"), ("ICIR", "ICIR"), ("Rank IC", "Rank IC"), ("Rank ICIR", "Rank ICIR"),
    ("Annualized Return", "1day.excess_return_with_cost.annualized_return"),
    ("Information Ratio", "1day.excess_return_with_cost.information_ratio"),
    ("Max Drawdown", "1day.excess_return_with_cost.max_drawdown"),
]
FIELDS = ("mean", "std", "n", "diff", "ci_low", "ci_high", "d", "p", "p_holm", "test")

# the saved series the report draws (records' artifact names); see load_series
SERIES_ARTIFACTS = {
    "ic": "sig_analysis/ic.pkl",
    "ric": "sig_analysis/ric.pkl",
    "report": "portfolio_analysis/report_normal_1day.pkl",
}


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df.columns else pd.Series([np.nan] * len(df), index=df.index, dtype=object)


RUN_COLUMNS = ["model", "dataset", "seed", "recorder_id", "config_hash", "experiment", "experiment_id"]


def runs_frame(records: pd.DataFrame, experiment_name: str | None = None) -> pd.DataFrame:
    """Normalise a ``search_records`` frame to model, dataset, seed, recorder_id and the table metrics.

    Only FINISHED runs that are not summaries count. The model name comes from the tag
    ``qrecorder.model``, else the param ``model``, else the experiment name.
    """
    if records is None or len(records) == 0:
        return pd.DataFrame(columns=RUN_COLUMNS + [d for d, _ in TABLE_METRICS])
    df = records[records["status"] == "FINISHED"]
    df = df[_col(df, f"tags.{tags.KIND}").fillna(tags.KIND_RUN) != tags.KIND_SUMMARY]
    model = _col(df, f"tags.{tags.MODEL}").fillna(_col(df, "params.model")).fillna(experiment_name or "unknown")
    seed = pd.to_numeric(_col(df, f"tags.{tags.SEED}").fillna(_col(df, "params.seed")), errors="coerce")
    out = pd.DataFrame({
        "model": model.astype(str), "dataset": _col(df, f"tags.{tags.DATASET}").fillna(""), "seed": seed,
        "recorder_id": df["run_id"], "config_hash": _col(df, f"tags.{tags.CONFIG_HASH}"), "experiment": experiment_name,
        "experiment_id": _col(df, "experiment_id").astype(object),
    }, index=df.index)
    for display, metric in TABLE_METRICS:
        out[display] = pd.to_numeric(_col(df, f"metrics.{metric}"), errors="coerce")
    return out.reset_index(drop=True)


def sort_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs by model (case-insensitive) then seed."""
    if not len(runs):
        return runs
    key = runs["model"].astype(str).str.lower()
    return (runs.assign(_k=key).sort_values(["_k", "seed"], kind="mergesort", na_position="last")
            .drop(columns="_k").reset_index(drop=True))


@dataclass
class Summary:
    """Per-model statistics (``table``, see the module docstring), the runs behind them, failures.

    ``series`` (filled by ``load_series``) maps (model, seed) to the run's saved daily series:
    ``ic``, ``ric`` and ``excess`` (with-cost excess return); ``series_missing`` lists the runs
    whose artifacts could not be read, with the reason. In a notebook the object shows as HTML
    tables; ``to_frame()`` gives the table indexed by model.
    """

    table: pd.DataFrame
    baseline: str | None
    runs: pd.DataFrame
    failures: list[FailureRow] = field(default_factory=list)
    series: dict[tuple[str, int], dict[str, pd.Series]] = field(default_factory=dict)
    series_missing: list[tuple[str, Any, str]] = field(default_factory=list)
    ui_url: str | None = None

    def to_frame(self) -> pd.DataFrame:
        """The table indexed by model, columns as a (metric, field) MultiIndex (``""`` for the
        model-level columns ``dataset``, ``n`` and ``test``)."""
        t = self.table.set_index("model") if len(self.table) else self.table.set_index(pd.Index([], name="model"))
        cols = []
        for c in t.columns:
            metric = next((d for d, _ in TABLE_METRICS if c.startswith(d + " ") and c[len(d) + 1:] in FIELDS), None)
            cols.append((metric, c[len(metric) + 1:]) if metric else ("", c))
        out = t.copy()
        out.columns = pd.MultiIndex.from_tuples(cols, names=["metric", "field"])
        return out

    def _repr_html_(self) -> str:
        from qrecorder.runner.report import summary_tables_html

        head = (f"<p><b>{len(self.table)}</b> model(s), <b>{len(self.runs)}</b> finished run(s)"
                + (f", baseline <b>{_html.escape(str(self.baseline))}</b>" if self.baseline else "")
                + (f", <b>{len(self.failures)}</b> failed cell(s)" if self.failures else "") + "</p>")
        return "<div class='qrec-summary'>" + head + summary_tables_html(self) + "</div>"


def summarize(runs: pd.DataFrame, baseline: str | None = None) -> Summary:
    """Aggregate runs per model and test each metric against ``baseline`` (default: the first model).

    For each metric the p-values of the models against the baseline are Holm-adjusted together.
    """
    runs = sort_runs(runs)
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
            vals = sub.set_index("seed")[display].astype(float)
            present = vals.dropna()
            row[f"{display} mean"] = present.mean() if len(present) else np.nan
            row[f"{display} std"] = present.std(ddof=1) if len(present) > 1 else np.nan
            row[f"{display} n"] = len(present)
            if baseline is not None and m != baseline:
                base = runs[runs["model"] == baseline].set_index("seed")[display].astype(float)
                res = compare_to_baseline(vals, base)
                row.update({f"{display} diff": res.diff, f"{display} ci_low": res.ci_low,
                            f"{display} ci_high": res.ci_high, f"{display} d": res.effect,
                            f"{display} p": res.pvalue, f"{display} test": res.label})
                tests.add(res.test)
            else:
                row.update({f"{display} {k}": np.nan for k in ("diff", "ci_low", "ci_high", "d", "p")})
                row[f"{display} test"] = "baseline" if m == baseline else "-"
        row["test"] = "baseline" if m == baseline else "/".join(sorted(tests))
        rows.append(row)
    table = pd.DataFrame(rows)
    for display, _ in TABLE_METRICS:
        if len(table):
            table[f"{display} p_holm"] = holm(table[f"{display} p"].to_numpy(dtype=float))
    if len(table):  # a stable column order: model-level columns, then metric by metric
        order = ["model", "dataset", "n", "test"] + [f"{d} {f}" for d, _ in TABLE_METRICS for f in FIELDS]
        table = table[order]
    return Summary(table, baseline, runs)


def _excess_with_cost(report: pd.DataFrame) -> pd.Series:
    from qrecorder.analysis.backtest import excess_returns

    return excess_returns(report)["excess_return_with_cost"]


def load_series(summary: Summary) -> Summary:
    """Read each run's saved daily series through its recorder into ``summary.series``.

    Objects are loaded with ``restricted=True`` (checksum verified, then unpickled with the
    allow-list of numpy/pandas types). A run without them (e.g. a run logged by hand, or a
    model without SigAnaRecord/PortAnaRecord) is listed in ``summary.series_missing``.
    """
    from qrecorder import R

    for r in summary.runs.itertuples(index=False):
        key = (str(r.model), r.seed)
        try:
            rec = R.get_recorder(recorder_id=r.recorder_id)  # an id is found in any experiment
        except Exception as exc:  # noqa: BLE001 - the report says which run and why
            summary.series_missing.append((key[0], key[1], f"{type(exc).__name__}: {exc}"))
            continue
        names: set[str] = set()
        for folder in {p.split("/")[0] for p in SERIES_ARTIFACTS.values()}:
            try:
                names.update(rec.list_artifacts(folder))
            except Exception:  # noqa: BLE001 - no such folder: its series are reported missing below
                continue
        got: dict[str, pd.Series] = {}
        missing = []
        for name, path in SERIES_ARTIFACTS.items():
            if path not in names:
                missing.append(path)
                continue
            try:
                obj = rec.load_object(path, restricted=True)
            except Exception as exc:  # noqa: BLE001 - a corrupt or refused object is reported, not fatal
                missing.append(f"{path} ({type(exc).__name__}: {exc})")
                continue
            try:
                if name == "report":
                    got["excess"] = _excess_with_cost(obj).astype(float)
                elif isinstance(obj, pd.Series):
                    got[name] = obj.astype(float)
                else:
                    raise TypeError(f"a {type(obj).__name__}, not a pandas Series")
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                missing.append(f"{path} (unusable: {type(exc).__name__}: {exc})")
        if got:
            summary.series[key] = got
        if missing:
            summary.series_missing.append((key[0], key[1], "missing " + ", ".join(missing)))
    return summary


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
