"""Qlib's ExpManager / Experiment / Recorder, implemented by qrecorder's MLflow backend.

Each class subclasses qrecorder's MLflow class first (all behaviour) and Qlib's abstract class
second (so ``isinstance(rec, qlib.workflow.recorder.Recorder)`` holds, as Qlib's trainers,
collectors and online tools check). What differs from qrecorder's own classes is only what
Qlib's callers rely on:

- ``load_object`` raises an error that is also Qlib's ``LoadObjectError`` (Qlib's collectors
  and record templates catch that class);
- ``search_records`` returns MLflow ``Run`` objects, as Qlib's MLflowExpManager did;
- a recorder found by id is returned whatever experiment it was asked through (Qlib's
  lookup did not check), labelled with its real experiment id;
- ``end_exp`` turns Qlib's ``FAILED`` into ``KILLED`` when the process dies from Ctrl-C or
  SIGTERM, keeps the exception (tag and ``traceback.txt``) as qrecorder's own ``R`` does,
  and does not end a run twice (Qlib's atexit hook runs after qrecorder's);
- the default URI is mirrored into ``qlib.config.C`` as Qlib's manager does, so Qlib's
  subprocess helpers (``call_in_subproc``) open the same store;
- recorders and experiments can be pickled (Qlib's ``TrainerR(call_in_subproc=True)`` returns
  recorders from a subprocess);
- MLflow's param-length limit, which importing Qlib's recorder module lowers from 6,000 to
  1,000 characters, is put back (see ``_undo_qlib_param_limit``).
"""

from __future__ import annotations

import sys
from typing import Any

from qlib.utils import exceptions as qlib_errors
from qlib.workflow.exp import Experiment as _QlibExperimentBase
from qlib.workflow.expm import ExpManager as _QlibExpManagerBase
from qlib.workflow.recorder import Recorder as _QlibRecorderBase

from .. import errors, lifecycle
from ..api import _record_exception
from ..mlflow import query
from ..mlflow.experiment import MLflowExperiment, _recorder_by_id
from ..mlflow.manager import MLflowExpManager
from ..mlflow.recorder import MLflowRecorder
from ..recorder import Recorder
from ..validation import MAX_PARAM_VALUE_LENGTH


class LoadObjectError(errors.LoadObjectError, qlib_errors.LoadObjectError):
    """An object could not be loaded; caught by ``except LoadObjectError`` of qrecorder and of Qlib."""


class ExpAlreadyExistError(errors.ExpAlreadyExistError, qlib_errors.ExpAlreadyExistError):
    """The experiment exists already; qrecorder's and Qlib's error class at once."""


class ExperimentDeletedError(errors.ExperimentDeletedError, qlib_errors.ExpAlreadyExistError):
    """A deleted experiment's name is still taken: Qlib's manager raised ExpAlreadyExistError here."""


class QlibRunRecorder(MLflowRecorder, _QlibRecorderBase):
    """A recorder that is both qrecorder's MLflowRecorder and a ``qlib.workflow.recorder.Recorder``."""

    async_log = None  # Qlib's MLflowRecorder attribute; qrecorder's batched writer does its job

    def load_object(self, name: str, unpickler: Any = None, **kwargs: Any) -> Any:
        """Unpickle artifact ``name`` (checksum-verified); Qlib's LoadObjectError on failure."""
        try:
            return super().load_object(name, unpickler, **kwargs)
        except LoadObjectError:
            raise
        except errors.LoadObjectError as exc:
            raise LoadObjectError(str(exc)) from exc


class QlibExperiment(MLflowExperiment, _QlibExperimentBase):
    """An experiment that is both qrecorder's MLflowExperiment and a ``qlib.workflow.exp.Experiment``."""

    recorder_class = QlibRunRecorder

    def _get_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None) -> MLflowRecorder:
        if recorder_id is not None:
            # Qlib looked an id up in whichever experiment it was asked through; keep that, but
            # label the recorder with the experiment it really belongs to.
            return _recorder_by_id(self._store, recorder_id, self.recorder_class)
        return super()._get_recorder(recorder_name=recorder_name)

    def end(self, recorder_status: str = Recorder.STATUS_FI) -> None:
        recorder = self.active_recorder
        if recorder is not None and recorder.id is not None and not recorder._is_started():
            # Ended already (qrecorder's exit handler runs before Qlib's atexit R.end_exp).
            self.active_recorder = None
            return
        super().end(recorder_status)

    def search_records(self, **kwargs: Any) -> list[Any]:
        """MLflow ``Run`` objects of this experiment, newest first (what Qlib returned)."""
        return _search_runs(self._store, [self.id], **kwargs)


