"""qrecorder as Qlib's experiment manager: Qlib's own ``R`` stores through qrecorder.

One line in ``qlib.init`` switches it on::

    qlib.init(
        provider_uri="~/.qlib/qlib_data/cn_data",
        exp_manager={
            "class": "QlibExpManager",
            "module_path": "qrecorder.qlib",
            "kwargs": {"uri": "sqlite:///mlflow.db", "default_exp_name": "Experiment"},
        },
    )

Everything Qlib does through ``qlib.workflow.R`` (record templates, ``qrun``, trainers, online
tools) then goes through qrecorder's batched writer, status rules and object checksums. The
classes subclass both qrecorder's MLflow backend classes and Qlib's abstract ``ExpManager`` /
``Experiment`` / ``Recorder``, so Qlib's ``isinstance`` checks hold.

The classes are imported on first use (``qrecorder.qlib.QlibExpManager``), and that imports
Qlib; ``import qrecorder`` and ``qrecorder.qlib.swap`` (used by qrecorder's own ``R``) do not.
"""

from __future__ import annotations

from typing import Any

__all__ = ["QlibExpManager", "QlibExperiment", "QlibRunRecorder", "LoadObjectError", "ExpAlreadyExistError"]


def __getattr__(name: str) -> Any:
    if name in __all__ or name in ("ExperimentDeletedError", "SharedExpManager", "QlibFlavouredExperiment"):
        from . import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
