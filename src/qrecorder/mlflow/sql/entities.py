"""Light run entities: what the direct read paths return where MLflow's need not be imported.

``mlflow.entities`` costs ~1.7 s to import (it pulls MLflow's whole package). Recorders only
read attributes of a run (``info.run_id``, ``info.status``, ``data.tags`` ...), so a listing
or a lookup in a fresh process builds these look-alikes instead: the same attribute names and
values as MLflow's ``Run``/``RunInfo``/``RunData`` (compared in tests/test_fastread.py).
``to_mlflow()`` converts one to MLflow's own entity when a caller needs that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LightRunInfo:
    run_id: str
    experiment_id: str
    user_id: str | None
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str | None
    run_name: str | None


@dataclass
class LightMetric:
    key: str
    value: float
    timestamp: int
    step: int


@dataclass
class LightRunData:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metric_objs: list[LightMetric] = field(default_factory=list)


class LightRun:
    """``mlflow.entities.Run``'s attributes; ``data`` may be read on first use (for its batch)."""

    inputs = None
    outputs = None

    def __init__(self, info: LightRunInfo, data: LightRunData | None = None) -> None:
        self._info = info
        self._data = data
        self._batch: Any = None

    @property
    def info(self) -> LightRunInfo:
        return self._info

    @property
    def data(self) -> LightRunData:
        batch = self._batch
        if batch is not None:
            batch.load()
        assert self._data is not None
        return self._data

    def __reduce__(self) -> Any:
        """Pickles (and deep-copies) with its data read: the batch holds the store's connections."""
        return (LightRun, (self._info, self.data))

    def __repr__(self) -> str:
        return f"<LightRun: run_id={self._info.run_id!r}, status={self._info.status!r}>"

    def to_mlflow(self) -> Any:
        """The same run as MLflow's ``Run`` entity (imports MLflow)."""
        from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunInputs, RunOutputs, RunTag

        i, d = self.info, self.data
        info = RunInfo(i.run_id, i.experiment_id, i.user_id, i.status, i.start_time, i.end_time,  # type: ignore[arg-type]
                       i.lifecycle_stage, i.artifact_uri, i.run_name)
        data = RunData(
            metrics=[Metric(m.key, m.value, m.timestamp, m.step) for m in d.metric_objs],
            params=[Param(k, v) for k, v in d.params.items()],
            tags=[RunTag(k, v) for k, v in d.tags.items()],
        )
        return Run(info, data, RunInputs([]), RunOutputs([]))
