"""Write a Summary as table.md, table.csv, runs.csv, table.tex, the PNG charts and report.html.

Files (``write_all``):

- ``table.md``: Qlib's run_all_model table (mean ± std), the differences to the baseline with
  95% confidence intervals, and the raw / Holm-adjusted p-values;
- ``table.csv`` (every column of ``Summary.table``), ``runs.csv`` (every run, by model and seed),
  ``table.tex`` (booktabs; ``*`` marks a Holm-adjusted p < 0.05), ``monthly_ic.csv``;
- ``chart.png``: a bar per model and metric (mean, std error bar) with every seed's value as a
  point; ``excess_return.png``: cumulative with-cost excess return per model (mean over seeds,
  band = min..max over seeds); ``ic.png``: rolling IC and Rank IC per model (same band);
- ``report.html``: a self-contained page with all of the above (images inlined), a monthly IC
  table per model, every run (linked to its MLflow UI page when ``Summary.ui_url`` is known) and
  the failures. The page is at most 1200 CSS pixels wide and its images are 1000 pixels wide.

The series come from ``results.load_series`` (the runs' saved ``ic.pkl``, ``ric.pkl`` and
``report_normal_1day.pkl``); without them the page says so and the curve charts are left out.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qrecorder.runner.results import TABLE_METRICS, Summary, sort_runs

FIG_WIDTH_IN, DPI = 10.0, 100   # every PNG is 1000 pixels wide
ROLLING_DAYS = 20
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or bool(pd.isna(v))


def _pm(mean: float, std: float, n: int | None = None, runs: int | None = None) -> str:
    if _nan(mean):
        return "-"
    text = f"{mean:.4f}±{std:.4f}" if not _nan(std) else f"{mean:.4f}"
    if n is not None and runs is not None and not _nan(n) and int(n) < int(runs):
        text += f" (n={int(n)})"
    return text


def _p(p: float, test: Any = "") -> str:
    if isinstance(test, str) and test.startswith("n/a ("):
        return test
    if _nan(p):
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _signed(v: float) -> str:
    return f"{v:+.4f}"


def _diff(r: pd.Series, d: str) -> str:
    """``+0.0123 [-0.0010, +0.0250]``; ``0 (identical)``; ``+0.0100 (no variance)``; ``-``."""
    test = r.get(f"{d} test", "")
    diff = r.get(f"{d} diff", np.nan)
    if test == "baseline" or _nan(diff):
        return "-"
    if test == "n/a (identical)":
        return "0 (identical)"
    if isinstance(test, str) and test.startswith("n/a ("):
        return f"{_signed(diff)} ({test[5:-1]})"
    lo, hi = r.get(f"{d} ci_low", np.nan), r.get(f"{d} ci_high", np.nan)
    return _signed(diff) + ("" if _nan(lo) else f" [{_signed(lo)}, {_signed(hi)}]")


def _p_pair(r: pd.Series, d: str) -> str:
    test = r.get(f"{d} test", "")
    if test == "baseline":
        return "-"
    raw = _p(r.get(f"{d} p", np.nan), test)
    if raw.startswith("n/a") or raw == "-":
        return raw
    return f"{raw} / {_p(r.get(f'{d} p_holm', np.nan))}"


def _compared(s: Summary) -> int:
    return int((s.table["test"] != "baseline").sum()) if len(s.table) else 0


STATS_NOTE = (
    "Two-sided t-tests of each model against the baseline: paired (scipy ttest_rel) on the seeds both "
    "models have, Welch's test when they share fewer than two seeds. The difference is model − baseline with "
    "its 95% t confidence interval. p-values are raw / Holm-adjusted over the {k} model(s) compared on each "
    "metric. No test is made when the differences are zero (identical) or constant (no variance) up to "
    "floating-point rounding. A NaN metric is left out of that metric's n. With few seeds these tests have "
    "little power: treat them as a screen, not a verdict."
)


def markdown(s: Summary) -> str:
    """Qlib's run_all_model table, then the differences (95% CI) and p-values against the baseline."""
    cols = ["Model Name", "Dataset"] + [d for d, _ in TABLE_METRICS]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in s.table.iterrows():
        cells = [r["model"], r["dataset"]] + [_pm(r[f"{d} mean"], r[f"{d} std"], r.get(f"{d} n"), r["n"])
                                              for d, _ in TABLE_METRICS]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    out = "\n".join(lines) + "\n"
    if s.baseline is not None and len(s.table) > 1:
        heads = ["Model Name", "n", "test"] + [d for d, _ in TABLE_METRICS]
        sep = "|" + "---|" * len(heads) + "\n"
        out += f"\nDifference from the baseline **{s.baseline}** (model − baseline, mean [95% CI]):\n\n"
        out += "| " + " | ".join(heads) + " |\n" + sep
        for _, r in s.table.iterrows():
            out += "| " + " | ".join([r["model"], str(int(r["n"])), r["test"]]
                                     + [_diff(r, d) for d, _ in TABLE_METRICS]) + " |\n"
        out += (f"\np-values against the baseline **{s.baseline}**, raw / Holm-adjusted over the {_compared(s)} "
                "model(s) compared (two-sided; paired t-test on the seeds both models have, Welch's t-test when "
                "they share fewer than two):\n\n")
        out += "| " + " | ".join(heads) + " |\n" + sep
        for _, r in s.table.iterrows():
            out += "| " + " | ".join([r["model"], str(int(r["n"])), r["test"]]
                                     + [_p_pair(r, d) for d, _ in TABLE_METRICS]) + " |\n"
    if s.failures:
        out += "\nFailed cells:\n\n" + "".join(f"- {f['model']} seed={f.get('seed')}: {f.get('summary', '')}\n"
                                              for f in s.failures)
    return out


