"""Daily tools on a store: ``qrec experiments | runs | show | rm | gc | export | ui | server``.

Every command takes ``--uri`` (default: QRECORDER_URI, then MLFLOW_TRACKING_URI, then
./mlflow.db) and, where it prints data, ``--json`` for scripts. Exit codes: 0 ok, 1 not found
or user error (one line on stderr, no traceback), 2 usage error (click), 3 store unreachable
or access denied. MLflow and pandas are imported inside the commands only.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

EXIT_USER = 1
EXIT_STORE = 3
STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED")
MAX_METRIC_COLUMNS = 8
# A CLI should not sit for minutes on a dead server: unless set, retry for 10 s.
CLI_RETRY_SECONDS = "10"


# ---------------------------------------------------------------------------------- plumbing
class CliError(click.ClickException):
    """A one-line error with an exit code (1 user error, 3 store unreachable/denied)."""

    def __init__(self, message: str, code: int = EXIT_USER) -> None:
        super().__init__(message)
        # click declares exit_code a ClassVar, yet reads it from the instance: a per-error code is intended
        self.exit_code = code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


def _classify(exc: BaseException) -> CliError | None:
    """Turn qrecorder/MLflow/database errors into a CliError with the right exit code."""
    from ..errors import AccessDeniedError, QRecorderError, StoreError

    if isinstance(exc, (AccessDeniedError, StoreError)):
        return CliError(str(exc), EXIT_STORE)
    if isinstance(exc, QRecorderError):
        return CliError(str(exc), EXIT_USER)
    if type(exc).__module__.startswith("mlflow"):
        from ..mlflow import calls, retry

        denied = calls.access_denied(exc)
        if denied is not None:
            return CliError(str(denied), EXIT_STORE)
        if retry.is_transient(exc):
            return CliError(f"The tracking store is unreachable: {_first_line(exc)}", EXIT_STORE)
        return CliError(_first_line(exc), EXIT_USER)
    if type(exc).__module__.startswith(("sqlalchemy", "sqlite3", "psycopg2", "requests", "urllib3")):
        return CliError(f"The tracking store is unreachable: {_first_line(exc)}", EXIT_STORE)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return CliError(f"The tracking store is unreachable: {exc}", EXIT_STORE)
    return None


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return str(text).strip().splitlines()[0][:500] if str(text).strip() else type(exc).__name__


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = os.environ.get("QRECORDER_RETRY_SECONDS")
        os.environ.setdefault("QRECORDER_RETRY_SECONDS", CLI_RETRY_SECONDS)
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except (click.exceptions.Exit, click.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a one-line message and exit code
            err = _classify(exc)
            if err is None:
                raise
            raise err from exc
        finally:  # an in-process caller (tests, notebooks) keeps its own budget
            if previous is None:
                os.environ.pop("QRECORDER_RETRY_SECONDS", None)

    return wrapper


def uri_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--uri",
        default=None,
        metavar="URI",
        help="Tracking store: sqlite:///file.db, postgresql://..., http(s)://server. "
        "Default: QRECORDER_URI, MLFLOW_TRACKING_URI, else ./mlflow.db.",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")(fn)


def _location(uri: str | None, must_exist: bool = True) -> Any:
    from ..uri import configured_uri, resolve_uri

    location = resolve_uri(uri if uri else configured_uri())
    if must_exist and location.kind == "sqlite" and location.path is not None and not location.path.is_file():
        raise CliError(
            f"No qrecorder store at {location.path}. Run in the folder of your mlflow.db, or pass "
            "--uri (or set QRECORDER_URI)."
        )
    if must_exist and location.kind == "file" and location.path is not None and not location.path.is_dir():
        raise CliError(f"No mlruns folder at {location.path}.")
    return location


def _manager(uri: str | None) -> Any:
    from ..mlflow.manager import MLflowExpManager

    return MLflowExpManager(_location(uri).uri)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(_jsonable(data), indent=2, sort_keys=False, default=str))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _console() -> Any:
    from rich.console import Console

    out = sys.stdout
    tty = hasattr(out, "isatty") and out.isatty()
    return Console(file=out, width=None if tty else 240, highlight=False, soft_wrap=not tty)


def _fmt_ms(ms: Any) -> str:
    if ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(int(ms) / 1000.0).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OSError):
        return str(ms)


def _fmt_duration(start: Any, end: Any) -> str:
    if start is None or end is None:
        return "-"
    seconds = max(0.0, (int(end) - int(start)) / 1000.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _esc(text: Any) -> str:
    from rich.markup import escape

    return escape(str(text))


def _status_style(status: str) -> str:
    return {"FINISHED": "green", "FAILED": "red", "KILLED": "magenta", "RUNNING": "cyan"}.get(status, "")


def _resolve_experiment(manager: Any, ident: str) -> Any:
    """An experiment by name, or by id when no experiment has that name."""
    from ..errors import ExperimentNotFoundError

    try:
        return manager._get_exp(experiment_name=ident)
    except ExperimentNotFoundError:
        if ident.isdigit():
            return manager._get_exp(experiment_id=ident)
        raise


# ---------------------------------------------------------------------------------- experiments
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
    location = _location(uri)
    rows = None
    if location.kind == "sqlite":
        from . import _quick

        con = _quick.connect(location.path)
        if con is not None:
            with con:
                rows = _quick.experiments(con, include_deleted)
            con.close()
    if rows is None:
        rows = _experiments_via_api(location.uri, include_deleted)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo(f"No experiments in {location.uri}.")
        return
    from rich.table import Table

    table = Table(title=f"Experiments in {location.uri}", title_justify="left")
    columns: tuple[tuple[str, dict[str, Any]], ...] = (
        ("ID", {"justify": "right"}), ("Name", {}), ("Runs", {"justify": "right"}), ("Created", {}),
        ("Artifacts", {"overflow": "fold"}))
    for col, kw in columns:
        table.add_column(col, **kw)
    for r in rows:
        name = _esc(r["name"]) + (" [red]\\[deleted][/]" if r["lifecycle_stage"] == "deleted" else "")
        table.add_row(r["experiment_id"], name, "-" if r["runs"] is None else str(r["runs"]), _fmt_ms(r["creation_time"]),
                      _esc(r["artifact_location"] or "-"))
    _console().print(table)


def _experiments_via_api(uri: str, include_deleted: bool) -> list[dict[str, Any]]:
    from ..mlflow import calls
    from ..mlflow.store import get_store

    store = get_store(uri)
    out: list[dict[str, Any]] = []
    token = None
    while True:
        page = calls.call(store.client.search_experiments, view_type=3 if include_deleted else 1, max_results=50_000,
                          page_token=token)
        for e in page:
            out.append({"experiment_id": str(e.experiment_id), "name": e.name, "lifecycle_stage": e.lifecycle_stage,
                        "artifact_location": e.artifact_location, "creation_time": e.creation_time, "runs": None})
        token = page.token
        if not token:
            return out


# ---------------------------------------------------------------------------------- runs
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
    location = _location(uri)
    max_results = None if limit == 0 else limit
    result: dict[str, Any] | None = None
    if location.kind == "sqlite" and not filter_string and not sort:
        from . import _quick

        con = _quick.connect(location.path)
        if con is not None:
            try:
                found = _quick.find_experiment(con, experiment)
                if found is not None:
                    rows, total = _quick.runs(con, found[0], status, max_results)
                    result = {"experiment_id": found[0], "experiment_name": found[1], "total": total, "runs": rows}
            finally:
                con.close()
    if result is None:
        result = _runs_via_core(location.uri, experiment, status, filter_string, list(sort), max_results)
    chosen = _choose_metrics(result["runs"], metric_names) if metric_names else None
    if as_json:
        if chosen is not None:
            for r in result["runs"]:
                r["metrics"] = {k: r["metrics"][k] for k in chosen if k in r["metrics"]}
        _echo_json(result)
        return
    _print_runs(result, chosen)


def _runs_via_core(uri: str, experiment: str, status: str | None, filter_string: str | None, sort: list[str],
                   max_results: int | None) -> dict[str, Any]:
    from ..mlflow import query

    manager = _manager(uri)
    exp = _resolve_experiment(manager, experiment)
    flt = filter_string or ""
    if status:
        clause = f"attributes.status = '{status}'"
        flt = f"({flt}) and {clause}" if flt and " or " in flt.lower() else (f"{flt} and {clause}" if flt else clause)
    runs = query.search_runs(manager.store(), [exp.id], filter_string=flt, max_results=max_results, order_by=sort or None)
    rows = [
        {"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status, "start_time": r.info.start_time,
         "end_time": r.info.end_time, "experiment_id": str(r.info.experiment_id), "metrics": dict(r.data.metrics),
         "params": dict(r.data.params)}
        for r in runs
    ]
    return {"experiment_id": exp.id, "experiment_name": exp.name, "total": None, "runs": rows}


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
    head = f"Runs of {_esc(repr(result['experiment_name']))} (id {result['experiment_id']})"
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
        table.add_column(_esc(labels[key]), justify="right")
    for r in rows:
        st = r["status"]
        style = _status_style(st)
        table.add_row(r["run_id"], _esc(r["name"] or "-"), f"[{style}]{st}[/]" if style else st, _fmt_ms(r["start_time"]),
                      _fmt_duration(r["start_time"], r["end_time"]), *(_fmt_value(r["metrics"].get(k)) for k in shown))
    console = _console()
    console.print(table)
    notes = []
    if total is not None and total > len(rows):
        notes.append(f"showing {len(rows)} of {total} runs (--limit 0 for all)")
    else:
        notes.append(f"{len(rows)} runs")
    if len(keys) > len(shown):
        notes.append(f"{len(keys) - len(shown)} more metrics: --metrics NAME,..., --json or `qrec show RUN`")
    console.print("; ".join(notes), highlight=False)
    renamed = [f"{labels[k]} = {k}" for k in shown if labels[k] != k]
    if renamed:
        console.print(_esc("columns: " + "; ".join(renamed)), highlight=False)


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
    from ..errors import RecorderNotFoundError
    from ..mlflow import calls

    manager = _manager(uri)
    store = manager.store()
    try:
        run = calls.call(store.client.get_run, run_id)
    except Exception as exc:
        if _classify(exc) is not None and _classify(exc).exit_code == EXIT_STORE:  # type: ignore[union-attr]
            raise
        raise RecorderNotFoundError(f"No run with id {run_id!r} in {store.uri}.") from exc
    exp = calls.call(store.client.get_experiment, run.info.experiment_id)
    artifacts = _list_artifacts(store, run_id)
    info = {
        "run_id": run.info.run_id,
        "name": run.info.run_name,
        "experiment_id": str(run.info.experiment_id),
        "experiment_name": exp.name,
        "status": run.info.status,
        "lifecycle_stage": run.info.lifecycle_stage,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "artifact_uri": run.info.artifact_uri,
        "params": dict(sorted(run.data.params.items())),
        "metrics": dict(sorted(run.data.metrics.items())),
        "tags": dict(sorted(run.data.tags.items())),
        "artifacts": artifacts,
    }
    if as_json:
        _echo_json(info)
        return
    from rich.table import Table

    console = _console()
    st = info["status"]
    style = _status_style(st)
    console.print(f"[bold]Run {info['run_id']}[/] ({_esc(info['name'] or '-')})")
    console.print(f"  experiment  {_esc(info['experiment_name'])} (id {info['experiment_id']})")
    console.print(f"  status      [{style}]{st}[/]" if style else f"  status      {st}")
    if info["lifecycle_stage"] == "deleted":
        console.print("  [red]deleted[/] (restorable until `qrec gc --purge`)")
    console.print(f"  started     {_fmt_ms(info['start_time'])}   ended {_fmt_ms(info['end_time'])}   "
                  f"duration {_fmt_duration(info['start_time'], info['end_time'])}")
    console.print(f"  artifacts   {_esc(info['artifact_uri'] or '-')}", soft_wrap=True)
    for title, data in (("Params", info["params"]), ("Metrics (latest)", info["metrics"]), ("Tags", info["tags"])):
        table = Table(title=f"{title} ({len(data)})", title_justify="left")
        table.add_column("Key", no_wrap=True)
        table.add_column("Value", overflow="fold", justify="right" if title.startswith("Metrics") else "left")
        for key, value in data.items():
            text = _fmt_value(value)
            table.add_row(_esc(key), _esc(text if len(text) <= 300 else text[:300] + " ..."))
        console.print(table)
    table = Table(title=f"Artifacts ({len(artifacts)})", title_justify="left")
    table.add_column("Path", overflow="fold")
    table.add_column("Size", justify="right")
    for a in artifacts:
        table.add_row(_esc(a["path"]), "-" if a["size"] is None else f"{a['size']:,}")
    console.print(table)


def _list_artifacts(store: Any, run_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Every artifact file of a run (folders walked), at most ``limit``."""
    from ..mlflow import calls

    out: list[dict[str, Any]] = []
    todo: list[str | None] = [None]
    while todo and len(out) < limit:
        path = todo.pop(0)
        for item in calls.call(store.client.list_artifacts, run_id, path):
            if item.is_dir:
                todo.append(item.path)
            else:
                out.append({"path": item.path, "size": item.file_size})
    return sorted(out, key=lambda a: a["path"])


