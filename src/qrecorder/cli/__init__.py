"""The `qrec` command line: a click group whose subcommands live in small modules.

Each module registers its commands on `main`; importing heavy libraries (mlflow, pandas)
happens inside the commands so that `qrec --help` stays fast.
"""

from __future__ import annotations

import importlib

import click

# Modules that add commands to `main`. A module missing here is simply skipped, so the
# command set grows without touching this file's logic.
_COMMAND_MODULES = (
    "qrecorder.cli.run_cmds",
    "qrecorder.cli.experiments_cmd",
    "qrecorder.cli.runs_cmd",
    "qrecorder.cli.show_cmd",
    "qrecorder.cli.artifacts_cmd",
    "qrecorder.cli.rm_cmd",
    "qrecorder.cli.export_cmd",
    "qrecorder.cli.serve_cmd",
    "qrecorder.cli.recover_cmd",
    "qrecorder.cli.users_cmd",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qrecorder")
def main() -> None:
    """qrec: experiments and runs recorded with qrecorder (Qlib's R, on MLflow).

    The store is taken from --uri, else QRECORDER_URI, else MLFLOW_TRACKING_URI, else
    ./mlflow.db (SQLite) with artifacts in ./mlartifacts.
    """


for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # pragma: no cover - only while a module is absent
        if exc.name != _name:
            raise
        continue
    _module.register(main)
