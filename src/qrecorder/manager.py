"""The abstract ExpManager: which store, which experiment is active, get-or-create rules.

The active experiment is tracked per thread (a stack, so ``R.start`` blocks may nest). A
thread with no run of its own sees the process's only active run, so helper threads of a
training loop log into the run that the main thread started.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .errors import AmbiguousActiveRunError, ExpAlreadyExistError, ExperimentNotFoundError
from .experiment import Experiment
from .recorder import Recorder
from .uri import configured_uri, resolve_uri
from .validation import check_names

logger = logging.getLogger("qrecorder")


class ActiveExperiments:
    """Per-thread stacks of active experiments."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stacks: dict[int, list[Experiment]] = {}

    def push(self, exp: Experiment) -> None:
        with self._lock:
            self._stacks.setdefault(threading.get_ident(), []).append(exp)

    def pop(self) -> Experiment | None:
        with self._lock:
            stack = self._stacks.get(threading.get_ident())
            if not stack:
                return None
            exp = stack.pop()
            if not stack:
                del self._stacks[threading.get_ident()]
            return exp

    def own(self) -> Experiment | None:
        """This thread's innermost active experiment (no fallback to other threads)."""
        with self._lock:
            stack = self._stacks.get(threading.get_ident())
            return stack[-1] if stack else None

    def current(self) -> Experiment | None:
        """This thread's run, else the process's only active run; ambiguous → error."""
        with self._lock:
            stack = self._stacks.get(threading.get_ident())
            if stack:
                return stack[-1]
            tops = [s[-1] for s in self._stacks.values() if s]
        if len(tops) == 1:
            return tops[0]
        if len(tops) > 1:
            raise AmbiguousActiveRunError(
                f"{len(tops)} threads have active runs and this thread has none; get the recorder "
                "explicitly (R.get_recorder(recorder_id=...)) and log to it."
            )
        return None

    def all(self) -> list[Experiment]:
        with self._lock:
            return [exp for stack in self._stacks.values() for exp in stack]

    def clear(self) -> None:
        with self._lock:
            self._stacks.clear()


