"""MLflowExperiment: an MLflow experiment seen through the Experiment model."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import RecorderNotFoundError
from ..experiment import Experiment
from ..recorder import Recorder
from . import calls, query
from .recorder import MLflowRecorder
from .store import Store, get_store

logger = logging.getLogger("qrecorder")


class MLflowExperiment(Experiment):
    UNLIMITED = None  # qrecorder pages past MLflow's 50,000 cap; None means every run
    recorder_class: type[MLflowRecorder] = MLflowRecorder  # what recorders of this experiment are made as

    def __init__(self, id: str, name: str, uri: str, *, store: Store | None = None) -> None:  # noqa: A002
        super().__init__(id, name)
        self._store = store or get_store(uri)
        self._uri = self._store.uri
        self._default_rec_name = "mlflow_recorder"

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def client(self) -> Any:
        """MLflow's client for this store; values this process queued are written first."""
        self._store.sync()
        return self._store.client

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as (id, name, store uri)."""
        return (type(self), (self.id, self.name, self._uri))

    def create_recorder(self, recorder_name: str | None = None) -> MLflowRecorder:
        """A new, not yet started recorder (it gets its id when started)."""
        return self.recorder_class(self.id, self._uri, recorder_name or self._default_rec_name, store=self._store)

    def _get_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None) -> MLflowRecorder:
        """By id, or the most recently started recorder named ``recorder_name`` (server-side
        filter, one row; Qlib listed every run of the experiment to find it)."""
        if recorder_id is None and recorder_name is None:
            raise RecorderNotFoundError("Give recorder_id or recorder_name to look a recorder up.")
        if recorder_id is not None:
            recorder = _recorder_by_id(self._store, recorder_id, self.recorder_class)
            if recorder.experiment_id != self.id:
                raise RecorderNotFoundError(
                    f"Recorder {recorder_id} belongs to experiment id {recorder.experiment_id}, not to "
                    f"{self.name!r} (id {self.id}); pass that experiment or none."
                )
            return recorder
        assert recorder_name is not None
        runs = query.search_runs(
            self._store,
            [self.id],
            filter_string=f"attributes.run_name = {query.quote(recorder_name)}",
            max_results=1,
            order_by=["attributes.start_time DESC"],
            light=True,
        )
        if not runs:
            raise RecorderNotFoundError(f"No recorder named {recorder_name!r} in experiment {self.name!r} (id {self.id}).")
        return self.recorder_class(self.id, self._uri, mlflow_run=runs[0], store=self._store)

    def _recorders(self, max_results: int | None, status: str | None, filter_string: str) -> list[Recorder]:
        """Server-side filter and order; light runs (no MLflow import on SQLite)."""
        flt = filter_string
        if status is not None:
            clause = f"attributes.status = '{status}'"
            flt = f"{flt} and {clause}" if flt else clause
        runs = query.search_runs(self._store, [self.id], filter_string=flt, max_results=max_results, light=True)
        return [self.recorder_class(self.id, self._uri, mlflow_run=run, store=self._store) for run in runs]

    def search_records(self, **kwargs: Any) -> Any:
        """A DataFrame of this experiment's runs (see ``R.search_records``)."""
        return query.search_records_frame(self._store, [self.id], **kwargs)

    def delete_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None) -> None:
        if recorder_id is None:
            recorder_id = self._get_recorder(recorder_name=recorder_name).id
        else:
            self._get_recorder(recorder_id=recorder_id)
        calls.call(self._store.client.delete_run, recorder_id)


def _recorder_by_id(store: Store, recorder_id: str, recorder_class: type[MLflowRecorder] = MLflowRecorder) -> MLflowRecorder:
    from .sql import reads

    store.sync()
    run = reads.get_run(store, str(recorder_id), light=True)
    if run is None:  # not there, or not for the direct path: MLflow's answer (or error)
        from mlflow.exceptions import MlflowException

        try:
            run = calls.call(store.client.get_run, str(recorder_id))
        except MlflowException as exc:
            raise RecorderNotFoundError(f"No recorder with id {recorder_id!r} in {store.uri}.") from exc
    if run.info.lifecycle_stage == "deleted":
        raise RecorderNotFoundError(f"Recorder {recorder_id} is deleted.")
    return recorder_class(run.info.experiment_id, store.uri, mlflow_run=run, store=store)
