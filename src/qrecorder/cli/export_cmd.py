"""``qrec export``: the runs of experiments as one table (CSV, Parquet or Markdown), through
the model's ``search_records`` (R.search_records' columns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import STATUSES, CliError, fmt_value, handles_errors, manager, resolve_experiment, uri_option


@click.command("export")
@click.argument("experiments", nargs=-1, required=True)
@click.option("--format", "-f", "fmt", type=click.Choice(["csv", "parquet", "md"]), default="csv", show_default=True,
              help="Output format: csv, parquet (needs -o) or a Markdown table.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="File to write (default: stdout; required for parquet).")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), default=None, help="Only runs with this status.")
@click.option("--filter", "filter_string", default=None, metavar="EXPR", help="MLflow filter string.")
@click.option("--no-tags", is_flag=True, help="Leave out the tags.* columns.")
@uri_option
@handles_errors
def export_cmd(experiments: tuple[str, ...], fmt: str, output: str | None, status: str | None,
               filter_string: str | None, no_tags: bool, uri: str | None) -> None:
    """Export the runs of EXPERIMENTS as a table: one row per run, columns run_id, status,
    times, metrics.*, params.*, tags.* (as R.search_records gives them).

    \b
    Examples:
      qrec export my_exp > runs.csv
      qrec export my_exp other_exp -f parquet -o runs.parquet
      qrec export my_exp -f md --status FINISHED --no-tags
    """
    mgr = manager(uri)
    exps = [resolve_experiment(mgr, e) for e in experiments]
    flt = filter_string or ""
    if status:
        clause = f"attributes.status = '{status.upper()}'"
        flt = f"{flt} and {clause}" if flt else clause
    frame = mgr.search_records([e.id for e in exps], filter_string=flt)
    names = {e.id: e.name for e in exps}
    frame.insert(1, "experiment_name", frame["experiment_id"].map(names))
    if no_tags:
        frame = frame[[c for c in frame.columns if not c.startswith("tags.")]]
    for col in ("start_time", "end_time"):
        if col in frame:
            frame[col] = frame[col].map(lambda t: None if t is None or t != t else t.isoformat())
    if fmt == "parquet":
        if not output:
            raise CliError("Parquet is binary: give a file with --output/-o.")
        frame.to_parquet(output, index=False)
    elif fmt == "csv":
        text = frame.to_csv(index=False)
        _write_text(text, output)
    else:
        _write_text(_markdown(frame), output)
    if output:
        click.echo(f"Wrote {len(frame)} runs x {len(frame.columns)} columns to {output}.", err=True)


def _write_text(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=not text.endswith("\n"))


def _markdown(frame: Any) -> str:
    def cell(v: Any) -> str:
        text = fmt_value(v) if isinstance(v, float) else ("" if v is None else str(v))
        return text.replace("|", "\\|").replace("\n", " ")

    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def register(main: click.Group) -> None:
    """Add export to ``qrec``."""
    main.add_command(export_cmd)