# ---------------------------------------------------------------------------------- rm
@click.command("rm")
@click.argument("targets", nargs=-1, required=True)
@click.option("--experiment", "-e", "is_experiment", is_flag=True, help="TARGETS are experiments (names or ids), not runs.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Delete even runs that are still being written (fresh heartbeat).")
@click.option("--grace", type=float, default=60.0, show_default=True,
              help="A RUNNING run whose heartbeat is younger than max(--grace, 3 heartbeat intervals) is live.")
@uri_option
@json_option
@handles_errors
def rm_cmd(targets: tuple[str, ...], is_experiment: bool, yes: bool, force: bool, grace: float, uri: str | None,
           as_json: bool) -> None:
    """Delete runs (by id) or, with -e, whole experiments.

    MLflow only marks them deleted: they stay restorable until `qrec gc --purge`, and a
    deleted experiment's name stays reserved until then. Runs that are still being written
    (RUNNING with a fresh qrecorder heartbeat) are not deleted without --force.

    \b
    Examples:
      qrec rm 3f2c9a... 81be07... -y
      qrec rm -e old_experiment -y
    """
    from ..mlflow import calls

    manager = _manager(uri)
    kind = "experiment" if is_experiment else "run"
    if not force:
        _refuse_live(manager, targets, is_experiment, grace)
    if not yes:
        click.confirm(f"Delete {len(targets)} {kind}(s): {', '.join(targets)}?", abort=True, err=True)
    deleted = []
    if is_experiment:
        for ident in targets:
            exp = _resolve_experiment(manager, ident)
            calls.call(manager.store().client.delete_experiment, exp.id)
            deleted.append({"experiment_id": exp.id, "name": exp.name})
    else:
        recorders = [manager.recorder_by_id(rid) for rid in targets]  # all must exist before any is deleted
        for rec in recorders:
            calls.call(manager.store().client.delete_run, rec.id)
            deleted.append({"run_id": rec.id, "name": rec.name})
    if as_json:
        _echo_json({"deleted": deleted, "kind": kind})
        return
    for d in deleted:
        click.echo(f"Deleted {kind} {d.get('run_id') or d.get('experiment_id')} ({d['name']}).")
    click.echo("They stay restorable until `qrec gc --purge`.")