class ExpManager:
    """Manages experiments of one default store; ``start_exp(uri=...)`` may use another."""

    def __init__(self, uri: str | None = None, default_exp_name: str | None = "Experiment") -> None:
        self._default_uri = resolve_uri(uri).uri if uri else None
        self._default_exp_name = default_exp_name
        self._active = ActiveExperiments()
        self._active_uri = threading.local()

    # ------------------------------------------------------------------ URIs
    @property
    def default_uri(self) -> str:
        """The store used when no URI is given: set_uri's, else the environment's, else ./mlflow.db."""
        return self._default_uri or configured_uri()

    @default_uri.setter
    def default_uri(self, uri: str | None) -> None:
        self._default_uri = resolve_uri(uri).uri if uri else None

    @property
    def uri(self) -> str:
        """The store of the active run, written as it was given to ``start_exp(uri=...)``
        (Qlib's rule: ``R.get_uri()`` returns X inside ``R.start(uri=X)``); else the default.

        Use ``resolved_uri`` for the absolute form (what a process in another folder needs)."""
        exp = self._current_or_none()
        if exp is None:
            return self.default_uri
        given = getattr(exp, "_start_uri", None)
        return given or getattr(exp, "uri", None) or self.default_uri

    @property
    def resolved_uri(self) -> str:
        """The store of the active run (this thread's, else the process's only one), made
        absolute; else the default store."""
        exp = self._current_or_none()
        if exp is not None:
            return getattr(exp, "uri", None) or self.default_uri
        return self.default_uri

    def get_uri(self) -> str:
        return self.uri

    def _current_or_none(self) -> Experiment | None:
        try:
            return self._active.current()
        except AmbiguousActiveRunError:
            return None  # finding the store must not depend on which thread's run is meant

    # ------------------------------------------------------------------ active experiment
    @property
    def active_experiment(self) -> Experiment | None:
        return self._active.current()

    def start_exp(
        self,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        uri: str | None = None,
        resume: bool = False,
        **kwargs: Any,
    ) -> Experiment:
        """Get or create the experiment, start a recorder in it, make both active in this thread."""
        check_names(
            experiment_id=experiment_id, experiment_name=experiment_name, recorder_id=recorder_id, recorder_name=recorder_name
        )
        experiment_id = None if experiment_id is None else str(experiment_id)
        store_uri = resolve_uri(uri).uri if uri else self.default_uri
        if experiment_id is None and experiment_name is None:
            if recorder_id is not None:
                experiment_id = self._experiment_id_of_recorder(recorder_id, store_uri)
            else:
                experiment_name = self._default_exp_name
        exp, _ = self._get_or_create_exp(
            experiment_id=experiment_id, experiment_name=experiment_name, uri=store_uri, cached=True
        )
        try:
            exp.start(recorder_id=recorder_id, recorder_name=recorder_name, resume=resume)
        except Exception:
            if not self._forget_exp(exp):
                raise
            # The cached experiment may have been deleted or renamed by someone else: look again.
            exp, _ = self._get_or_create_exp(experiment_id=experiment_id, experiment_name=experiment_name, uri=store_uri)
            exp.start(recorder_id=recorder_id, recorder_name=recorder_name, resume=resume)
        exp._start_uri = None if uri is None else str(uri)  # type: ignore[attr-defined]
        self._active.push(exp)
        return exp

    def end_exp(self, recorder_status: str = Recorder.STATUS_FI, **kwargs: Any) -> None:
        """End this thread's innermost active experiment (and its recorder)."""
        exp = self._active.pop()
        if exp is not None:
            exp.end(recorder_status)

    def active_experiments(self) -> list[Experiment]:
        return self._active.all()

    # ------------------------------------------------------------------ experiments
    def get_exp(
        self,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        create: bool = True,
        start: bool = False,
    ) -> Experiment:
        """Qlib's rules: no id/name → the active experiment, else the default one (created when
        ``create``); with id/name → that experiment (created when missing and ``create``).
        ``start`` makes it active and starts a recorder when nothing is active yet."""
        check_names(experiment_id=experiment_id, experiment_name=experiment_name)
        experiment_id = None if experiment_id is None else str(experiment_id)
        if experiment_id is None and experiment_name is None:
            active = self._active.current()
            if active is not None:
                return active
            experiment_name = self._default_exp_name
        if create:
            exp, _ = self._get_or_create_exp(experiment_id=experiment_id, experiment_name=experiment_name)
        else:
            exp = self._get_exp(experiment_id=experiment_id, experiment_name=experiment_name)
        if start and self._active.current() is None:
            exp.start()
            self._active.push(exp)
        return exp

    def _get_or_create_exp(
        self,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        uri: str | None = None,
        cached: bool = False,
    ) -> tuple[Experiment, bool]:
        try:
            exp = self._get_exp(experiment_id=experiment_id, experiment_name=experiment_name, uri=uri, cached=cached)
            return exp, False
        except ExperimentNotFoundError:
            if experiment_id is not None and experiment_name is None:
                raise
            name = experiment_name or self._default_exp_name
            try:
                return self.create_exp(name, uri=uri), True
            except ExpAlreadyExistError:
                # Another process created it between our lookup and our create: use theirs.
                return self._get_exp(experiment_name=name, uri=uri), False

    def create_exp(self, experiment_name: str | None = None, uri: str | None = None) -> Experiment:
        raise NotImplementedError

    def _get_exp(
        self,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        uri: str | None = None,
        cached: bool = False,
    ) -> Experiment:
        """Look an experiment up; ``cached`` allows an answer remembered from earlier in this
        process (used by start_exp, which looks again if starting a recorder then fails)."""
        raise NotImplementedError

    def _experiment_id_of_recorder(self, recorder_id: str, uri: str) -> str:
        """The experiment holding ``recorder_id`` (so it can be resumed by id alone)."""
        raise NotImplementedError

    def _forget_exp(self, exp: Experiment) -> bool:
        """Drop ``exp`` from the lookup cache; True if it was there."""
        return False

    def search_records(self, experiment_ids: Any = None, **kwargs: Any) -> Any:
        raise NotImplementedError

    def delete_exp(self, experiment_id: str | None = None, experiment_name: str | None = None) -> None:
        raise NotImplementedError

    def list_experiments(self) -> dict[str, Experiment]:
        raise NotImplementedError
