"""``qrec runs``: the runs of an experiment as a table of their latest metrics.

On a SQLite store without a filter or sort, the rows are read without importing MLflow
(``admin.quick_runs``); otherwise through MLflow's search (``admin.search_runs``).
"""

from __future__ import annotations

from typing import Any

import click

from .. import admin
from .common import (
    STATUSES,
    CliError,
    console,
    echo_json,
    esc,
    fmt_duration,
    fmt_ms,
    fmt_value,
    handles_errors,
    json_option,
    location,
    manager,
    resolve_experiment,
    status_style,
    uri_option,
)

MAX_METRIC_COLUMNS = 8


@click.command("runs")
@click.argument("experiment")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), default=None, help="Only runs with this status.")
@click.option("--filter", "filter_string", default=None, metavar="EXPR",
              help="MLflow filter, e.g. \"metrics.ic > 0.05 and params.model = 'LGBModel'\".")
@click.option("--sort", "sort", multiple=True, metavar="KEY [ASC|DESC]",
              help="Order, e.g. 'metrics.ic DESC' (repeatable). Default: newest first.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, help="At most this many runs (0: all).")
@click.option("--metrics", "metric_names", default=None, metavar="NAMES",
              help="Metric columns to show, comma-separated: full names or unique suffixes, e.g. "
              "'IC,ICIR,annualized_return' (with --json: only these metrics).")
@uri_option
@json_option
@handles_errors
def runs_cmd(experiment: str, status: str | None, filter_string: str | None, sort: tuple[str, ...], limit: int,
             metric_names: str | None, uri: str | None, as_json: bool) -> None:
    """List the runs (recorders) of EXPERIMENT (a name or an id), newest first.

    The table shows id, name, status, start, duration and the latest value of up to 8
    metrics (IC, ICIR, Rank IC, Rank ICIR and the with-cost excess return first), each named by
    its shortest unique suffix (annualized_return for 1day.excess_return_with_cost.annualized_return);
    --metrics chooses them. --json gives every metric and the params.

    \b
    Examples:
      qrec runs run_all_model
      qrec runs run_all_model --metrics IC,ICIR,annualized_return
      qrec runs run_all_model --status FAILED
      qrec runs run_all_model --filter "metrics.IC > 0.05" --sort "metrics.ICIR DESC" --limit 10
      qrec runs run_all_model --json | jq '.runs[].run_id'
    """
    status = status.upper() if status else None
    loc = location(uri)
    max_results = None if limit == 0 else limit
    result: dict[str, Any] | None = None
    if not filter_string and not sort:
        result = admin.quick_runs(loc, experiment, status, max_results)
    if result is None:
        mgr = manager(loc.uri)
        exp = resolve_experiment(mgr, experiment)
        result = admin.search_runs(mgr, exp, status, filter_string, list(sort), max_results)
    chosen = _choose_metrics(result["runs"], metric_names) if metric_names else None
    if as_json:
        if chosen is not None:
            for r in result["runs"]:
                r["metrics"] = {k: r["metrics"][k] for k in chosen if k in r["metrics"]}
        echo_json(result)
        return
    _print_runs(result, chosen)


# The metrics the batch runner's table reports, shown first when a run has them.
PREFERRED_METRICS = ("IC", "ICIR", "Rank IC", "Rank ICIR", "1day.excess_return_with_cost.annualized_return",
                     "1day.excess_return_with_cost.information_ratio", "1day.excess_return_with_cost.max_drawdown")


def short_names(keys: list[str]) -> dict[str, str]:
    """Each key's shortest dot-separated suffix that no other key in ``keys`` ends with
    (``1day.excess_return_with_cost.annualized_return`` -> ``annualized_return``)."""
    out: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        for i in range(len(parts) - 1, -1, -1):
            cand = ".".join(parts[i:])
            if not any(o != key and (o == cand or o.endswith("." + cand)) for o in keys):
                out[key] = cand
                break
        else:
            out[key] = key
    return out


def _metric_order(rows: list[dict[str, Any]]) -> list[str]:
    """Every metric of ``rows``: those most runs have first, then PREFERRED_METRICS' order, then by name."""
    counts: dict[str, int] = {}
    for r in rows:
        for key in r["metrics"]:
            counts[key] = counts.get(key, 0) + 1
    preferred = {k: i for i, k in enumerate(PREFERRED_METRICS)}
    return sorted(counts, key=lambda k: (-counts[k], preferred.get(k, len(preferred)), k))


def _choose_metrics(rows: list[dict[str, Any]], names: str) -> list[str]:
    """--metrics: each name is a metric's full name, else (case-insensitive) a dot-suffix of one; a
    suffix several metrics share means the first in the table's order (the preferred metrics, e.g.
    ``annualized_return`` is the with-cost one), as the default columns are labelled."""
    keys = _metric_order(rows)
    chosen: list[str] = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        if name in keys:
            chosen.append(name)
            continue
        low = name.lower()
        hits = [k for k in keys if k.lower() == low] or [k for k in keys if k.lower().endswith("." + low)]
        if hits:
            chosen.append(hits[0])
        elif keys:
            raise CliError(f"--metrics: no metric {name!r} in these runs; they have: {', '.join(sorted(keys))}")
        else:  # these runs have no metrics at all (e.g. only a summary recorder): nothing to check against
            chosen.append(name)
    return list(dict.fromkeys(chosen))


def _print_runs(result: dict[str, Any], chosen: list[str] | None = None) -> None:
    from rich.table import Table

    rows = result["runs"]
    total = result["total"]
    head = f"Runs of {esc(repr(result['experiment_name']))} (id {result['experiment_id']})"
    if not rows:
        click.echo(f"{head}: no runs.")
        return
    keys = _metric_order(rows)
    shown = chosen if chosen is not None else keys[:MAX_METRIC_COLUMNS]
    labels = short_names(shown)
    table = Table(title=head, title_justify="left")
    table.add_column("Run ID", no_wrap=True)
    table.add_column("Name")
    table.add_column("Status")
    table.add_column("Start", no_wrap=True)
    table.add_column("Duration", justify="right")
    for key in shown:
        table.add_column(esc(labels[key]), justify="right")
    for r in rows:
        st = r["status"]
        style = status_style(st)
        table.add_row(r["run_id"], esc(r["name"] or "-"), f"[{style}]{st}[/]" if style else st, fmt_ms(r["start_time"]),
                      fmt_duration(r["start_time"], r["end_time"]), *(fmt_value(r["metrics"].get(k)) for k in shown))
    out = console()
    out.print(table)
    notes = []
    if total is not None and total > len(rows):
        notes.append(f"showing {len(rows)} of {total} runs (--limit 0 for all)")
    else:
        notes.append(f"{len(rows)} runs")
    if len(keys) > len(shown):
        notes.append(f"{len(keys) - len(shown)} more metrics: --metrics NAME,..., --json or `qrec show RUN`")
    out.print("; ".join(notes), highlight=False)
    renamed = [f"{labels[k]} = {k}" for k in shown if labels[k] != k]
    if renamed:
        out.print(esc("columns: " + "; ".join(renamed)), highlight=False)


def register(main: click.Group) -> None:
    """Add runs to ``qrec``."""
    main.add_command(runs_cmd)
