"""Store housekeeping beside ``R``: what ``qrec`` needs that the Experiment/Recorder model does not offer.

Listing experiments with their deleted ones, runs in a chosen order, a run whatever its
lifecycle, artifact sizes, deleting runs, live and stale RUNNING runs, purging what was
deleted, replaying crash journals. This is the one module through which the command line
reaches MLflow's client and qrecorder's direct SQL readers (the CLI's other store calls go
through ``MLflowExpManager`` / ``MLflowExperiment`` / ``MLflowRecorder``). Functions take the
manager (the store is opened as ``R`` opens it) or a ``StoreLocation``, and return plain data.

MLflow is imported inside the functions: importing this module stays cheap (``qrec --help``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .errors import QRecorderError, RecorderNotFoundError

STORE_UNREACHABLE = "The tracking store is unreachable: "
ALL_VIEWS = 3  # MLflow's ViewType.ALL
DELETED_ONLY = 2  # MLflow's ViewType.DELETED_ONLY
ACTIVE_ONLY = 1
SQL_KINDS = ("sqlite", "postgresql", "mysql", "mssql")  # stores `mlflow gc` can purge directly


# ---------------------------------------------------------------------------------- errors
def describe_failure(exc: BaseException) -> tuple[bool, str] | None:
    """(is the store unreachable or denying access?, one-line message) for an error raised by
    MLflow or a database/HTTP driver; None for any other error."""
    module = type(exc).__module__
    if module.startswith("mlflow"):
        from .mlflow import calls, retry

        denied = calls.access_denied(exc)
        if denied is not None:
            return True, str(denied)
        if retry.is_transient(exc):
            return True, STORE_UNREACHABLE + first_line(exc)
        return False, first_line(exc)
    if module.startswith(("sqlalchemy", "sqlite3", "psycopg2", "requests", "urllib3")):
        return True, STORE_UNREACHABLE + first_line(exc)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True, f"{STORE_UNREACHABLE}{exc}"
    return None


def first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return str(text).strip().splitlines()[0][:500] if str(text).strip() else type(exc).__name__


def _store_failure(exc: BaseException) -> bool:
    from .errors import AccessDeniedError, StoreError

    if isinstance(exc, (AccessDeniedError, StoreError)):
        return True
    if isinstance(exc, QRecorderError):
        return False
    described = describe_failure(exc)
    return described is not None and described[0]


# ---------------------------------------------------------------------------------- experiments
def _sqlite_reader() -> Any:
    """The MLflow-free SQLite reader (the only import of it outside its package)."""
    from .mlflow.sql import quick

    return quick


def quick_experiments(location: Any, include_deleted: bool) -> list[dict[str, Any]] | None:
    """Experiments of a SQLite store read without MLflow (None when the schema is not verified)."""
    if location.kind != "sqlite":
        return None
    reader = _sqlite_reader()
    con = reader.connect(location.path)
    if con is None:
        return None
    with con:
        rows = reader.experiments(con, include_deleted)
    con.close()
    return rows


def list_experiments(manager: Any, include_deleted: bool) -> list[dict[str, Any]]:
    """Every (active, or also deleted) experiment with id, name, stage, artifact location, creation time."""
    from .mlflow import calls

    client = manager.store().client
    out: list[dict[str, Any]] = []
    token = None
    while True:
        page = calls.call(client.search_experiments, view_type=ALL_VIEWS if include_deleted else ACTIVE_ONLY,
                          max_results=50_000, page_token=token)
        for e in page:
            out.append({"experiment_id": str(e.experiment_id), "name": e.name, "lifecycle_stage": e.lifecycle_stage,
                        "artifact_location": e.artifact_location, "creation_time": e.creation_time, "runs": None})
        token = page.token
        if not token:
            return out


# ---------------------------------------------------------------------------------- runs
def quick_runs(location: Any, experiment: str, status: str | None, max_results: int | None) -> dict[str, Any] | None:
    """The newest runs of ``experiment`` (a name, else an id) on a SQLite store, read without MLflow;
    None when that path cannot answer (not SQLite, schema not verified, experiment not found)."""
    if location.kind != "sqlite":
        return None
    reader = _sqlite_reader()
    con = reader.connect(location.path)
    if con is None:
        return None
    try:
        found = reader.find_experiment(con, experiment)
        if found is None:
            return None
        rows, total = reader.runs(con, found[0], status, max_results)
        return {"experiment_id": found[0], "experiment_name": found[1], "total": total, "runs": rows}
    finally:
        con.close()


def search_runs(manager: Any, exp: Any, status: str | None, filter_string: str | None, order_by: list[str],
                max_results: int | None) -> dict[str, Any]:
    """Runs of experiment ``exp`` as rows (latest metrics, params), in MLflow's order or ``order_by``."""
    from .mlflow import query

    flt = filter_string or ""
    if status:
        clause = f"attributes.status = '{status}'"
        flt = f"({flt}) and {clause}" if flt and " or " in flt.lower() else (f"{flt} and {clause}" if flt else clause)
    runs = query.search_runs(manager.store(), [exp.id], filter_string=flt, max_results=max_results,
                             order_by=order_by or None)
    rows = [
        {"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status, "start_time": r.info.start_time,
         "end_time": r.info.end_time, "experiment_id": str(r.info.experiment_id), "metrics": dict(r.data.metrics),
         "params": dict(r.data.params)}
        for r in runs
    ]
    return {"experiment_id": exp.id, "experiment_name": exp.name, "total": None, "runs": rows}