def _refuse_live(manager: Any, targets: tuple[str, ...], is_experiment: bool, grace: float) -> None:
    """CliError when a target is (or holds) a RUNNING run whose heartbeat is fresh."""
    import socket
    import time

    from ..mlflow import calls
    from ..mlflow.stale import judge, live_runs

    store = manager.store()
    live: list[tuple[str, Any]] = []
    if is_experiment:
        for ident in targets:
            exp = _resolve_experiment(manager, ident)
            live += [(f"experiment {exp.name!r}", run) for run in live_runs(store, [exp.id], grace)]
    else:
        now, host = time.time(), socket.gethostname()
        for rid in targets:
            rec = manager.recorder_by_id(rid)
            run = calls.call(store.client.get_run, rec.id)
            if run.info.status == "RUNNING" and judge(run.data.tags, now, grace, host).live:
                live.append(("", run))
    if not live:
        return
    now = time.time()
    lines = []
    for where, run in live[:10]:
        tags = run.data.tags
        try:
            age = f"{now - float(tags.get('qrecorder.heartbeat', 'nan')):.0f}s ago"
        except ValueError:
            age = "?"
        lines.append(f"{run.info.run_id} ({run.info.run_name or '-'}{', ' + where if where else ''}; host "
                     f"{tags.get('qrecorder.host', '?')}, pid {tags.get('qrecorder.pid', '?')}, last heartbeat {age})")
    more = f" and {len(live) - 10} more" if len(live) > 10 else ""
    raise CliError(
        f"Refusing to delete: {len(live)} RUNNING run(s) are still being written (fresh heartbeat): "
        + "; ".join(lines) + more
        + ". Stop them first (or wait until `qrec gc` marks them FAILED), or pass --force to delete anyway."
    )


