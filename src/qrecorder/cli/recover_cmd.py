"""`qrec recover`: write what dead processes accepted but never wrote (their journals)."""

from __future__ import annotations

import json

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
    from .. import admin
    from ..uri import configured_uri, resolve_uri

    data = admin.recover(resolve_uri(uri or configured_uri()), retry_failed=retry_failed)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"Replayed {data['values']} value(s) of {len(data['runs'])} run(s) from {data['files']} journal(s) "
                   f"in {data['journal_dir']}.")
        for run_id, message in data["errors"].items():
            click.echo(f"  run {run_id}: not written: {message}", err=True)
        for path in data["kept"]:
            click.echo(f"  kept {path}", err=True)
    if data["errors"]:
        raise SystemExit(1)
