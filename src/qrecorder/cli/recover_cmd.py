"""`qrec recover`: write what dead processes accepted but never wrote (their journals)."""

from __future__ import annotations

import json
from typing import Any

import click


def register(main: click.Group) -> None:
    main.add_command(recover_cmd)


@click.command("recover")
@click.option("--uri", default=None, metavar="URI",
              help="Tracking store (default: QRECORDER_URI, MLFLOW_TRACKING_URI, else ./mlflow.db).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--retry-failed", is_flag=True,
              help="Also retry journals kept as *.failed by an earlier replay (e.g. after restoring a deleted run).")
def recover_cmd(uri: str | None, as_json: bool, retry_failed: bool) -> None:
    """Replay the journals of processes that died before their values reached the store.

    Every value a log call accepted is appended to a per-process journal first. A process
    killed with SIGKILL (or by the OOM killer) leaves its journal behind; the next process
    that opens the store replays it, and so does this command, exactly once in effect.
    Journals of live processes are left alone. Exit status 1 if some values could not be
    written (their journal is kept as *.failed).

    Example:

      qrec recover --uri sqlite:///runs/mlflow.db
    """
    from pathlib import Path

    from ..mlflow.journal import journal_dir_for
    from ..mlflow.store import get_store
    from ..uri import configured_uri, resolve_uri

    location = resolve_uri(uri or configured_uri())
    if retry_failed:
        folder = Path(journal_dir_for(location.uri, location.kind, location.path))
        for failed in sorted(folder.glob("*.failed")) if folder.is_dir() else []:
            failed.rename(failed.with_suffix(".jrnl"))
    store = get_store(location.uri)  # opening replays already
    report: Any = store.replay_journals()
    opened = getattr(store, "_open_report", None)
    if opened is not None:
        report.files += opened.files
        report.values += opened.values
        report.runs |= opened.runs
        report.errors.update(opened.errors)
        report.kept.extend(opened.kept)
    data = {"files": report.files, "values": report.values, "runs": sorted(report.runs),
            "errors": report.errors, "kept": report.kept, "journal_dir": str(store.writer.journal_dir)}
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"Replayed {report.values} value(s) of {len(report.runs)} run(s) from {report.files} journal(s) "
                   f"in {data['journal_dir']}.")
        for run_id, message in report.errors.items():
            click.echo(f"  run {run_id}: not written: {message}", err=True)
        for path in report.kept:
            click.echo(f"  kept {path}", err=True)
    if report.errors:
        raise SystemExit(1)