# ---------------------------------------------------------------------------------- gc
@click.command("gc")
@click.argument("experiments", nargs=-1)
@click.option("--grace", type=float, default=60.0, show_default=True,
              help="Seconds without a heartbeat after which a RUNNING run counts as dead.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Give up (exit 3) when the store's write lock is not free within this many seconds.")
@click.option("--purge", is_flag=True, help="Also delete for good the runs and experiments marked deleted (and their artifacts).")
@click.option("--older-than", default=None, metavar="AGE", help="With --purge: only what was deleted longer ago, e.g. 30d, 12h.")
@click.option("--dry-run", is_flag=True, help="Only report what would be done.")
@uri_option
@json_option
@handles_errors
def gc_cmd(experiments: tuple[str, ...], grace: float, timeout: float, purge: bool, older_than: str | None,
           dry_run: bool, uri: str | None, as_json: bool) -> None:
    """Mark RUNNING runs whose process died FAILED; with --purge, purge deleted runs.

    A run is dead when its heartbeat is older than max(--grace, 3 heartbeat intervals),
    whatever its pid says (a stopped process, or one in another PID namespace, is judged by its
    heartbeat). The one shortcut: its process ran on this machine, in this boot and PID
    namespace, and is provably gone. Runs written by other tools (no qrecorder heartbeat) are
    left alone. A marked run stays FAILED; if its process comes back, it is listed as
    "returned". EXPERIMENTS (names or ids) limit the scan.

    \b
    Examples:
      qrec gc --dry-run
      qrec gc --timeout 5
      qrec gc --purge --older-than 30d
    """
    from ..mlflow import query
    from ..mlflow.stale import scan

    previous = os.environ.get("QRECORDER_RETRY_SECONDS")
    # Every lock wait and retry of this command (opening the store included) ends within --timeout.
    budget = float(os.environ.get("QRECORDER_RETRY_SECONDS") or CLI_RETRY_SECONDS)
    os.environ["QRECORDER_RETRY_SECONDS"] = f"{min(budget, timeout):g}"
    try:
        manager = _manager(uri)
        store = manager.store()
        exp_ids = [_resolve_experiment(manager, e).id for e in experiments] or None
        report = scan(store, exp_ids, grace_seconds=grace, dry_run=dry_run, timeout=timeout)
        purged: list[str] = []
        if purge:
            if store.kind not in ("sqlite", "postgresql", "mysql", "mssql"):
                raise CliError(
                    f"--purge needs direct access to the database ({store.uri} is not one): run it on the server "
                    "host with --uri postgresql://... (and MLFLOW_TRACKING_URI=http://server for proxied artifacts)."
                )
            from ..mlflow import calls

            all_ids = [e.experiment_id for e in calls.call(store.client.search_experiments, view_type=3)]
            purged = [r.info.run_id for r in query.search_runs(store, all_ids, run_view_type=2)] if all_ids else []
            if not dry_run:
                _mlflow_gc(store.uri, older_than)
        if as_json:
            _echo_json({"marked_failed": report.stale, "reasons": {r: report.reasons[r] for r in report.stale},
                        "returned": report.returned, "skipped": report.skipped, "purged_runs": purged,
                        "dry_run": dry_run})
            return
        verb = "Would mark" if dry_run else "Marked"
        click.echo(f"{verb} {len(report.stale)} stale RUNNING run(s) FAILED" + (":" if report.stale else "."))
        for rid in report.stale:
            click.echo(f"  {rid}: {report.reasons.get(rid, '')}")
        if report.skipped:
            click.echo(f"Left {len(report.skipped)} run(s) alone that ended or sent a heartbeat meanwhile: "
                       + ", ".join(report.skipped))
        if report.returned:
            click.echo(f"{len(report.returned)} run(s) marked FAILED earlier are being written again (their process came "
                       "back); they stay FAILED: " + ", ".join(report.returned))
        if purge:
            verb = "Would purge" if dry_run else "Purged"
            click.echo(f"{verb} deleted runs/experiments" + (f" older than {older_than}" if older_than else "")
                       + f" ({len(purged)} deleted run(s) found).")
    finally:  # in-process callers (tests, notebooks) get their budget back
        if previous is None:
            os.environ.pop("QRECORDER_RETRY_SECONDS", None)
        else:
            os.environ["QRECORDER_RETRY_SECONDS"] = previous


