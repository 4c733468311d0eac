"""Import shim: the CLI's quick SQLite reads moved to :mod:`qrecorder.mlflow.sql.quick`.

Kept only because ``cli/store_cmds.py`` (being split by another change) imports it from here.
"""

from ..mlflow.sql.quick import connect, experiments, find_experiment, runs

__all__ = ["connect", "experiments", "find_experiment", "runs"]
