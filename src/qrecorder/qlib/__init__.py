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

This package imports Qlib; nothing else in qrecorder imports it (``import qrecorder`` stays
Qlib-free).
"""

from __future__ import annotations

from .adapter import ExpAlreadyExistError, LoadObjectError, QlibExperiment, QlibExpManager, QlibRunRecorder

__all__ = ["QlibExpManager", "QlibExperiment", "QlibRunRecorder", "LoadObjectError", "ExpAlreadyExistError"]