class QlibFlavouredExperiment(MLflowExperiment, _QlibExperimentBase):
    """What qrecorder's own ``R`` makes experiments as while Qlib is imported (the one-line swap):
    qrecorder's semantics (``search_records`` a DataFrame, lookups by id checked), but its
    recorders are Qlib ``Recorder`` s whose ``load_object`` raises Qlib's ``LoadObjectError``,
    as Qlib's record templates and collectors expect, and both pickle."""

    recorder_class = QlibRunRecorder


class QlibExpManager(MLflowExpManager, _QlibExpManagerBase):
    """qrecorder's experiment manager for ``qlib.init(exp_manager=...)``.

    ``uri``: the default store (``sqlite:///...``, ``postgresql://...``, ``http(s)://...``,
    ``file:...``); None: ``QRECORDER_URI``, ``MLFLOW_TRACKING_URI``, else ``./mlflow.db``.
    """

    experiment_class = QlibExperiment
    deleted_error_class = ExperimentDeletedError

    def __init__(self, uri: str | None = None, default_exp_name: str | None = "Experiment") -> None:
        _undo_qlib_param_limit()
        MLflowExpManager.__init__(self, uri, default_exp_name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(uri={self.uri!r})"

    # ------------------------------------------------------------------ URIs
    @property
    def default_uri(self) -> str:
        return MLflowExpManager.default_uri.fget(self)  # type: ignore[attr-defined]

    @default_uri.setter
    def default_uri(self, uri: str | None) -> None:
        MLflowExpManager.default_uri.fset(self, uri)  # type: ignore[attr-defined]
        _mirror_uri_to_qlib_config(self._default_uri)

    @property
    def client(self) -> Any:
        """The MlflowClient of the current store (Qlib's MLflowExpManager.client); what this
        process queued is written first, so the client's reads see it."""
        store = self.store()
        store.sync()
        return store.client

    # ------------------------------------------------------------------ runs
    def end_exp(self, recorder_status: str = Recorder.STATUS_FI, **kwargs: Any) -> None:
        """End this thread's active run. Qlib's ``R`` knows only FINISHED and FAILED: a run
        ended FAILED because of Ctrl-C or SIGTERM ends KILLED, and the exception is kept."""
        status, exc = _status_and_exception(recorder_status)
        exp = self._active.own()
        recorder = exp.active_recorder if exp is not None else None
        if recorder is not None and recorder.id is not None and not recorder._is_started():  # type: ignore[attr-defined]
            # Ended already (qrecorder's exit handler runs before Qlib's atexit R.end_exp): the
            # status it was given stands.
            self._active.pop()
            exp.active_recorder = None  # type: ignore[union-attr]
            return
        if exc is not None and status != Recorder.STATUS_FI and exp is not None:
            recorder = exp.active_recorder
            if recorder is not None and recorder._is_started():  # type: ignore[attr-defined]
                _record_exception(recorder, exc)
        super().end_exp(status, **kwargs)

    # ------------------------------------------------------------------ experiments
    def create_exp(self, experiment_name: str | None = None, uri: str | None = None) -> MLflowExperiment:
        try:
            return super().create_exp(experiment_name, uri)
        except ExpAlreadyExistError:
            raise
        except errors.ExpAlreadyExistError as exc:
            raise ExpAlreadyExistError(str(exc)) from exc

    def search_records(self, experiment_ids: Any = None, **kwargs: Any) -> list[Any]:
        """MLflow ``Run`` objects (what Qlib's MLflowExpManager returned), newest first, every
        match unless ``max_results`` (Qlib asked MLflow for 100,000, which MLflow 3 refuses)."""
        store = self.store()
        if experiment_ids is None:
            experiment_ids = [exp.id for exp in self.list_experiments().values()]
        elif isinstance(experiment_ids, (str, int)):
            experiment_ids = [experiment_ids]
        return _search_runs(store, [str(e) for e in experiment_ids], **kwargs)


class SharedExpManager(QlibExpManager):
    """Qlib's ``R`` after ``from qrecorder import R``: the manager of qrecorder's ``R`` seen
    with Qlib's rules. Same default store (``R.set_uri`` on either ``R`` moves both), same
    per-thread active runs: ``LGBModel.fit`` inside ``with qrecorder.R.start()`` logs into that
    run, and ``TrainerR`` / ``task_train`` store where qrecorder's ``R`` does."""

    def __init__(self, shared: MLflowExpManager) -> None:
        QlibExpManager.__init__(self, None, shared._default_exp_name)
        self.shared = shared
        self._active = shared._active

    @property
    def default_uri(self) -> str:
        return self.shared.default_uri

    @default_uri.setter
    def default_uri(self, uri: str | None) -> None:
        self.shared.default_uri = uri
        self.mirror_uri()

    @property
    def active_experiment(self) -> Any:
        """The active experiment if Qlib's ``R`` started it. A run of qrecorder's ``R`` is not
        Qlib's: ``qlib.init`` inside it re-initialises Qlib as it did before (Qlib refuses to
        re-initialise only while a run of its own ``R`` is open)."""
        exp = super().active_experiment
        return exp if isinstance(exp, QlibExperiment) else None

    def mirror_uri(self) -> None:
        _mirror_uri_to_qlib_config(self.shared.default_uri)

    def mirror_config(self) -> None:
        """Point Qlib's config at this store (Qlib's subprocess helpers re-create the manager from it)."""
        from qlib.config import C

        try:
            C["exp_manager"] = {
                "class": "QlibExpManager",
                "module_path": "qrecorder.qlib",
                "kwargs": {"uri": self.shared.default_uri, "default_exp_name": self._default_exp_name},
            }
        except (AttributeError, KeyError, TypeError):  # pragma: no cover - C not set up
            pass


def _search_runs(
    store: Any,
    experiment_ids: list[str],
    filter_string: str | None = None,
    run_view_type: int | None = None,
    max_results: int | None = None,
    order_by: list[str] | None = None,
    **_ignored: Any,
) -> list[Any]:
    from mlflow.store.entities.paged_list import PagedList

    runs = query.search_runs(store, experiment_ids, filter_string or "", run_view_type or query.ACTIVE_ONLY, max_results, order_by)
    return PagedList(runs, None)  # MlflowClient.search_runs' type: every match is in it, so no next page


def _status_and_exception(requested: str) -> tuple[str, BaseException | None]:
    """The status to end with, and the exception that ends the run (if any).

    Qlib's ``R.start`` calls ``end_exp(FAILED)`` inside its ``except Exception`` block, and its
    excepthook does for any uncaught exception, Ctrl-C included; at exit its atexit hook asks
    for FINISHED. qrecorder's lifecycle knows when the process dies from a signal or an
    uncaught exception.
    """
    exc = sys.exc_info()[1]
    if exc is None and requested == Recorder.STATUS_FA:
        exc = getattr(sys, "last_value", None)  # set by Python before it calls sys.excepthook
    dying = lifecycle._exit_reason.get("status")  # set only when the process is going down
    if requested == Recorder.STATUS_FA and exc is not None:
        return lifecycle.status_for_exception(exc), exc
    if requested == Recorder.STATUS_FI and dying in (Recorder.STATUS_K, Recorder.STATUS_FA):
        return dying, None
    return requested, exc if requested != Recorder.STATUS_FI else None


def _undo_qlib_param_limit() -> None:
    """``qlib.workflow.recorder`` sets ``mlflow.utils.validation.MAX_PARAM_VAL_LENGTH = 1000`` to
    raise MLflow 1's limit of 500. MLflow 3's limit is 6,000, so the assignment lowers it, and
    MLflow then truncates params of 1,001-6,000 characters with only a warning wherever its API
    writes them (file stores, servers, ``QRECORDER_FAST_WRITE=0``). Qlib meant more room: give
    MLflow its own limit back (qrecorder keeps longer values whole as artifacts)."""
    import mlflow.utils.validation as mlflow_validation

    if getattr(mlflow_validation, "MAX_PARAM_VAL_LENGTH", MAX_PARAM_VALUE_LENGTH) < MAX_PARAM_VALUE_LENGTH:
        mlflow_validation.MAX_PARAM_VAL_LENGTH = MAX_PARAM_VALUE_LENGTH


def _mirror_uri_to_qlib_config(uri: str | None) -> None:
    """Qlib keeps the default URI in ``C.exp_manager["kwargs"]["uri"]`` (its subprocess
    helpers re-create the manager from it); keep that in step with ``R.set_uri``."""
    from qlib.config import C

    try:
        C.exp_manager.setdefault("kwargs", {})["uri"] = uri
    except (AttributeError, KeyError, TypeError):  # pragma: no cover - C not set up
        pass


__all__ = ["QlibExpManager", "QlibExperiment", "QlibRunRecorder", "LoadObjectError", "ExpAlreadyExistError",
           "ExperimentDeletedError", "QlibFlavouredExperiment", "SharedExpManager"]