def _mlflow_gc(uri: str, older_than: str | None) -> None:
    from mlflow.cli import gc as mlflow_gc

    from ..server import normalize_backend_uri

    # Artifacts are resolved through a tracking URI: a server's (proxied artifacts) when
    # MLFLOW_TRACKING_URI names one, else the database itself (local artifact folders).
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    tracking = tracking if tracking.startswith(("http://", "https://")) else normalize_backend_uri(uri)
    args = ["--backend-store-uri", normalize_backend_uri(uri), "--tracking-uri", tracking]
    if older_than:
        args += ["--older-than", older_than]
    import contextlib

    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the result (--json)
            mlflow_gc.main(args, standalone_mode=False)
    except click.ClickException as exc:
        raise CliError(f"mlflow gc refused: {exc.format_message()}") from exc


# ---------------------------------------------------------------------------------- export
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
    manager = _manager(uri)
    exps = [_resolve_experiment(manager, e) for e in experiments]
    flt = filter_string or ""
    if status:
        clause = f"attributes.status = '{status.upper()}'"
        flt = f"{flt} and {clause}" if flt else clause
    frame = manager.search_records([e.id for e in exps], filter_string=flt)
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
        text = _fmt_value(v) if isinstance(v, float) else ("" if v is None else str(v))
        return text.replace("|", "\\|").replace("\n", " ")

    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- ui