def csv_frame(s: Summary) -> pd.DataFrame:
    return s.table.copy()


def latex(s: Summary) -> str:
    """A booktabs tabular of mean $\\pm$ std, no pandas/jinja2 dependency."""
    def esc(t: str) -> str:
        return str(t).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")

    heads = ["Model", "Dataset"] + [d for d, _ in TABLE_METRICS]
    rows = [r"\begin{tabular}{ll" + "r" * len(TABLE_METRICS) + "}", r"\toprule", " & ".join(heads) + r" \\",
            r"\midrule"]
    for _, r in s.table.iterrows():
        vals = []
        for d, _ in TABLE_METRICS:
            m, sd = r[f"{d} mean"], r[f"{d} std"]
            v = "-" if pd.isna(m) else (f"{m:.4f}" if pd.isna(sd) else f"{m:.4f} $\\pm$ {sd:.4f}")
            p = r.get(f"{d} p_holm", np.nan)
            if not pd.isna(p) and p < 0.05:
                v += "$^{*}$"
            vals.append(v)
        rows.append(" & ".join([esc(r["model"]), esc(r["dataset"])] + vals) + r" \\")
    rows += [r"\bottomrule", r"\end{tabular}"]
    note = (f"% $^{{*}}$: Holm-adjusted p < 0.05 against {esc(s.baseline)} (two-sided t-test)\n"
            if s.baseline else "")
    return note + "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------- charts
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(s: Summary) -> dict[str, str]:
    return {m: f"C{i % 10}" for i, m in enumerate(s.table["model"])}


