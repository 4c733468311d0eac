"""``qrec experiments``: the experiments of a store with their run counts."""

from __future__ import annotations

from typing import Any

import click

from .. import admin
from .common import (
    console,
    echo_json,
    esc,
    fmt_ms,
    handles_errors,
    json_option,
    location,
    manager,
    uri_option,
)


@click.command("experiments")
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted experiments.")
@uri_option
@json_option
@handles_errors
def experiments_cmd(include_deleted: bool, uri: str | None, as_json: bool) -> None:
    """List the experiments of a store, newest first, with their run counts.

    \b
    Examples:
      qrec experiments
      qrec experiments --uri http://mlflow.example.com:5000 --json
    """
    loc = location(uri)
    rows = admin.quick_experiments(loc, include_deleted)
    if rows is None:
        rows = admin.list_experiments(manager(loc.uri), include_deleted)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"No experiments in {loc.uri}.")
        return
    from rich.table import Table

    table = Table(title=f"Experiments in {loc.uri}", title_justify="left")
    columns: tuple[tuple[str, dict[str, Any]], ...] = (
        ("ID", {"justify": "right"}), ("Name", {}), ("Runs", {"justify": "right"}), ("Created", {}),
        ("Artifacts", {"overflow": "fold"}))
    for col, kw in columns:
        table.add_column(col, **kw)
    for r in rows:
        name = esc(r["name"]) + (" [red]\\[deleted][/]" if r["lifecycle_stage"] == "deleted" else "")
        table.add_row(r["experiment_id"], name, "-" if r["runs"] is None else str(r["runs"]), fmt_ms(r["creation_time"]),
                      esc(r["artifact_location"] or "-"))
    console().print(table)


def register(main: click.Group) -> None:
    """Add experiments to ``qrec``."""
    main.add_command(experiments_cmd)