def run_details(manager: Any, run_id: str) -> dict[str, Any]:
    """One run, deleted or not: info, params, latest metrics, tags and artifact files.

    Raises RecorderNotFoundError when the store answers that there is no such run; an
    unreachable or refusing store raises its own error."""
    from .mlflow import calls

    store = manager.store()
    try:
        run = calls.call(store.client.get_run, run_id)
    except Exception as exc:
        if _store_failure(exc):
            raise
        raise RecorderNotFoundError(f"No run with id {run_id!r} in {store.uri}.") from exc
    exp = calls.call(store.client.get_experiment, run.info.experiment_id)
    return {
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
        "artifacts": artifact_files(manager, run_id, limit=1000),
    }


def artifact_files(manager: Any, run_id: str, path: str | None = None, limit: int = 10000) -> list[dict[str, Any]]:
    """Artifact files (``path`` and ``size``) of a run under ``path``, folders walked, at most ``limit``."""
    from .mlflow import calls

    client = manager.store().client
    out: list[dict[str, Any]] = []
    todo: list[str | None] = [path]
    while todo and len(out) < limit:
        current = todo.pop(0)
        for item in calls.call(client.list_artifacts, run_id, current):
            if item.is_dir:
                todo.append(item.path)
            else:
                out.append({"path": item.path, "size": item.file_size})
    return sorted(out, key=lambda a: a["path"])


def delete_runs(manager: Any, run_ids: list[str]) -> list[dict[str, Any]]:
    """Mark runs deleted (restorable until purged); every one must exist before any is deleted."""
    from .mlflow import calls

    recorders = [manager.recorder_by_id(rid) for rid in run_ids]
    client = manager.store().client
    deleted = []
    for rec in recorders:
        calls.call(client.delete_run, rec.id)
        deleted.append({"run_id": rec.id, "name": rec.name})
    return deleted


# ---------------------------------------------------------------------------------- liveness and gc
def live_runs(manager: Any, experiment_ids: list[str] | None = None, run_ids: list[str] | None = None,
              grace: float = 60.0) -> list[dict[str, Any]]:
    """RUNNING runs with a fresh heartbeat (someone is writing them): those of ``experiment_ids``,
    or those among ``run_ids`` (each must exist). Rows: run_id, name, experiment_id, tags."""
    import socket
    import time

    from .mlflow import calls
    from .mlflow.stale import judge
    from .mlflow.stale import live_runs as live_of_experiments

    store = manager.store()
    runs: list[Any] = []
    if experiment_ids:
        runs += live_of_experiments(store, list(experiment_ids), grace)
    if run_ids:
        now, host = time.time(), socket.gethostname()
        for rid in run_ids:
            rec = manager.recorder_by_id(rid)
            run = calls.call(store.client.get_run, rec.id)
            if run.info.status == "RUNNING" and judge(run.data.tags, now, grace, host).live:
                runs.append(run)
    return [{"run_id": r.info.run_id, "name": r.info.run_name, "experiment_id": str(r.info.experiment_id),
             "tags": dict(r.data.tags)} for r in runs]