def chart(s: Summary, path: Path) -> None:
    """Bars of the mean per model (std error bars) with every seed's value as a point."""
    plt = _plt()
    models = list(s.table["model"])
    colors = _colors(s)
    fig, axes = plt.subplots(2, 4, figsize=(FIG_WIDTH_IN, 5.6))
    rng = np.random.default_rng(0)  # fixed jitter: the same picture every time
    for ax, (d, _) in zip(axes.flat, TABLE_METRICS, strict=False):
        means = s.table[f"{d} mean"].astype(float)
        stds = s.table[f"{d} std"].astype(float).fillna(0.0)
        x = np.arange(len(models))
        ax.bar(x, means.fillna(0.0), yerr=stds, capsize=3, color=[colors[m] for m in models], alpha=0.45,
               edgecolor=[colors[m] for m in models], error_kw={"elinewidth": 0.8})
        for i, m in enumerate(models):
            vals = s.runs.loc[s.runs["model"] == m, d].astype(float).dropna().to_numpy()
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(vals)), vals, s=12, color=colors[m],
                       edgecolor="black", linewidth=0.4, zorder=3)
        ax.set_xticks(x)
        ax.set_xticklabels(models, rotation=30, ha="right", fontsize=7)
        for label in ax.get_xticklabels():
            if label.get_text() == s.baseline:
                label.set_fontweight("bold")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(d, fontsize=9)
        ax.axhline(0, color="black", linewidth=0.5)
    last = axes.flat[-1]
    last.axis("off")
    last.text(0.0, 0.5, "bar: mean over seeds\nline: ± 1 std\npoint: one seed"
              + (f"\nbold: baseline ({s.baseline})" if s.baseline else ""), fontsize=8, va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _by_model(s: Summary, name: str) -> dict[str, pd.DataFrame]:
    """model -> frame (date x seed) of one saved series."""
    out: dict[str, dict[Any, pd.Series]] = {}
    for (model, seed), series in s.series.items():
        if name in series and len(series[name]):
            out.setdefault(model, {})[seed] = series[name]
    return {m: pd.DataFrame(cols).sort_index() for m, cols in out.items()}


def _band(ax: Any, frame: pd.DataFrame, color: str, label: str) -> None:
    mean = frame.mean(axis=1)
    ax.plot(frame.index, mean, color=color, linewidth=1.3, label=f"{label} (n={frame.shape[1]})")
    if frame.shape[1] > 1:
        ax.fill_between(frame.index, frame.min(axis=1), frame.max(axis=1), color=color, alpha=0.13, linewidth=0)


def _date_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    loc = mdates.AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def excess_chart(s: Summary, path: Path) -> bool:
    """Cumulative (summed) with-cost excess return per model: mean over seeds, min..max band."""
    frames = _by_model(s, "excess")
    if not frames:
        return False
    plt = _plt()
    colors = _colors(s)
    fig, ax = plt.subplots(figsize=(FIG_WIDTH_IN, 4.0))
    for model, frame in frames.items():
        _band(ax, frame.fillna(0.0).cumsum(), colors.get(model, "C0"), model)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title("Cumulative excess return with cost (sum of daily excess returns; band: min..max over seeds)",
                 fontsize=9)
    _date_axis(ax)
    ax.legend(fontsize=7, loc="upper left", ncol=min(4, len(frames)))
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def ic_chart(s: Summary, path: Path, window: int = ROLLING_DAYS) -> bool:
    """Rolling mean of the daily IC and Rank IC per model (mean over seeds, min..max band)."""
    ics, rics = _by_model(s, "ic"), _by_model(s, "ric")
    if not ics and not rics:
        return False
    plt = _plt()
    colors = _colors(s)
    fig, axes = plt.subplots(1, 2, figsize=(FIG_WIDTH_IN, 3.6), sharey=True)
    for ax, frames, name in ((axes[0], ics, "IC"), (axes[1], rics, "Rank IC")):
        for model, frame in frames.items():
            _band(ax, frame.rolling(window, min_periods=max(2, window // 2)).mean(), colors.get(model, "C0"), model)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_title(f"{name}, {window}-day rolling mean", fontsize=9)
        _date_axis(ax)
    axes[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def monthly_ic(s: Summary) -> pd.DataFrame:
    """Per model and month: mean over seeds of each seed's mean daily IC / Rank IC of the month."""
    rows = []
    for name, col in (("ic", "IC"), ("ric", "Rank IC")):
        for model, frame in _by_model(s, name).items():
            frame = frame.copy()
            frame.index = pd.DatetimeIndex(frame.index)
            per_seed = frame.groupby(frame.index.to_period("M")).mean()
            for month, vals in per_seed.iterrows():
                v = vals.dropna()
                rows.append({"model": model, "month": str(month), "metric": col,
                             "mean": float(v.mean()) if len(v) else np.nan, "seeds": len(v)})
    if not rows:
        return pd.DataFrame(columns=["model", "month", "IC", "Rank IC", "seeds"])
    df = pd.DataFrame(rows)
    wide = df.pivot_table(index=["model", "month"], columns="metric", values="mean", dropna=False).reset_index()
    seeds = df[df["metric"] == "IC"].set_index(["model", "month"])["seeds"]
    wide["seeds"] = [int(seeds.get((m, mo), 0)) for m, mo in zip(wide["model"], wide["month"], strict=True)]
    wide.columns.name = None
    return wide


# ------------------------------------------------------------------------------------------ html
def _cell(v: Any, cls: str = "") -> str:
    return f"<td class='{cls}'>{html.escape(str(v))}</td>" if cls else f"<td>{html.escape(str(v))}</td>"


def _table(heads: list[str], rows: list[list[str]], raw: bool = False) -> str:
    """``rows`` are cell texts (escaped here) unless ``raw`` (already ``<td>`` HTML)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    body = "".join("<tr>" + ("".join(r) if raw else "".join(_cell(c) for c in r)) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _diff_cell(r: pd.Series, d: str) -> str:
    """The difference on one line, its confidence interval (or why there is none) below, smaller."""
    text = _diff(r, d)
    head, sep, tail = text.partition(" ")
    if not sep:
        return _cell(text)
    return f"<td>{html.escape(head)}<br><span class='ci'>{html.escape(tail)}</span></td>"


def summary_tables_html(s: Summary) -> str:
    """The three tables (mean ± std; difference [95% CI]; raw / Holm p) as HTML, for the page and notebooks."""
    metrics = [d for d, _ in TABLE_METRICS]
    main = [[r["model"], r["dataset"], str(int(r["n"]))]
            + [_pm(r[f"{d} mean"], r[f"{d} std"], r.get(f"{d} n"), r["n"]) for d in metrics]
            for _, r in s.table.iterrows()]
    out = "<h3>Mean ± std over seeds</h3>" + _table(["Model Name", "Dataset", "n"] + metrics, main)
    if s.baseline is None or len(s.table) < 2:
        return out
    diff_rows, p_rows = [], []
    for _, r in s.table.iterrows():
        diff_rows.append([_cell(r["model"]), _cell(r["test"])] + [_diff_cell(r, d) for d in metrics])
        cells = [_cell(r["model"]), _cell(r["test"])]
        for d in metrics:
            ph = r.get(f"{d} p_holm", np.nan)
            cells.append(_cell(_p_pair(r, d), "sig" if not _nan(ph) and ph < 0.05 else ""))
        p_rows.append(cells)
    b = html.escape(str(s.baseline))
    out += (f"<h3>Difference from {b} (model − baseline, mean [95% CI])</h3>"
            + _table(["Model Name", "test"] + metrics, diff_rows, raw=True)
            + f"<h3>p-values against {b}: raw / Holm-adjusted</h3>"
            + _table(["Model Name", "test"] + metrics, p_rows, raw=True)
            + f"<p class='note'>{html.escape(STATS_NOTE.format(k=_compared(s)))} Bold green: Holm-adjusted p &lt; 0.05.</p>")
    return out


def _img(path: Path | None, caption: str) -> str:
    if path is None or not path.exists():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return (f"<figure><figcaption>{html.escape(caption)}</figcaption>"
            f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'></figure>")


def _monthly_html(s: Summary, monthly: pd.DataFrame) -> str:
    if not len(monthly) or "IC" not in monthly:
        return "<p>No saved IC series (the runs have no <code>sig_analysis/ic.pkl</code>).</p>"
    scale = float(np.nanmax(np.abs(monthly["IC"].to_numpy(dtype=float)))) or 1.0
    parts = []
    for model in [m for m in s.table["model"] if m in set(monthly["model"])]:
        sub = monthly[monthly["model"] == model]
        periods = pd.PeriodIndex(sub["month"], freq="M")
        ic = pd.Series(sub["IC"].to_numpy(dtype=float), index=periods)
        rows = []
        for year in sorted(set(periods.year)):
            cells = [f"<th>{year}</th>"]
            for month in range(1, 13):
                v = ic.get(pd.Period(year=year, month=month, freq="M"), np.nan)
                if _nan(v):
                    cells.append("<td></td>")
                    continue
                alpha = min(1.0, abs(v) / scale) * 0.75
                rgb = "46,139,87" if v >= 0 else "205,60,60"
                cells.append(f"<td style='background:rgba({rgb},{alpha:.2f})'>{v:.3f}</td>")
            year_v = ic[periods.year == year].mean()
            cells.append(f"<td class='yr'>{year_v:.3f}</td>")
            rows.append("".join(cells))
        head = "<th></th>" + "".join(f"<th>{m}</th>" for m in MONTHS) + "<th>mean</th>"
        parts.append(f"<div class='monthly'><h4>{html.escape(model)}</h4><div class='scroll'><table class='heat'>"
                     f"<thead><tr>{head}</tr></thead><tbody>"
                     + "".join(f"<tr>{r}</tr>" for r in rows) + "</tbody></table></div></div>")
    return ("<p class='note'>Mean daily IC of each month, averaged over seeds (Rank IC too in "
            "<code>monthly_ic.csv</code>).</p>" + "".join(parts))


def run_url(ui_url: str | None, experiment_id: Any, run_id: Any) -> str | None:
    """MLflow 3's UI page of a run: ``<ui>/#/experiments/<experiment_id>/runs/<run_id>``."""
    if not ui_url or _nan(experiment_id) or _nan(run_id) or not str(experiment_id):
        return None
    # workflowType: MLflow 3.17's UI otherwise opens on its GenAI views, not the run
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def _runs_html(s: Summary) -> str:
    runs = sort_runs(s.runs)
    metrics = [d for d, _ in TABLE_METRICS if d in runs]
    rows = []
    for r in runs.to_dict("records"):
        rec = r["recorder_id"]
        url = run_url(s.ui_url, r.get("experiment_id"), rec)
        short, full = html.escape(str(rec)[:8]), html.escape(str(rec))
        link = (f"<a href='{html.escape(url)}' title='{full}'>{short}</a>" if url
                else f"<code title='{full}'>{short}</code>")
        seed = "-" if _nan(r["seed"]) else str(int(r["seed"]))
        exp = r.get("experiment")
        rows.append([_cell(r["model"]), _cell(seed), _cell(r.get("dataset") or ""), f"<td class='l'>{link}</td>",
                     _cell(exp if isinstance(exp, str) else "")]
                    + [_cell("-" if _nan(r[d]) else f"{r[d]:.4f}") for d in metrics])
    note = ("" if s.ui_url else "<p class='note'>Give the MLflow UI address (<code>QRECORDER_UI_URL</code>, e.g. "
            "<code>http://127.0.0.1:5000</code>) to link each run to its page.</p>")
    return note + _table(["Model", "Seed", "Dataset", "Recorder", "Experiment"] + metrics, rows, raw=True)


STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:16px 24px;background:#fff}
h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.2em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:1em 0 .3em}h4{margin:.6em 0 .2em;font-size:.95em}
.meta,.note{color:#555;font-size:.85em;max-width:100%}
nav a{margin-right:1em;font-size:.9em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.4em 0;font-size:12.5px;font-variant-numeric:tabular-nums}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f0f0f0}td:first-child{text-align:left;font-weight:600}td.l{text-align:left}
td.sig{font-weight:700;color:#0a5}.ci{color:#666;font-size:11px}
table.heat td{min-width:3.4em}table.heat td.yr{background:#f5f5f5}
.monthly{display:inline-block;vertical-align:top;margin-right:18px}
figure{margin:.6em 0 1.2em}figcaption{font-size:.85em;color:#444}
img{max-width:100%;height:auto;display:block;margin:.4em 0}
pre{white-space:pre-wrap;font-size:80%;background:#f6f6f6;padding:6px;max-height:20em;overflow:auto}
"""


def html_report(s: Summary, images: dict[str, Path | None] | Path | None = None, title: str = "qrec run-all",
                monthly: pd.DataFrame | None = None) -> str:
    """A self-contained page: tables, the charts inlined as base64, monthly IC, every run, failures."""
    if images is None or isinstance(images, Path):  # the old signature passed the bar chart's path
        images = {"chart.png": images}
    monthly = monthly_ic(s) if monthly is None else monthly
    n_runs = len(s.runs)
    meta = (f"{len(s.table)} model(s), {n_runs} finished run(s)"
            + (f", baseline <b>{html.escape(str(s.baseline))}</b>" if s.baseline else "")
            + (f", <b>{len(s.failures)}</b> failed cell(s)" if s.failures else ""))
    sections = [("results", "Results", summary_tables_html(s)),
                ("seeds", "Every seed", _img(images.get("chart.png"), "Mean over seeds (bar), ± 1 std (line) "
                                                                        "and every seed's value (point)"))]
    curves = (_img(images.get("excess_return.png"), "Cumulative excess return with cost per model: mean over seeds, "
                                                    "band from the lowest to the highest seed")
              + _img(images.get("ic.png"), f"IC and Rank IC, {ROLLING_DAYS}-day rolling mean per model: mean over "
                                           "seeds, band from the lowest to the highest seed"))
    if curves:
        sections.append(("curves", "Over time", curves))
    else:
        sections.append(("curves", "Over time", "<p>No saved series: the runs have no <code>ic.pkl</code> / "
                                                "<code>report_normal_1day.pkl</code> (SigAnaRecord, PortAnaRecord).</p>"))
    sections.append(("monthly", "Monthly IC", _monthly_html(s, monthly)))
    missing = "".join(f"<li>{html.escape(str(m))} seed={html.escape(str(sd))}: {html.escape(why)}</li>"
                      for m, sd, why in s.series_missing)
    sections.append(("runs", "Runs", _runs_html(s)
                     + (f"<details><summary>Runs without saved series ({len(s.series_missing)})</summary>"
                        f"<ul class='note'>{missing}</ul></details>" if missing else "")))
    if s.failures:
        fails = "".join(f"<li><b>{html.escape(str(f['model']))}</b> seed={html.escape(str(f.get('seed')))}: "
                        f"<pre>{html.escape(str(f.get('error') or f.get('summary', '')))}</pre></li>" for f in s.failures)
        sections.append(("failures", "Failures", f"<ul>{fails}</ul>"))
    nav = "".join(f"<a href='#{sid}'>{html.escape(name)}</a>" for sid, name, _ in sections)
    body = "".join(f"<section id='{sid}'><h2>{html.escape(name)}</h2>{content}</section>"
                   for sid, name, content in sections)
    return (f"<!doctype html><html><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body><main>"
            f"<h1>{html.escape(title)}</h1><p class='meta'>{meta}</p><nav>{nav}</nav>{body}</main></body></html>")


def write_all(s: Summary, out_dir: str | Path, title: str = "qrec run-all") -> dict[str, Path]:
    """Write every format into ``out_dir``; return name -> path (charts only when they have data)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = ("table.md", "table.csv", "table.tex", "chart.png", "excess_return.png", "ic.png", "monthly_ic.csv",
             "report.html", "runs.csv")
    paths = {name: out / name for name in names}
    paths["table.md"].write_text(markdown(s))
    csv_frame(s).to_csv(paths["table.csv"], index=False)
    sort_runs(s.runs).to_csv(paths["runs.csv"], index=False)
    paths["table.tex"].write_text(latex(s))
    monthly = monthly_ic(s)
    if len(monthly):
        monthly.to_csv(paths["monthly_ic.csv"], index=False)
    else:
        paths.pop("monthly_ic.csv")
    try:
        import matplotlib  # noqa: F401 - pip install 'qrecorder[report]'
        have_mpl = True
    except ImportError:
        have_mpl = False
    if have_mpl and len(s.table):
        chart(s, paths["chart.png"])
        if not excess_chart(s, paths["excess_return.png"]):
            paths.pop("excess_return.png")
        if not ic_chart(s, paths["ic.png"]):
            paths.pop("ic.png")
    else:
        for name in ("chart.png", "excess_return.png", "ic.png"):
            paths.pop(name)
    for name in ("chart.png", "excess_return.png", "ic.png"):  # stale charts of an earlier report
        if name not in paths and (out / name).exists():
            (out / name).unlink()
    paths["report.html"].write_text(html_report(s, {k: paths.get(k) for k in ("chart.png", "excess_return.png",
                                                                               "ic.png")}, title, monthly))
    return paths
