"""``R``: the global facade with Qlib's names, arguments and return types.

Differences from Qlib are deliberate and listed in docs/migration.md: runs end KILLED on
Ctrl-C/SIGTERM (Qlib left them RUNNING), the active run is per thread, lookups by name are
server-side, and errors are specific exceptions.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import lifecycle, tags
from .errors import ExperimentNotFoundError, NoActiveRecorderError, RecorderNotFoundError
from .recorder import Recorder

if TYPE_CHECKING:
    from .experiment import Experiment
    from .manager import ExpManager


class QlibRecorder:
    """A global system that manages experiments (``from qrecorder import R``)."""

    def __init__(self, exp_manager: ExpManager) -> None:
        self.exp_manager = exp_manager

    def __repr__(self) -> str:
        return f"QlibRecorder(uri={self.exp_manager.default_uri!r})"

    # ------------------------------------------------------------------ runs
    @contextlib.contextmanager
    def start(
        self,
        experiment_name: str | None = None,
        recorder_name: str | None = None,
        *,
        experiment_id: str | None = None,
        recorder_id: str | None = None,
        uri: str | None = None,
        resume: bool = False,
    ) -> Iterator[Experiment]:
        """Start a run for the ``with`` block and end it with the right status.

        ``R.start(experiment_name="x", recorder_name="y")``; the two may also be given
        positionally, as in older Qlib releases.

        Normal exit → FINISHED; an exception → FAILED (exception re-raised, its traceback kept
        as the artifact ``traceback.txt``); Ctrl-C or SIGTERM → KILLED, then the interrupt
        goes on. Yields the active Experiment, as Qlib does.
        """
        exp = self.start_exp(
            experiment_id=experiment_id,
            experiment_name=experiment_name,
            recorder_id=recorder_id,
            recorder_name=recorder_name,
            uri=uri,
            resume=resume,
        )
        try:
            yield exp
        except BaseException as exc:
            status = lifecycle.status_for_exception(exc)
            if status != Recorder.STATUS_FI:
                _record_exception(exp.active_recorder, exc)
            self.end_exp(status)
            raise
        self.end_exp(Recorder.STATUS_FI)

    def start_exp(
        self,
        experiment_name: str | None = None,
        recorder_name: str | None = None,
        *,
        experiment_id: str | None = None,
        recorder_id: str | None = None,
        uri: str | None = None,
        resume: bool = False,
    ) -> Experiment:
        """Start an experiment and a recorder without a ``with`` block; end with ``end_exp``."""
        return self.exp_manager.start_exp(
            experiment_id=experiment_id,
            experiment_name=experiment_name,
            recorder_id=recorder_id,
            recorder_name=recorder_name,
            uri=uri,
            resume=resume,
        )

    def end_exp(self, recorder_status: str = Recorder.STATUS_FI) -> None:
        """End this thread's active experiment and its recorder with ``recorder_status``."""
        self.exp_manager.end_exp(recorder_status)

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything the active recorder logged is durable in the store."""
        self._active_recorder("flush").flush(timeout)

    # ------------------------------------------------------------------ experiments
    def search_records(self, experiment_ids: Any = None, **kwargs: Any) -> Any:
        """A pandas DataFrame of runs with ``metrics.*``, ``params.*`` and ``tags.*`` columns.

        Keywords: filter_string, run_view_type, max_results (None: all), order_by.
        """
        return self.exp_manager.search_records(experiment_ids, **kwargs)

    def list_experiments(self) -> dict[str, Experiment]:
        return self.exp_manager.list_experiments()

    def list_recorders(self, experiment_id: str | None = None, experiment_name: str | None = None) -> dict[str, Recorder]:
        """Recorders (id → Recorder) of the named experiment, or of the active/default one."""
        create = experiment_id is None and experiment_name is None
        exp = self.get_exp(experiment_id=experiment_id, experiment_name=experiment_name, create=create)
        return exp.list_recorders()

    def get_exp(
        self,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        create: bool = True,
        *,
        start: bool = False,
    ) -> Experiment:
        """Qlib's get-or-create rules (see ExpManager.get_exp). Keywords are preferred; the
        positional order is that of older Qlib releases."""
        return self.exp_manager.get_exp(
            experiment_id=experiment_id, experiment_name=experiment_name, create=create, start=start
        )

    def delete_exp(self, experiment_id: str | None = None, experiment_name: str | None = None) -> None:
        self.exp_manager.delete_exp(experiment_id, experiment_name)

    # ------------------------------------------------------------------ store
    def get_uri(self) -> str:
        """The store of the active run as given to ``R.start(uri=...)`` (Qlib's rule), else
        the default store. ``get_resolved_uri()`` gives the absolute form."""
        return self.exp_manager.uri

    def get_resolved_uri(self) -> str:
        """The store calls go to now, as an absolute URI (relative paths resolved): pass this
        one to other processes."""
        return self.exp_manager.resolved_uri

    def set_uri(self, uri: str | None) -> None:
        """Set the default store (made absolute now); None goes back to the environment/default."""
        self.exp_manager.default_uri = uri

    @contextlib.contextmanager
    def uri_context(self, uri: str) -> Iterator[None]:
        """Use another default store inside the block; the previous one is restored after."""
        previous = self.exp_manager._default_uri
        self.exp_manager.default_uri = uri
        try:
            yield
        finally:
            self.exp_manager._default_uri = previous

    # ------------------------------------------------------------------ recorders
    def get_recorder(
        self,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        experiment_name: str | None = None,
        *,
        experiment_id: str | None = None,
    ) -> Recorder:
        """The active recorder, or the one with this id / latest one with this name.

        With no argument and no active run, Qlib's rule: the latest recorder with the default
        name (``"mlflow_recorder"``) in the default experiment; NoActiveRecorderError when
        there is none. A ``recorder_id`` alone is found in any experiment; a name needs its
        experiment (or the active one).
        """
        if recorder_id is None and recorder_name is None:
            if experiment_id is None and experiment_name is None:
                return self._latest_default_recorder()
        elif recorder_id is not None and experiment_id is None and experiment_name is None:
            active = self.exp_manager._active.own()
            if active is None or active.active_recorder is None or active.active_recorder.id != recorder_id:
                return self.exp_manager.recorder_by_id(recorder_id)  # type: ignore[attr-defined]
            return active.active_recorder
        exp = self.get_exp(experiment_id=experiment_id, experiment_name=experiment_name, create=False)
        return exp.get_recorder(recorder_id, recorder_name, create=False, start=False)

    def delete_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None) -> None:
        if recorder_id is not None:
            recorder = self.exp_manager.recorder_by_id(recorder_id)  # type: ignore[attr-defined]
            self.get_exp(experiment_id=recorder.experiment_id, create=False).delete_recorder(recorder_id)
            return
        self.get_exp(create=False).delete_recorder(recorder_id, recorder_name)

    def save_objects(self, local_path: str | Path | None = None, artifact_path: str | None = None, **kwargs: Any) -> None:
        """Pickle objects given as keywords (or upload ``local_path``) into the active recorder."""
        self._logging_recorder().save_objects(local_path, artifact_path, **kwargs)

    def load_object(self, name: str) -> Any:
        return self._active_recorder("load_object").load_object(name)

    def log_params(self, **kwargs: Any) -> None:
        self._logging_recorder().log_params(**kwargs)

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        self._logging_recorder().log_metrics(step, **kwargs)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self._logging_recorder().log_artifact(local_path, artifact_path)

    def download_artifact(self, path: str, dst_path: str | None = None) -> str:
        return self._logging_recorder().download_artifact(path, dst_path)

    def set_tags(self, **kwargs: Any) -> None:
        self._logging_recorder().set_tags(**kwargs)

    def delete_tags(self, *keys: str) -> None:
        self._active_recorder("delete_tags").delete_tags(*keys)

    def mark_stale_runs(self, experiment_ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Mark RUNNING recorders whose process is gone (heartbeat too old) FAILED; return their ids."""
        from .mlflow.stale import mark_stale_runs

        return mark_stale_runs(self.exp_manager.store(), experiment_ids, **kwargs)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ helpers
    def _latest_default_recorder(self) -> Recorder:
        exp = self._active_experiment()
        if exp is not None and exp.active_recorder is not None:
            return exp.active_recorder
        try:
            return self.get_exp(create=False).get_recorder(create=False)
        except (ExperimentNotFoundError, RecorderNotFoundError) as exc:
            raise NoActiveRecorderError(
                "R.get_recorder() found no active recorder in this thread and no default recorder to "
                f"return ({exc}): call it inside `with R.start(...)`, or pass recorder_id / recorder_name "
                "and experiment_name."
            ) from exc

    def _active_experiment(self) -> Experiment | None:
        return self.exp_manager.active_experiment

    def _active_recorder(self, what: str) -> Recorder:
        exp = self._active_experiment()
        if exp is None or exp.active_recorder is None:
            raise NoActiveRecorderError(
                f"R.{what}() needs an active recorder, and none is running in this thread: call it inside "
                "`with R.start(...)`, or get a recorder with R.get_recorder(recorder_id=..., experiment_name=...)."
            )
        return exp.active_recorder

    def _logging_recorder(self) -> Recorder:
        """The active recorder, or (as in Qlib) a default run started on first use."""
        exp = self._active_experiment()
        if exp is not None and exp.active_recorder is not None:
            return exp.active_recorder
        return self.get_exp(start=True).get_recorder(start=True)


def _record_exception(recorder: Recorder | None, exc: BaseException) -> None:
    """Keep why a run failed: a tag with the summary, the traceback as an artifact."""
    if recorder is None or recorder.id is None:
        return
    summary = f"{type(exc).__name__}: {exc}"[:1000]
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    with contextlib.suppress(Exception):
        recorder.set_tags(**{tags.EXCEPTION: summary})
        recorder.log_text(text, "traceback.txt")


__all__ = ["QlibRecorder", "ExperimentNotFoundError"]