@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface the UI listens on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True, help="Port the UI listens on.")
@click.option("--dry-run", is_flag=True, help="Print the command instead of running it.")
@uri_option
@handles_errors
def ui_cmd(host: str, port: int, dry_run: bool, uri: str | None) -> None:
    """Open MLflow's web UI on the current store (Ctrl-C stops it).

    For a SQLite store the UI reads the same database and artifact folders qrecorder writes.
    A team server (http://...) has its UI built in: open its address in a browser.

    \b
    Examples:
      qrec ui                      (then open http://127.0.0.1:5000)
      qrec ui --uri sqlite:////data/exp/mlflow.db --port 5050
    """
    from ..server import mlflow_ui_command, mlflow_ui_env, shown_command

    location = _location(uri)
    if location.kind == "http":
        raise CliError(f"{location.uri} is a tracking server: its UI is at that address already.")
    if location.kind == "file":
        raise CliError("MLflow's UI does not read legacy file stores; migrate with `mlflow migrate-filestore`.")
    cmd = mlflow_ui_command(host, port)
    env = mlflow_ui_env(location.uri)
    if dry_run:
        click.echo(shown_command(cmd, env))
        return
    click.echo(f"MLflow UI on {location.uri}: http://{host}:{port}  (Ctrl-C to stop)", err=True)
    sys.exit(_run_foreground(cmd, env))


def _run_foreground(cmd: list[str], env: dict[str, str]) -> int:
    """Run a server in the foreground; Ctrl-C/SIGTERM stop its whole process group."""
    import signal
    import subprocess

    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def _stop(*_: Any) -> None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------- server
@click.command("server")
@click.option("--backend-store-uri", envvar="QRECORDER_SERVER_BACKEND_URI", required=True, metavar="URI",
              help="Where runs are kept: postgresql://user@host:5432/db (env QRECORDER_SERVER_BACKEND_URI).")
@click.option("--artifacts-destination", envvar="QRECORDER_SERVER_ARTIFACTS", default="./mlartifacts", show_default=True,
              metavar="URI", help="Where the server stores artifacts: a folder, s3://bucket/path, gs://...")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True, help="Port the server listens on.")
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True, help="Server worker processes.")
@click.option("--auth/--no-auth", default=False, show_default=True,
              help="Basic auth; the admin password comes from QRECORDER_ADMIN_PASSWORD (12+ characters).")
