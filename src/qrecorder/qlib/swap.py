"""``from qrecorder import R`` in a script that also uses Qlib (the one-line swap).

Such a script keeps using Qlib's models, record templates and trainers, and they talk to
Qlib's own ``qlib.workflow.R`` and catch Qlib's exception classes:

- ``LGBModel.fit`` / Qlib's PyTorch models log their learning curves through Qlib's ``R``,
  which, left alone, writes to Qlib's default ``file:mlruns`` store: MLflow 3 refuses it (the
  script dies inside ``model.fit``), and with ``MLFLOW_ALLOW_FILE_STORE=true`` the curves land
  in a second run, away from the qrecorder run they belong to;
- ``SigAnaRecord(recorder).generate()`` finds ``pred.pkl`` through ``except LoadObjectError``
  (Qlib's class), and ``TrainerR`` / ``OnlineToolR`` test ``isinstance(x, Recorder)`` (Qlib's).

So while Qlib is imported, qrecorder's ``R`` hands out recorders that are Qlib's ``Recorder``
too (``QlibRunRecorder``), and a run started by qrecorder's ``R`` (or ``R.set_uri``) makes
Qlib's ``R`` store through the same manager: same store, same active runs
(``SharedExpManager``). Qlib's ``R`` used before either (``TrainerR`` as the first thing after
``qlib.init``) is still Qlib's own; a later ``qlib.init`` makes it Qlib's own again until the
next run of qrecorder's ``R``. Nothing here
imports Qlib: without Qlib in the process, qrecorder's classes are used as they are.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ..mlflow.experiment import MLflowExperiment
from ..mlflow.manager import MLflowExpManager

logger = logging.getLogger("qrecorder")


def qlib_loaded() -> bool:
    """True when the process imported Qlib's workflow package (its R, records, errors)."""
    return "qlib.workflow" in sys.modules


class QlibAwareExpManager(MLflowExpManager):
    """qrecorder's default manager (``qrecorder.R``): Qlib-compatible objects once Qlib is loaded."""

    @property
    def experiment_class(self) -> type[MLflowExperiment]:  # type: ignore[override]
        if qlib_loaded():
            from .adapter import QlibFlavouredExperiment, _undo_qlib_param_limit

            _undo_qlib_param_limit()  # importing Qlib lowered MLflow's param limit to 1,000
            return QlibFlavouredExperiment
        return MLflowExperiment

    @property
    def default_uri(self) -> str:
        return MLflowExpManager.default_uri.fget(self)  # type: ignore[attr-defined]

    @default_uri.setter
    def default_uri(self, uri: str | None) -> None:
        MLflowExpManager.default_uri.fset(self, uri)  # type: ignore[attr-defined]
        if qlib_loaded():  # R.set_uri after qlib.init: Qlib's R (TrainerR, task_train) follows from here
            attach_qlib_r(self)

    def start_exp(self, **kwargs: Any) -> Any:
        exp = super().start_exp(**kwargs)
        if qlib_loaded():
            attach_qlib_r(self)
        return exp

    def get_exp(self, **kwargs: Any) -> Any:
        exp = super().get_exp(**kwargs)
        if kwargs.get("start") and qlib_loaded():
            attach_qlib_r(self)
        return exp


def attach_qlib_r(manager: MLflowExpManager) -> bool:
    """Make ``qlib.workflow.R`` store through ``manager`` (True if it does now).

    Left alone: Qlib's R already on a qrecorder manager (``qlib.init(exp_manager=
    QlibExpManager)``, or attached before), or in the middle of a run of its own.
    Never raises: a failure is logged and Qlib's R stays as it was.
    """
    try:
        from qlib.workflow import QlibRecorder as QlibsRecorder
        from qlib.workflow import R as qlib_r

        from .adapter import QlibExpManager, SharedExpManager

        current = getattr(qlib_r, "_provider", None)
        current_manager = getattr(current, "exp_manager", None)
        if isinstance(current_manager, SharedExpManager) and current_manager.shared is manager:
            current_manager.mirror_uri()
            return True
        if isinstance(current_manager, QlibExpManager):
            return False
        if current_manager is not None and current_manager.active_experiment is not None:
            return False
        shared = SharedExpManager(manager)
        qlib_r.register(QlibsRecorder(shared))
        shared.mirror_config()
        logger.info("qrecorder: Qlib's R now stores through qrecorder's R (%s)", manager.resolved_uri)
        return True
    except Exception as exc:  # noqa: BLE001 - Qlib's R stays as it was; say why
        logger.warning("qrecorder: could not make Qlib's R store through qrecorder's R: %s", exc)
        return False


__all__ = ["QlibAwareExpManager", "attach_qlib_r", "qlib_loaded"]
