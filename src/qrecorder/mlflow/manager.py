"""MLflowExpManager: experiments of MLflow stores, created race-free."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from .. import tags as tagnames
from ..errors import (
    ExpAlreadyExistError,
    ExperimentDeletedError,
    ExperimentNotFoundError,
    InvalidKeyError,
    InvalidValueError,
    StoreError,
)
from ..experiment import Experiment
from ..manager import ExpManager
from ..validation import check_names
from . import calls
from .experiment import MLflowExperiment, _recorder_by_id
from .query import search_records_frame
from .recorder import MLflowRecorder
from .store import Store, get_store

EXPERIMENT_KIND_TAG = tagnames.MLFLOW_EXPERIMENT_KIND
EXPERIMENT_KIND_ML = "custom_model_development"


class MLflowExpManager(ExpManager):
    experiment_class: type[MLflowExperiment] = MLflowExperiment  # what experiments are made as
    deleted_error_class: type[ExperimentDeletedError] = ExperimentDeletedError  # Qlib's adapter widens it

    def __init__(self, uri: str | None = None, default_exp_name: str | None = "Experiment") -> None:
        super().__init__(uri, default_exp_name)
        # (store uri, id, name) -> (id, name): start_exp skips a lookup per run (2.9 ms on an idle SQLite store)
        self._exp_cache: dict[tuple[str, str | None, str | None], tuple[str, str]] = {}

    def store(self, uri: str | None = None) -> Store:
        return get_store(uri or self.resolved_uri)

    def create_exp(self, experiment_name: str | None = None, uri: str | None = None) -> MLflowExperiment:
        name = experiment_name or self._default_exp_name
        if not name:
            raise ValueError("An experiment needs a name.")
        check_names(experiment_name=name)  # length and text the store can hold, before any write
        store = self.store(uri)
        location = _artifact_location(store, name)
        tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND_ML}
        sink = store.sql_sink if store.kind in ("sqlite", "postgresql") else None
        from .sql.writes import location_fits

        if sink is not None and location is not None and location_fits(location):
            # The rows MLflow writes, without importing it; a taken name raises ExpAlreadyExistError.
            exp_id = calls.call(sink.create_experiment, name, location, tags)
            return self.experiment_class(exp_id, name, store.uri, store=store)
        rest = store.rest
        if rest is not None:
            # A tracking server's requests without importing MLflow (a taken name: ExpAlreadyExistError).
            exp_id = rest.create_experiment(name, location, tags)
            return self.experiment_class(exp_id, name, store.uri, store=store)
        from mlflow.exceptions import MlflowException

        with store.creation_lock():
            if store.kind == "file" and calls.call(store.client.get_experiment_by_name, name) is not None:
                raise ExpAlreadyExistError(f"Experiment {name!r} exists already.")
            try:
                # MLflow 3.17's UI opens an experiment without this tag on its GenAI overview.
                exp_id = calls.call(store.client.create_experiment, name, artifact_location=location, tags=tags)
            except MlflowException as exc:
                if calls.error_code(exc) == "RESOURCE_ALREADY_EXISTS":
                    raise ExpAlreadyExistError(f"Experiment {name!r} exists already.") from exc
                raise
        return self.experiment_class(exp_id, name, store.uri, store=store)

    def _get_exp(
        self,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        uri: str | None = None,
        cached: bool = False,
    ) -> MLflowExperiment:
        if experiment_id is None and experiment_name is None:
            raise ExperimentNotFoundError("Give experiment_id or experiment_name to look an experiment up.")
        store = self.store(uri)
        key = (store.uri, experiment_id, experiment_name)
        if cached and key in self._exp_cache:
            exp_id, name = self._exp_cache[key]
            if _still_named(store, exp_id, name):
                return self.experiment_class(exp_id, name, store.uri, store=store)
            del self._exp_cache[key]  # renamed or deleted meanwhile: look it up again
        exp = self._lookup_exp(store, experiment_id, experiment_name)
        self._exp_cache[key] = (exp.id, exp.name)
        return exp

    def _forget_exp(self, exp: Any) -> bool:
        """Drop ``exp`` from the cache; True (start_exp then looks it up and starts again) only
        when the failure being handled may come from a stale cached experiment.

        Starting again after a store failure (busy past the budget, read-only) or a refused
        value would double the wait and create a second run, so those are not retried.
        """
        stale = [k for k, (exp_id, _) in self._exp_cache.items() if exp_id == exp.id and k[0] == exp.uri]
        for k in stale:
            del self._exp_cache[k]
        handling = sys.exc_info()[1]
        if isinstance(handling, (StoreError, InvalidKeyError, InvalidValueError)):
            return False
        return bool(stale)

    def _lookup_exp(self, store: Store, experiment_id: str | None, experiment_name: str | None) -> MLflowExperiment:
        from .sql import reads

        answered, row = reads.lookup_experiment(store, experiment_id=experiment_id, name=experiment_name)
        if answered:
            if row is None:
                if experiment_id is not None:
                    raise ExperimentNotFoundError(f"No experiment with id {experiment_id!r} in {store.uri}.")
                raise ExperimentNotFoundError(f"No experiment named {experiment_name!r} in {store.uri}.")
            return self._checked_exp(store, row.experiment_id, row.name, row.lifecycle_stage, experiment_id, experiment_name)
        rest = store.rest
        if rest is not None:
            return self._lookup_exp_rest(store, rest, experiment_id, experiment_name)
        from mlflow.exceptions import MlflowException

        if experiment_id is not None:
            try:
                exp = calls.call(store.client.get_experiment, str(experiment_id))
            except MlflowException as exc:
                raise ExperimentNotFoundError(f"No experiment with id {experiment_id!r} in {store.uri}.") from exc
        else:
            found = calls.call(store.client.get_experiment_by_name, experiment_name)
            if found is None:
                raise ExperimentNotFoundError(f"No experiment named {experiment_name!r} in {store.uri}.")
            exp = found
        return self._checked_exp(store, exp.experiment_id, exp.name, exp.lifecycle_stage, experiment_id, experiment_name)

    def _lookup_exp_rest(
        self, store: Store, rest: Any, experiment_id: str | None, experiment_name: str | None
    ) -> MLflowExperiment:
        """``_lookup_exp`` through the light REST calls (the same requests as MLflow's client)."""
        from .rest import is_mlflow_error

        if experiment_id is not None:
            try:
                exp = calls.call(rest.get_experiment, str(experiment_id))
            except Exception as exc:
                if not is_mlflow_error(exc):
                    raise
                raise ExperimentNotFoundError(f"No experiment with id {experiment_id!r} in {store.uri}.") from exc
        else:
            found = calls.call(rest.get_experiment_by_name, experiment_name)
            if found is None:
                raise ExperimentNotFoundError(f"No experiment named {experiment_name!r} in {store.uri}.")
            exp = found
        return self._checked_exp(store, exp.experiment_id, exp.name, exp.lifecycle_stage, experiment_id, experiment_name)

    def _checked_exp(
        self, store: Store, exp_id: str, name: str, stage: str, wanted_id: str | None, wanted_name: str | None
    ) -> MLflowExperiment:
        if wanted_id is not None and wanted_name is not None and name != wanted_name:
            raise ExperimentNotFoundError(f"Experiment id {wanted_id} is named {name!r}, not {wanted_name!r}.")
        if stage == "deleted":
            raise self.deleted_error_class(
                f"Experiment {name!r} (id {exp_id}) is deleted, and MLflow keeps its name "
                "reserved. Restore it (MlflowClient.restore_experiment) or purge deleted experiments with "
                "`qrec gc --purge` to reuse the name."
            )
        return self.experiment_class(str(exp_id), name, store.uri, store=store)

    def list_experiments(self) -> dict[str, Experiment]:
        from .sql import reads

        store = self.store()
        out: dict[str, Experiment] = {}
        fast = reads.list_experiments(store)
        if fast is not None:
            for exp_id, name in fast:
                out[name] = self.experiment_class(exp_id, name, store.uri, store=store)
            return out
        token = None
        while True:
            page = calls.call(store.client.search_experiments, view_type=1, max_results=50_000, page_token=token)
            for exp in page:
                out[exp.name] = self.experiment_class(exp.experiment_id, exp.name, store.uri, store=store)
            token = page.token
            if not token:
                return out

    def delete_exp(self, experiment_id: str | None = None, experiment_name: str | None = None) -> None:
        exp = self._get_exp(experiment_id=experiment_id, experiment_name=experiment_name)
        self._forget_exp(exp)
        calls.call(self.store().client.delete_experiment, exp.id)

    def search_records(self, experiment_ids: Any = None, **kwargs: Any) -> Any:
        store = self.store()
        if experiment_ids is None:
            experiment_ids = [exp.id for exp in self.list_experiments().values()]
        elif isinstance(experiment_ids, (str, int)):
            experiment_ids = [experiment_ids]
        return search_records_frame(store, [str(e) for e in experiment_ids], **kwargs)

    def _experiment_id_of_recorder(self, recorder_id: str, uri: str) -> str:
        return _recorder_by_id(self.store(uri), recorder_id).experiment_id

    def recorder_by_id(self, recorder_id: str) -> MLflowRecorder:
        """Any recorder of the current store by id, whatever its experiment."""
        return _recorder_by_id(self.store(), recorder_id, self.experiment_class.recorder_class)


def _still_named(store: Store, exp_id: str, name: str) -> bool:
    """Cheap check of a cached experiment on SQL stores (one indexed SELECT, 0.09 ms; MLflow's
    get_experiment_by_name 2.9 ms, both measured on an idle SQLite store). Other stores are trusted: starting a recorder in a
    deleted experiment fails there and start_exp looks again."""
    if store.kind not in ("sqlite", "postgresql"):
        return True
    from .sql import reads

    answered, row = reads.lookup_experiment(store, experiment_id=exp_id)
    if not answered:
        return False  # any doubt: look the experiment up the normal way
    return row is not None and row.name == name and row.lifecycle_stage == "active"


def _slug(name: str, limit: int = 100) -> str:
    """A folder name for an experiment's artifacts (runs below it have unique ids)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"
    return slug[:limit].rstrip("._") or "experiment"


# MLflow's columns: experiments.artifact_location String(256), runs.artifact_uri String(200),
# and a run's URI is the location + "/<32-hex run id>/artifacts".
MAX_RUN_ARTIFACT_URI = 200
_RUN_SUFFIX = len("/") + 32 + len("/artifacts")


def _artifact_location(store: Store, name: str) -> str | None:
    """Where the experiment's runs keep artifacts, short enough for MLflow's columns.

    The folder name is shortened (down to 16 characters) so that every run's artifact URI fits
    200 characters; PostgreSQL refuses longer ones (SQLite would keep them)."""
    root = store.artifact_root
    if root is None:
        return None

    def build(slug: str) -> str:
        return (Path(root) / slug).as_uri() if "://" not in root else f"{root}/{slug}"

    limit = 100
    location = build(_slug(name, limit))
    while len(location) + _RUN_SUFFIX > MAX_RUN_ARTIFACT_URI and limit > 16:
        limit -= 1
        location = build(_slug(name, limit))
    if len(location) + _RUN_SUFFIX > MAX_RUN_ARTIFACT_URI and store.kind not in ("sqlite", "file"):
        raise StoreError(
            f"The artifact root {root!r} is too long: a run's artifact URI ({len(location) + _RUN_SUFFIX} characters "
            f"here) must fit MLflow's {MAX_RUN_ARTIFACT_URI}-character column in {store.kind}. Set "
            "QRECORDER_ARTIFACT_ROOT to a shorter path."
        )
    return location
