"""Write a Summary as table.md (Qlib's columns), table.csv, table.tex, chart.png and report.html."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import pandas as pd

from qrecorder.runner.results import TABLE_METRICS, Summary


def _pm(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.4f}±{std:.4f}" if not math.isnan(std) else f"{mean:.4f}"


def _p(p: float) -> str:
    if p is None or math.isnan(p):
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def markdown(s: Summary) -> str:
    """Qlib's run_all_model table, then the test of each metric against the baseline."""
    cols = ["Model Name", "Dataset"] + [d for d, _ in TABLE_METRICS]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in s.table.iterrows():
        cells = [r["model"], r["dataset"]] + [_pm(r[f"{d} mean"], r[f"{d} std"]) for d, _ in TABLE_METRICS]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    out = "\n".join(lines) + "\n"
    if s.baseline is not None and len(s.table) > 1:
        cols = ["Model Name", "n", "test"] + [d for d, _ in TABLE_METRICS]
        out += f"\np-values against the baseline **{s.baseline}** (two-sided; paired t-test when the seeds match, " \
               "Welch's t-test otherwise):\n\n"
        out += "| " + " | ".join(cols) + " |\n" + "|" + "---|" * len(cols) + "\n"
        for _, r in s.table.iterrows():
            cells = [r["model"], str(int(r["n"])), r["test"]] + [_p(r[f"{d} p"]) for d, _ in TABLE_METRICS]
            out += "| " + " | ".join(cells) + " |\n"
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
            p = r[f"{d} p"]
            if not pd.isna(p) and p < 0.05:
                v += "$^{*}$"
            vals.append(v)
        rows.append(" & ".join([esc(r["model"]), esc(r["dataset"])] + vals) + r" \\")
    rows += [r"\bottomrule", r"\end{tabular}"]
    note = f"% $^{{*}}$: p < 0.05 against {esc(s.baseline)}\n" if s.baseline else ""
    return note + "\n".join(rows) + "\n"


def chart(s: Summary, path: Path) -> None:
    """Bars of the mean per model with std error bars, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(TABLE_METRICS)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.4))
    models = list(s.table["model"])
    for ax, (d, _) in zip(axes, TABLE_METRICS, strict=True):
        means = s.table[f"{d} mean"].astype(float).fillna(0.0)
        stds = s.table[f"{d} std"].astype(float).fillna(0.0)
        ax.bar(range(len(models)), means, yerr=stds, capsize=4, color=[f"C{i}" for i in range(len(models))])
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=45, ha="right", fontsize=8)
        ax.set_title(d, fontsize=9)
        ax.axhline(0, color="black", linewidth=0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def html_report(s: Summary, png: Path | None, title: str = "qrec run-all") -> str:
    """A self-contained page: tables, the chart inlined as base64, every run, failures."""
    def table(df: pd.DataFrame) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                       for row in df.itertuples(index=False))
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    main = pd.DataFrame([[r["model"], r["dataset"], int(r["n"])] + [_pm(r[f"{d} mean"], r[f"{d} std"])
                         for d, _ in TABLE_METRICS] for _, r in s.table.iterrows()],
                        columns=["Model Name", "Dataset", "n"] + [d for d, _ in TABLE_METRICS])
    pvals = pd.DataFrame([[r["model"], r["test"]] + [_p(r[f"{d} p"]) for d, _ in TABLE_METRICS]
                          for _, r in s.table.iterrows()], columns=["Model Name", "test"] + [d for d, _ in TABLE_METRICS])
    img = ""
    if png is not None and png.exists():
        img = f'<img alt="chart" src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">'
    runs = s.runs.copy()
    for d, _ in TABLE_METRICS:
        if d in runs:
            runs[d] = runs[d].map(lambda v: "-" if pd.isna(v) else f"{v:.4f}")
    fails = "".join(f"<li><b>{html.escape(str(f['model']))}</b> seed={f.get('seed')}: "
                    f"<pre>{html.escape(str(f.get('error') or f.get('summary', '')))}</pre></li>" for f in s.failures)
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}"
             "pre{white-space:pre-wrap;font-size:80%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<h2>Mean ± std over seeds</h2>{table(main)}"
            f"<h2>p-values against {html.escape(str(s.baseline))}</h2>"
            "<p>Two-sided t-tests: paired when both models ran the same seeds, Welch otherwise.</p>"
            f"{table(pvals)}{img}<h2>Runs</h2>{table(runs)}"
            + (f"<h2>Failures</h2><ul>{fails}</ul>" if fails else "") + "</body></html>")


def write_all(s: Summary, out_dir: str | Path, title: str = "qrec run-all") -> dict[str, Path]:
    """Write every format into ``out_dir``; return name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("table.md", "table.csv", "table.tex", "chart.png", "report.html", "runs.csv")}
    paths["table.md"].write_text(markdown(s))
    csv_frame(s).to_csv(paths["table.csv"], index=False)
    s.runs.to_csv(paths["runs.csv"], index=False)
    paths["table.tex"].write_text(latex(s))
    try:
        if not len(s.table):
            raise ImportError
        chart(s, paths["chart.png"])
    except ImportError:  # no rows, or matplotlib missing (pip install 'qrecorder[report]')
        paths.pop("chart.png")
    paths["report.html"].write_text(html_report(s, paths.get("chart.png"), title))
    return paths
