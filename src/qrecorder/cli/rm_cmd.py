"""``qrec rm`` and ``qrec gc``: delete runs and experiments, mark dead runs FAILED, purge.

Store calls go through the model (``MLflowExpManager.delete_exp``) and ``qrecorder.admin``
(deleting runs, live and stale runs, purging).
"""

from __future__ import annotations

import os
from typing import Any

import click

from .. import admin
from .. import tags as tagnames
from .common import (
    CLI_RETRY_SECONDS,
    CliError,
    echo_json,
    handles_errors,
    json_option,
    manager,
    resolve_experiment,
    uri_option,
)


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
    mgr = manager(uri)
    kind = "experiment" if is_experiment else "run"
    if not force:
        _refuse_live(mgr, targets, is_experiment, grace)
    if not yes:
        click.confirm(f"Delete {len(targets)} {kind}(s): {', '.join(targets)}?", abort=True, err=True)
    deleted = []
    if is_experiment:
        for ident in targets:
            exp = resolve_experiment(mgr, ident)
            mgr.delete_exp(experiment_id=exp.id)
            deleted.append({"experiment_id": exp.id, "name": exp.name})
    else:
        deleted = admin.delete_runs(mgr, list(targets))
    if as_json:
        echo_json({"deleted": deleted, "kind": kind})
        return
    for d in deleted:
        click.echo(f"Deleted {kind} {d.get('run_id') or d.get('experiment_id')} ({d['name']}).")
    click.echo("They stay restorable until `qrec gc --purge`.")


def _refuse_live(mgr: Any, targets: tuple[str, ...], is_experiment: bool, grace: float) -> None:
    """CliError when a target is (or holds) a RUNNING run whose heartbeat is fresh."""
    import time

    live: list[tuple[str, dict[str, Any]]] = []
    if is_experiment:
        for ident in targets:
            exp = resolve_experiment(mgr, ident)
            live += [(f"experiment {exp.name!r}", run) for run in admin.live_runs(mgr, experiment_ids=[exp.id], grace=grace)]
    else:
        live += [("", run) for run in admin.live_runs(mgr, run_ids=list(targets), grace=grace)]
    if not live:
        return
    now = time.time()
    lines = []
    for where, run in live[:10]:
        tags = run["tags"]
        try:
            age = f"{now - float(tags.get(tagnames.HEARTBEAT, 'nan')):.0f}s ago"
        except ValueError:
            age = "?"
        lines.append(f"{run['run_id']} ({run['name'] or '-'}{', ' + where if where else ''}; host "
                     f"{tags.get(tagnames.HOST, '?')}, pid {tags.get(tagnames.PID, '?')}, last heartbeat {age})")
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
    previous = os.environ.get("QRECORDER_RETRY_SECONDS")
    # Every lock wait and retry of this command (opening the store included) ends within --timeout.
    budget = float(os.environ.get("QRECORDER_RETRY_SECONDS") or CLI_RETRY_SECONDS)
    os.environ["QRECORDER_RETRY_SECONDS"] = f"{min(budget, timeout):g}"
    try:
        mgr = manager(uri)
        exp_ids = [resolve_experiment(mgr, e).id for e in experiments] or None
        report = admin.mark_stale(mgr, exp_ids, grace=grace, dry_run=dry_run, timeout=timeout)
        purged: list[str] = []
        if purge:
            if not admin.can_purge(mgr):
                raise CliError(
                    f"--purge needs direct access to the database ({admin.store_uri(mgr)} is not one): run it on the server "
                    "host with --uri postgresql://... (and MLFLOW_TRACKING_URI=http://server for proxied artifacts)."
                )
            purged = admin.deleted_run_ids(mgr)
            if not dry_run:
                admin.purge(mgr, older_than)
        if as_json:
            echo_json({"marked_failed": report.stale, "reasons": {r: report.reasons[r] for r in report.stale},
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


def register(main: click.Group) -> None:
    """Add rm and gc to ``qrec``."""
    main.add_command(rm_cmd)
    main.add_command(gc_cmd)