def mark_stale(manager: Any, experiment_ids: list[str] | None, grace: float, dry_run: bool, timeout: float) -> Any:
    """Mark RUNNING runs whose process died FAILED (see ``qrecorder.mlflow.stale.scan``); a GcReport."""
    from .mlflow.stale import scan

    return scan(manager.store(), experiment_ids, grace_seconds=grace, dry_run=dry_run, timeout=timeout)


def store_uri(manager: Any) -> str:
    """The store's URI as qrecorder opened it (absolute, credentials as given)."""
    return str(manager.store().uri)


def can_purge(manager: Any) -> bool:
    """True when the store is a database that ``mlflow gc`` can purge directly."""
    return manager.store().kind in SQL_KINDS


def deleted_run_ids(manager: Any) -> list[str]:
    """Ids of the runs marked deleted, in every experiment (deleted ones too)."""
    from .mlflow import calls, query

    store = manager.store()
    all_ids = [e.experiment_id for e in calls.call(store.client.search_experiments, view_type=ALL_VIEWS)]
    return [r.info.run_id for r in query.search_runs(store, all_ids, run_view_type=DELETED_ONLY)] if all_ids else []


def purge(manager: Any, older_than: str | None) -> None:
    """Delete for good what is marked deleted (runs, experiments, their artifacts) with ``mlflow gc``.

    Its output goes to stderr. Raises QRecorderError when ``mlflow gc`` refuses."""
    import contextlib

    import click
    from mlflow.cli import gc as mlflow_gc

    from .server import normalize_backend_uri

    uri = manager.store().uri
    # Artifacts are resolved through a tracking URI: a server's (proxied artifacts) when
    # MLFLOW_TRACKING_URI names one, else the database itself (local artifact folders).
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    tracking = tracking if tracking.startswith(("http://", "https://")) else normalize_backend_uri(uri)
    args = ["--backend-store-uri", normalize_backend_uri(uri), "--tracking-uri", tracking]
    if older_than:
        args += ["--older-than", older_than]
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the caller's result (--json)
            mlflow_gc.main(args, standalone_mode=False)
    except click.ClickException as exc:
        raise QRecorderError(f"mlflow gc refused: {exc.format_message()}") from exc


# ---------------------------------------------------------------------------------- journals
def recover(location: Any, retry_failed: bool = False) -> dict[str, Any]:
    """Replay the crash journals of dead processes; what was written (files, values, runs,
    errors per run, journals kept) and the journal folder. ``retry_failed`` first gives the
    journals an earlier replay kept as ``*.failed`` another chance."""
    from pathlib import Path

    from .mlflow.journal import journal_dir_for
    from .mlflow.store import get_store

    if retry_failed:
        folder = Path(journal_dir_for(location.uri, location.kind, location.path))
        for failed in sorted(folder.glob("*.failed")) if folder.is_dir() else []:
            failed.rename(failed.with_suffix(".jrnl"))
    store = get_store(location.uri)  # opening replays already
    report: Any = store.replay_journals()
    # What the replay at open wrote. Store has no public accessor for it yet: this is the one
    # place outside qrecorder.mlflow that reads it.
    opened = getattr(store, "_open_report", None)
    if opened is not None:
        report.files += opened.files
        report.values += opened.values
        report.runs |= opened.runs
        report.errors.update(opened.errors)
        report.kept.extend(opened.kept)
    return {"files": report.files, "values": report.values, "runs": sorted(report.runs),
            "errors": report.errors, "kept": report.kept, "journal_dir": str(store.writer.journal_dir)}
