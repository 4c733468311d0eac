"""``qrec show`` and ``qrec diff``: one run in full, or two runs side by side.

``show`` reads a run whatever its lifecycle (a deleted run too) through ``admin.run_details``;
``diff`` reads active runs through the model (``MLflowExpManager.recorder_by_id`` and the
recorder's ``list_params``/``list_metrics``/``list_tags``), so long params and tags come back whole.
"""

from __future__ import annotations

import math
from typing import Any

import click

from .. import admin
from .common import (
    CliError,
    console,
    echo_json,
    esc,
    fmt_duration,
    fmt_ms,
    fmt_value,
    handles_errors,
    is_store_failure,
    json_option,
    manager,
    status_style,
    uri_option,
)


# ---------------------------------------------------------------------------------- show
@click.command("show")
@click.argument("run_id")
@uri_option
@json_option
@handles_errors
def show_cmd(run_id: str, uri: str | None, as_json: bool) -> None:
    """Show one run: info, params, latest metrics, tags and artifacts.

    \b
    Examples:
      qrec show 3f2c9a...          (a run id from `qrec runs`)
      qrec show 3f2c9a... --json
    """
    info = admin.run_details(manager(uri), run_id)
    if as_json:
        echo_json(info)
        return
    from rich.table import Table

    out = console()
    st = info["status"]
    style = status_style(st)
    out.print(f"[bold]Run {info['run_id']}[/] ({esc(info['name'] or '-')})")
    out.print(f"  experiment  {esc(info['experiment_name'])} (id {info['experiment_id']})")
    out.print(f"  status      [{style}]{st}[/]" if style else f"  status      {st}")
    if info["lifecycle_stage"] == "deleted":
        out.print("  [red]deleted[/] (restorable until `qrec gc --purge`)")
    out.print(f"  started     {fmt_ms(info['start_time'])}   ended {fmt_ms(info['end_time'])}   "
              f"duration {fmt_duration(info['start_time'], info['end_time'])}")
    out.print(f"  artifacts   {esc(info['artifact_uri'] or '-')}", soft_wrap=True)
    for title, data in (("Params", info["params"]), ("Metrics (latest)", info["metrics"]), ("Tags", info["tags"])):
        table = Table(title=f"{title} ({len(data)})", title_justify="left")
        table.add_column("Key", no_wrap=True)
        table.add_column("Value", overflow="fold", justify="right" if title.startswith("Metrics") else "left")
        for key, value in data.items():
            text = fmt_value(value)
            table.add_row(esc(key), esc(text if len(text) <= 300 else text[:300] + " ..."))
        out.print(table)
    artifacts = info["artifacts"]
    table = Table(title=f"Artifacts ({len(artifacts)})", title_justify="left")
    table.add_column("Path", overflow="fold")
    table.add_column("Size", justify="right")
    for a in artifacts:
        table.add_row(esc(a["path"]), "-" if a["size"] is None else f"{a['size']:,}")
    out.print(table)


# ---------------------------------------------------------------------------------- diff
def recorder(mgr: Any, run_id: str) -> Any:
    """The (active) recorder ``run_id``; CliError when there is none, store failures as they are."""
    from ..errors import RecorderNotFoundError

    try:
        return mgr.recorder_by_id(run_id)
    except RecorderNotFoundError:
        raise
    except Exception as exc:
        if is_store_failure(exc):
            raise
        raise CliError(f"No run with id {run_id!r}.") from exc


def _run_info(mgr: Any, rec: Any) -> dict[str, Any]:
    try:
        exp_name = mgr.get_exp(experiment_id=str(rec.experiment_id), create=False).name
    except Exception:  # noqa: BLE001 - display only
        exp_name = None
    return {"run_id": rec.id, "name": rec.name, "experiment_id": str(rec.experiment_id),
            "experiment_name": exp_name, "status": rec.status, "start_time": rec.start_time,
            "end_time": rec.end_time}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _section(left: dict[str, Any], right: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key), right.get(key)
        if key not in left:
            state = "only_b"
        elif key not in right:
            state = "only_a"
        else:
            state = "same" if _same(a, b) else "differs"
        row: dict[str, Any] = {"key": key, "a": a, "b": b, "state": state}
        if state == "differs" and isinstance(a, (int, float)) and isinstance(b, (int, float)):
            row["delta"] = b - a
        rows.append(row)
    return rows


