"""``qrec ui`` and ``qrec server``: MLflow's web UI on a store, and a team tracking server
(the command lines are built in ``qrecorder.server``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from .common import CliError, handles_errors, location, uri_option


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

    loc = location(uri)
    if loc.kind == "http":
        raise CliError(f"{loc.uri} is a tracking server: its UI is at that address already.")
    if loc.kind == "file":
        raise CliError("MLflow's UI does not read legacy file stores; migrate with `mlflow migrate-filestore`.")
    cmd = mlflow_ui_command(host, port)
    env = mlflow_ui_env(loc.uri)
    if dry_run:
        click.echo(shown_command(cmd, env))
        return
    click.echo(f"MLflow UI on {loc.uri}: http://{host}:{port}  (Ctrl-C to stop)", err=True)
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
@click.option("--fast-paths/--no-fast-paths", default=True, show_default=True,
              help="Write plain log-batch and end-of-run requests with direct SQL (MLflow's answers and rows, "
                   "~5x faster); --no-fast-paths leaves every request to MLflow's handlers.")
@click.option("--jobs/--no-jobs", default=False, show_default=True,
              help="MLflow's job runner (GenAI evaluation jobs, trace rollups; 8 more processes).")
@click.option("--dry-run", is_flag=True, help="Print the mlflow server command line and exit.")
@handles_errors
def server_cmd(backend_store_uri: str, artifacts_destination: str, host: str, port: int, workers: int, auth: bool,
               auth_dir: str, auth_db_uri: str | None, default_permission: str, allowed_hosts: str | None,
               cors_allowed_origins: str | None, fast_paths: bool, jobs: bool, dry_run: bool) -> None:
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
        fast_paths=fast_paths,
        jobs=jobs,
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
    """Add ui and server to ``qrec``."""
    main.add_command(ui_cmd)
    main.add_command(server_cmd)
