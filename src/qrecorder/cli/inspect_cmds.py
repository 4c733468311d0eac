"""``qrec diff`` and ``qrec artifacts ls | get | cat``: look inside runs.

Runs are read through qrecorder's model (``MLflowExpManager.recorder_by_id`` and the recorder's
``list_params``/``list_metrics``/``list_tags``/``download_artifact``), so long params and tags
come back whole and the store is opened as ``R`` opens it. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from qrecorder.cli.store_cmds import (
    CliError,
    _console,
    _echo_json,
    _esc,
    _fmt_ms,
    _fmt_value,
    _manager,
    handles_errors,
    json_option,
    uri_option,
)


def _recorder(manager: Any, run_id: str) -> Any:
    from qrecorder.errors import RecorderNotFoundError

    try:
        return manager.recorder_by_id(run_id)
    except RecorderNotFoundError:
        raise
    except Exception as exc:
        from qrecorder.cli.store_cmds import EXIT_STORE, _classify

        err = _classify(exc)
        if err is not None and err.exit_code == EXIT_STORE:
            raise
        raise CliError(f"No run with id {run_id!r}.") from exc


def _run_info(manager: Any, rec: Any) -> dict[str, Any]:
    try:
        exp_name = manager.get_exp(experiment_id=str(rec.experiment_id), create=False).name
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


# ---------------------------------------------------------------------------------- diff
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
    manager = _manager(uri)
    ra, rb = _recorder(manager, run_a), _recorder(manager, run_b)
    out: dict[str, Any] = {"a": _run_info(manager, ra), "b": _run_info(manager, rb)}
    out["params"] = _section(ra.list_params(), rb.list_params())
    out["metrics"] = _section(ra.list_metrics(), rb.list_metrics())
    if not no_tags:
        out["tags"] = _section(ra.list_tags(), rb.list_tags())
    if as_json:
        _echo_json(out)
        return
    _print_diff(out, show_all)
    if not any(r["state"] != "same" for sec in ("params", "metrics", "tags") for r in out.get(sec, [])):
        click.echo("The two runs have the same params, metrics" + ("" if no_tags else " and tags") + ".")


def _print_diff(out: dict[str, Any], show_all: bool) -> None:
    from rich.table import Table

    console = _console()
    for side in ("a", "b"):
        i = out[side]
        console.print(f"[bold]{side.upper()}[/] {i['run_id']} ({_esc(i['name'] or '-')}) in "
                      f"{_esc(repr(i['experiment_name']))} (id {i['experiment_id']}), {i['status']}, "
                      f"started {_fmt_ms(i['start_time'])}", highlight=False)
    marks = {"differs": "[bold yellow]≠[/]", "only_a": "[red]A only[/]", "only_b": "[green]B only[/]", "same": ""}
    for section in ("params", "metrics", "tags"):
        rows = out.get(section)
        if rows is None:
            continue
        listed = [r for r in rows if show_all or r["state"] != "same"]
        n_diff = sum(r["state"] != "same" for r in rows)
        title = f"{section.capitalize()}: {n_diff} of {len(rows)} differ"
        if not listed:
            console.print(title, highlight=False)
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
            a = "-" if r["state"] == "only_b" else _short(_fmt_value(r["a"]))
            b = "-" if r["state"] == "only_a" else _short(_fmt_value(r["b"]))
            cells = [_esc(r["key"]), _esc(a), _esc(b)]
            if section == "metrics":
                cells.append(f"{r['delta']:+.6g}" if "delta" in r else "")
            cells.append(marks[r["state"]])
            table.add_row(*cells, style=style)
        console.print(table)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


# ---------------------------------------------------------------------------------- artifacts
@click.group("artifacts")
def artifacts_group() -> None:
    """List, download or print a run's artifacts (files it saved: objects, reports, logs).

    \b
    Examples:
      qrec artifacts ls 3f2c9a...
      qrec artifacts ls 3f2c9a... portfolio_analysis
      qrec artifacts get 3f2c9a... pred.pkl -o ./pred.pkl
      qrec artifacts cat 3f2c9a... summary/table.md
    """


def _walk(rec: Any, path: str | None, limit: int = 10000) -> list[dict[str, Any]]:
    """Files (folders walked) under ``path`` with their sizes."""
    from qrecorder.mlflow import calls

    out: list[dict[str, Any]] = []
    todo: list[str | None] = [path]
    while todo and len(out) < limit:
        current = todo.pop(0)
        for item in calls.call(rec.client.list_artifacts, rec.id, current):
            if item.is_dir:
                todo.append(item.path)
            else:
                out.append({"path": item.path, "size": item.file_size})
    return sorted(out, key=lambda a: a["path"])


@artifacts_group.command("ls")
@click.argument("run_id")
@click.argument("path", required=False)
@uri_option
@json_option
@handles_errors
def artifacts_ls(run_id: str, path: str | None, uri: str | None, as_json: bool) -> None:
    """List the artifact files of RUN_ID under PATH (default: all), folders walked, with sizes.

    \b
    Examples:
      qrec artifacts ls 3f2c9a...
      qrec artifacts ls 3f2c9a... summary --json
    """
    rec = _recorder(_manager(uri), run_id)
    files = _walk(rec, path.strip("/") if path else None)
    if path and not files:
        raise CliError(f"No artifact {path!r} in run {run_id}.")
    if as_json:
        _echo_json({"run_id": rec.id, "path": path, "files": files})
        return
    for f in files:
        size = "-" if f["size"] is None else f"{f['size']:,}"
        click.echo(f"{size:>14}  {f['path']}")
    click.echo(f"{len(files)} file(s)", err=True)


def _download(rec: Any, path: str, dest: str) -> Path:
    from qrecorder.errors import QRecorderError

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars on stderr

    try:
        return Path(rec.download_artifact(path.strip("/"), dest))
    except QRecorderError:
        raise
    except Exception as exc:
        from qrecorder.cli.store_cmds import EXIT_STORE, _classify

        err = _classify(exc)
        if err is not None and err.exit_code == EXIT_STORE:
            raise
        raise CliError(f"No artifact {path!r} in run {rec.id}.") from exc


@artifacts_group.command("get")
@click.argument("run_id")
@click.argument("path")
@click.option("--output", "-o", "dest", default=None, metavar="DEST",
              help="Where to put it: a file name, or an existing folder to put it in. Default: ./<basename of PATH>.")
@click.option("--force", "-f", is_flag=True, help="Overwrite DEST if it exists.")
@uri_option
@handles_errors
def artifacts_get(run_id: str, path: str, dest: str | None, force: bool, uri: str | None) -> None:
    """Download the artifact PATH (a file or a folder) of RUN_ID; prints where it went.

    \b
    Examples:
      qrec artifacts get 3f2c9a... pred.pkl
      qrec artifacts get 3f2c9a... summary -o ./report
    """
    rec = _recorder(_manager(uri), run_id)
    name = Path(path.strip("/")).name or "artifacts"
    target = Path(dest) if dest else Path(name)
    if target.is_dir() and dest is not None:
        target = target / name
    if target.exists() and not force:
        raise CliError(f"{target} exists: pass --force to overwrite it, or -o another place.")
    tmp = tempfile.mkdtemp(prefix="qrec-artifact-")
    try:
        got = _download(rec, path, tmp)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(got), str(target))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    click.echo(str(target))


@artifacts_group.command("cat")
@click.argument("run_id")
@click.argument("path")
@uri_option
@handles_errors
def artifacts_cat(run_id: str, path: str, uri: str | None) -> None:
    """Write the artifact file PATH of RUN_ID to stdout (bytes as they are).

    \b
    Examples:
      qrec artifacts cat 3f2c9a... summary/table.md
      qrec artifacts cat 3f2c9a... summary/table.csv | column -s, -t
    """
    rec = _recorder(_manager(uri), run_id)
    tmp = tempfile.mkdtemp(prefix="qrec-artifact-")
    try:
        got = _download(rec, path, tmp)
        if got.is_dir():
            raise CliError(f"{path!r} is a folder: `qrec artifacts ls {run_id} {path}` lists it.")
        out = sys.stdout.buffer
        with got.open("rb") as fh:
            shutil.copyfileobj(fh, out)
        out.flush()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def register(main: click.Group) -> None:
    """Add diff and artifacts to the ``qrec`` group."""
    main.add_command(diff_cmd)
    main.add_command(artifacts_group)