@click.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--all", "show_all", is_flag=True, help="Also list the keys whose values are the same.")
@click.option("--no-tags", is_flag=True, help="Leave out the tags (mostly bookkeeping).")
@uri_option
@json_option
@handles_errors
def diff_cmd(run_a: str, run_b: str, show_all: bool, no_tags: bool, uri: str | None, as_json: bool) -> None:
    """Compare two runs (of any experiments): params, latest metrics and tags side by side.

    Values that differ are highlighted (metrics with B - A); keys only one run has are marked.
    By default only the differences are listed; --all shows every key. --json gives every key
    with "state": same | differs | only_a | only_b.

    \b
    Examples:
      qrec diff 3f2c9a... 81be07...
      qrec diff 3f2c9a... 81be07... --all --no-tags
      qrec diff 3f2c9a... 81be07... --json | jq '.params[] | select(.state != "same")'
    """
    mgr = manager(uri)
    ra, rb = recorder(mgr, run_a), recorder(mgr, run_b)
    out: dict[str, Any] = {"a": _run_info(mgr, ra), "b": _run_info(mgr, rb)}
    out["params"] = _section(ra.list_params(), rb.list_params())
    out["metrics"] = _section(ra.list_metrics(), rb.list_metrics())
    if not no_tags:
        out["tags"] = _section(ra.list_tags(), rb.list_tags())
    if as_json:
        echo_json(out)
        return
    _print_diff(out, show_all)
    if not any(r["state"] != "same" for sec in ("params", "metrics", "tags") for r in out.get(sec, [])):
        click.echo("The two runs have the same params, metrics" + ("" if no_tags else " and tags") + ".")


def _print_diff(out: dict[str, Any], show_all: bool) -> None:
    from rich.table import Table

    con = console()
    for side in ("a", "b"):
        i = out[side]
        con.print(f"[bold]{side.upper()}[/] {i['run_id']} ({esc(i['name'] or '-')}) in "
                  f"{esc(repr(i['experiment_name']))} (id {i['experiment_id']}), {i['status']}, "
                  f"started {fmt_ms(i['start_time'])}", highlight=False)
    marks = {"differs": "[bold yellow]≠[/]", "only_a": "[red]A only[/]", "only_b": "[green]B only[/]", "same": ""}
    for section in ("params", "metrics", "tags"):
        rows = out.get(section)
        if rows is None:
            continue
        listed = [r for r in rows if show_all or r["state"] != "same"]
        n_diff = sum(r["state"] != "same" for r in rows)
        title = f"{section.capitalize()}: {n_diff} of {len(rows)} differ"
        if not listed:
            con.print(title, highlight=False)
            continue
        table = Table(title=title, title_justify="left")
        table.add_column("Key", overflow="fold")
        table.add_column("A", overflow="fold", justify="right" if section == "metrics" else "left")
        table.add_column("B", overflow="fold", justify="right" if section == "metrics" else "left")
        if section == "metrics":
            table.add_column("B - A", justify="right")
        table.add_column("")
        for r in listed:
            style = "bold yellow" if r["state"] == "differs" else None
            a = "-" if r["state"] == "only_b" else _short(fmt_value(r["a"]))
            b = "-" if r["state"] == "only_a" else _short(fmt_value(r["b"]))
            cells = [esc(r["key"]), esc(a), esc(b)]
            if section == "metrics":
                cells.append(f"{r['delta']:+.6g}" if "delta" in r else "")
            cells.append(marks[r["state"]])
            table.add_row(*cells, style=style)
        con.print(table)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def register(main: click.Group) -> None:
    """Add show and diff to ``qrec``."""
    main.add_command(show_cmd)
    main.add_command(diff_cmd)
