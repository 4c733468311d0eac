"""``qrec artifacts ls | get | cat``: the files a run saved.

Listing (with sizes) goes through ``admin.artifact_files``; downloads through the recorder's
``download_artifact``. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from .. import admin
from .common import CliError, echo_json, handles_errors, is_store_failure, json_option, manager, uri_option
from .show_cmd import recorder


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
    mgr = manager(uri)
    rec = recorder(mgr, run_id)
    files = admin.artifact_files(mgr, rec.id, path.strip("/") if path else None)
    if path and not files:
        raise CliError(f"No artifact {path!r} in run {run_id}.")
    if as_json:
        echo_json({"run_id": rec.id, "path": path, "files": files})
        return
    for f in files:
        size = "-" if f["size"] is None else f"{f['size']:,}"
        click.echo(f"{size:>14}  {f['path']}")
    click.echo(f"{len(files)} file(s)", err=True)


def _download(rec: Any, path: str, dest: str) -> Path:
    from ..errors import QRecorderError

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars on stderr

    try:
        return Path(rec.download_artifact(path.strip("/"), dest))
    except QRecorderError:
        raise
    except Exception as exc:
        if is_store_failure(exc):
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
    rec = recorder(manager(uri), run_id)
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
    rec = recorder(manager(uri), run_id)
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
    """Add artifacts (ls, get, cat) to ``qrec``."""
    main.add_command(artifacts_group)