@click.option("--auth-dir", type=click.Path(file_okay=False), default="./qrec-auth", show_default=True,
              help="Folder for basic_auth.ini, the secret key and (by default) the users database.")
@click.option("--auth-db-uri", default=None, metavar="URI", help="Users database (default: sqlite in --auth-dir).")
@click.option("--default-permission", type=click.Choice(["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"]), default="READ",
              show_default=True, help="What a user may do on experiments of others.")
@click.option("--allowed-hosts", default=None, help="Host headers to accept (needed when clients use a DNS name).")
@click.option("--cors-allowed-origins", default=None,
              help="Origins allowed to call the server from a browser (MLflow's --cors-allowed-origins).")
@click.option("--dry-run", is_flag=True, help="Print the mlflow server command line and exit.")
@handles_errors
def server_cmd(backend_store_uri: str, artifacts_destination: str, host: str, port: int, workers: int, auth: bool,
               auth_dir: str, auth_db_uri: str | None, default_permission: str, allowed_hosts: str | None,
               cors_allowed_origins: str | None, dry_run: bool) -> None:
    """Run an MLflow tracking server for a team: PostgreSQL for runs, artifacts proxied.

    Clients on any machine then use `--uri http://HOST:PORT` (or QRECORDER_URI), with
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD when --auth is on. See docs/team.md.

    \b
    Examples:
      qrec server --backend-store-uri postgresql://mlflow@db:5432/mlflow \\
                  --artifacts-destination s3://bucket/mlflow --host 0.0.0.0 --workers 4
      QRECORDER_ADMIN_PASSWORD=... qrec server --backend-store-uri postgresql://... --auth
    """
    from ..server import (
        ServerConfig,
        ServerProcess,
        build_command,
        build_env,
        has_password,
        redact,
        shown_command,
    )

    cfg = ServerConfig(
        backend_store_uri=backend_store_uri,
        artifacts_destination=artifacts_destination,
        host=host,
        port=port,
        workers=workers,
        auth=auth,
        auth_dir=Path(auth_dir),
        auth_db_uri=auth_db_uri,
        default_permission=default_permission,
        allowed_hosts=allowed_hosts,
        cors_allowed_origins=cors_allowed_origins,
    )
    cmd = build_command(cfg)
    source = click.get_current_context().get_parameter_source("backend_store_uri")
    if has_password(backend_store_uri) and source is click.core.ParameterSource.COMMANDLINE:
        click.echo("Warning: the database password in --backend-store-uri is visible to every user of this machine "
                   "in this command line (ps). Pass the URI in QRECORDER_SERVER_BACKEND_URI, or leave the password "
                   "out and use PGPASSWORD or ~/.pgpass. (qrec server hands it to MLflow through the environment.)",
                   err=True)
    if dry_run:
        env = build_env(cfg, base={k: v for k, v in os.environ.items() if k != "MLFLOW_BACKEND_STORE_URI"})
        click.echo(shown_command(cmd, {"MLFLOW_BACKEND_STORE_URI": env["MLFLOW_BACKEND_STORE_URI"]}))
        return
    server = ServerProcess(cfg)
    click.echo(f"Starting MLflow server on {cfg.url} (runs in {redact(backend_store_uri)}, artifacts in "
               f"{artifacts_destination}, {workers} workers{', basic auth' if auth else ''})", err=True)
    import signal

    def _terminate(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    server.start(wait=False)
    try:
        server.wait_ready(timeout=300)
        click.echo(f"Ready: clients use --uri {cfg.url} (or QRECORDER_URI={cfg.url}). Ctrl-C stops the server.", err=True)
        assert server.proc is not None
        code = server.proc.wait()
    except KeyboardInterrupt:
        code = 130
    finally:
        server.stop()
    sys.exit(code)


def register(main: click.Group) -> None:
    """Add experiments, runs, show, rm, gc, export, ui and server to ``qrec``."""
    for cmd in (experiments_cmd, runs_cmd, show_cmd, rm_cmd, gc_cmd, export_cmd, ui_cmd, server_cmd):
        main.add_command(cmd)
