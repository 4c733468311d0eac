"""``qrec users``: users and experiment permissions on a ``qrec server --auth``.

Runs as the logged-in user (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD): an admin
for ``add``/``remove``/``list``; an admin or a user who MANAGES an experiment (its creator) for
``grant``/``revoke`` on it. Passwords are never taken from the command line (``ps`` shows it
to everyone): they are prompted for, or read from stdin with ``--password-stdin``.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .common import CliError, echo_json, handles_errors, json_option, location, manager, uri_option

GRANTABLE = ("READ", "EDIT", "MANAGE")


def _server_url(uri: str | None) -> str:
    url = str(location(uri, must_exist=False).uri)
    if not url.startswith(("http://", "https://")):
        raise CliError(f"qrec users needs a tracking server (--uri http://HOST:PORT), not {url}.")
    return url


def _experiment_id(url: str, ident: str, create: bool) -> str:
    """The id of experiment ``ident`` (a name, else an id); created (as the caller) with ``create``."""
    from ..server import experiment_id_by_name

    found = experiment_id_by_name(url, ident)
    if found is not None:
        return found
    if ident.isdigit():
        return ident
    if not create:
        raise CliError(f"No experiment named {ident!r} on {url}. Pass --create to create it first.")
    return str(manager(url).get_exp(experiment_name=ident, create=True).id)


def _target(url: str, experiment: str | None, all_experiments: bool, create: bool) -> str:
    if all_experiments == (experiment is not None):
        raise CliError("Name one experiment (--experiment NAME) or --all-experiments.")
    return "*" if all_experiments else _experiment_id(url, str(experiment), create)


@click.group("users")
def users_group() -> None:
    """Users and experiment permissions on a `qrec server --auth` (see docs/team.md).

    \b
    Log in as the admin first:
      export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=...
    \b
    Examples:
      qrec users add alice --uri http://mlflow:5000             # prompts for the password
      qrec users grant alice bob --experiment shared --permission EDIT --create
      qrec users grant carol --all-experiments --permission EDIT
      qrec users list --experiment shared
      qrec users remove bob -y
    """


@users_group.command("add")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (first line) instead of prompting.")
@uri_option
@handles_errors
def add_cmd(username: str, password_stdin: bool, uri: str | None) -> None:
    """Create a user (12+ character password; asked for, or read from stdin).

    Example:

      qrec users add alice --uri http://127.0.0.1:5000
      printf '%s\n' "$ALICE_PASSWORD" | qrec users add alice --password-stdin
    """
    from ..server import create_user

    url = _server_url(uri)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"Password for {username}", hide_input=True, confirmation_prompt=True)
    create_user(url, username, password)
    click.echo(f"Created user {username}.", err=True)


@users_group.command("grant")
@click.argument("usernames", nargs=-1, required=True)
@click.option("--experiment", "-e", default=None, help="Experiment name (or id).")
@click.option("--all-experiments", is_flag=True, help="Every experiment, also those created later (admin only).")
@click.option("--permission", "-p", type=click.Choice(GRANTABLE, case_sensitive=False), default="EDIT", show_default=True,
              help="READ: look; EDIT: also log runs; MANAGE: also delete and grant.")
@click.option("--create", is_flag=True, help="Create the experiment first when it does not exist.")
@uri_option
@handles_errors
def grant_cmd(usernames: tuple[str, ...], experiment: str | None, all_experiments: bool, permission: str,
              create: bool, uri: str | None) -> None:
    """Let users READ, EDIT or MANAGE an experiment (replaces an earlier grant).

    Example:

      qrec users grant alice bob carol -e shared --create      # EDIT on 'shared', made if missing
      qrec users grant dave -e shared --permission READ
    """
    from ..server import grant_permission

    url = _server_url(uri)
    target = _target(url, experiment, all_experiments, create)
    for name in usernames:
        grant_permission(url, name, target, permission.upper())
    where = "every experiment" if target == "*" else f"experiment {experiment} (id {target})"
    click.echo(f"Granted {permission.upper()} on {where} to {', '.join(usernames)}.", err=True)


@users_group.command("revoke")
@click.argument("usernames", nargs=-1, required=True)
@click.option("--experiment", "-e", default=None, help="Experiment name (or id).")
@click.option("--all-experiments", is_flag=True, help="The grant made with --all-experiments.")
@uri_option
@handles_errors
def revoke_cmd(usernames: tuple[str, ...], experiment: str | None, all_experiments: bool, uri: str | None) -> None:
    """Take a grant back: the server's default permission applies again.

    Example:

      qrec users revoke bob -e shared
    """
    from ..server import revoke_permission

    url = _server_url(uri)
    target = _target(url, experiment, all_experiments, False)
    for name in usernames:
        revoke_permission(url, name, target)
    click.echo(f"Revoked the grant of {', '.join(usernames)}.", err=True)


@users_group.command("list")
@click.option("--experiment", "-e", default=None, help="Also show what each user may do on this experiment.")
@uri_option
@json_option
@handles_errors
def list_cmd(experiment: str | None, uri: str | None, as_json: bool) -> None:
    """List users (admin only); with --experiment, each one's permission on it.

    Example:

      qrec users list --experiment shared --json
    """
    from ..server import get_permission, list_users

    url = _server_url(uri)
    users: list[dict[str, Any]] = list_users(url)
    if experiment is not None:
        exp_id = _experiment_id(url, experiment, False)
        for user in users:
            user["permission"] = "MANAGE" if user["is_admin"] else get_permission(url, str(user["username"]), exp_id)
    if as_json:
        echo_json(users)
        return
    for user in users:
        line = f"{user['username']}" + ("  (admin)" if user["is_admin"] else "")
        if "permission" in user:
            line += f"  {user['permission']}"
        click.echo(line)


@users_group.command("remove")
@click.argument("usernames", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@uri_option
@handles_errors
def remove_cmd(usernames: tuple[str, ...], yes: bool, uri: str | None) -> None:
    """Delete users (their runs stay).

    Example:

      qrec users remove bob -y
    """
    from ..server import delete_user

    url = _server_url(uri)
    if not yes:
        click.confirm(f"Delete user(s) {', '.join(usernames)} on {url}?", abort=True)
    for name in usernames:
        delete_user(url, name)
    click.echo(f"Removed {', '.join(usernames)}.", err=True)


def register(main: click.Group) -> None:
    main.add_command(users_group)
