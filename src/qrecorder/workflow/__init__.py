"""Workflows: Qlib-shaped YAML configs turned into objects and run inside ``R.start``."""

from qrecorder.workflow.config import config_hash, load_config, validate_config
from qrecorder.workflow.errors import ConfigError
from qrecorder.workflow.instance import fill_placeholder, get_class, init_instance_by_config

__all__ = [
    "ConfigError", "config_hash", "fill_placeholder", "get_class", "init_instance_by_config", "load_config",
    "run_task", "validate_config",
]


def __getattr__(name: str):  # run_task imports R lazily; keep `import qrecorder.workflow` light
    if name == "run_task":
        from qrecorder.workflow.run import run_task

        return run_task
    raise AttributeError(name)
