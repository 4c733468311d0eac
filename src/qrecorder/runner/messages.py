"""The messages between the scheduler (batch.py), its executors and the worker processes.

A ``CellTask`` goes to an executor; a ``CellResult`` comes back, exactly one per task. Between
processes they travel as plain JSON-able dicts: one JSON line each on a local worker's stdin and
stdout (runner/worker.py), a task argument and return value with Ray. ``to_wire()`` gives that
dict and ``from_wire()`` checks one on receipt: a malformed message raises
``WorkerProtocolError`` (a ``RunnerError``) that says which field is wrong, never a KeyError
deep in the scheduler.

Wire forms (parent -> worker: a task; worker -> parent: events with an ``"event"`` key)::

    task     {"task_id", "cell": {Cell's fields}, "attempt", "batch", "experiment_name", "uri", "python"}
    ready    {"event": "ready", "pid", "python"}              once, when the worker's imports are done
    started  {"event": "started", "task_id", "recorder_id"}    when the cell's recorder exists
    done     {"event": "done", "task_id", "ok", "killed", "recorder_id", ...CellResult's fields}
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypedDict, TypeVar

from qrecorder.errors import WorkerProtocolError
from qrecorder.runner.cells import Cell

T = TypeVar("T")


def _new_id() -> str:
    return uuid.uuid4().hex


def _field(msg: dict[str, Any], key: str, kind: type[T] | tuple[type, ...], what: str,
           optional: bool = False) -> Any:
    """``msg[key]`` if it has the type ``kind`` (None allowed when ``optional``), else a WorkerProtocolError."""
    if key not in msg:
        if optional:
            return None
        raise WorkerProtocolError(f"{what}: field {key!r} is missing")
    value = msg[key]
    if value is None and optional:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):  # True is no int here
        names = " or ".join(k.__name__ for k in kinds) + (" or null" if optional else "")
        raise WorkerProtocolError(f"{what}: field {key!r} must be {names}, not {type(value).__name__} "
                                  f"{_short(value)}")
    return value


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _mapping(msg: Any, what: str) -> dict[str, Any]:
    if not isinstance(msg, dict):
        raise WorkerProtocolError(f"{what}: expected a JSON object, got {type(msg).__name__} {_short(msg)}")
    return msg


def _number(msg: dict[str, Any], key: str, what: str) -> float | None:
    value = _field(msg, key, (int, float), what, optional=True)
    return None if value is None else float(value)


def cell_from_wire(msg: Any) -> Cell:
    """A ``Cell`` from its wire dict (``Cell.to_dict()``), checked field by field."""
    what = "task.cell"
    msg = _mapping(msg, what)
    return Cell(model=_field(msg, "model", str, what), config_path=_field(msg, "config_path", str, what),
                seed=_field(msg, "seed", int, what), repeat=_field(msg, "repeat", int, what),
                dataset=_field(msg, "dataset", str, what), config_hash=_field(msg, "config_hash", str, what),
                requirements=_field(msg, "requirements", str, what, optional=True))


class ResultRow(TypedDict):
    """A finished cell in ``BatchResult.results`` (a dict: ``qrec run-all --json`` and callers read it so)."""

    model: str
    seed: int
    task_id: str
    recorder_id: str | None
    experiment_id: str | None
    metrics: dict[str, float]
    wall_seconds: float | None
    fit_seconds: float | None
    seconds: float | None
    pid: int | None


class FailureRow(TypedDict):
    """A failed cell in ``BatchResult.failures`` and ``Summary.failures`` (the reports list them)."""

    model: str
    seed: int
    recorder_id: str | None
    summary: str  # one line: "Type: message"
    error: str | None  # the traceback, or why the worker is gone
    attempts: int


@dataclass(frozen=True)
class CellTask:
    """One attempt at one cell, with everything a worker needs (the store URI is explicit)."""

    cell: Cell
    batch: str  # the batch id (tag qrecorder.batch)
    experiment_name: str
    uri: str  # the resolved tracking URI: workers never guess the store
    python: str  # the interpreter to run it with (a model venv's python with --env venv)
    attempt: int = 0  # 0, then 1.. for retries
    task_id: str = field(default_factory=_new_id)  # unique per attempt
    ray_node: str | None = None  # the Ray node the task runs on (set there; tagged qrecorder.ray_node)

    @property
    def recorder_name(self) -> str:
        return f"{self.cell.model}-seed{self.cell.seed}-try{self.attempt}"

    def retry(self) -> CellTask:
        """The next attempt at the same cell (a new task id)."""
        return replace(self, attempt=self.attempt + 1, task_id=_new_id())

    def to_wire(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "cell": self.cell.to_dict(), "attempt": self.attempt, "batch": self.batch,
                "experiment_name": self.experiment_name, "uri": self.uri, "python": self.python,
                **({"ray_node": self.ray_node} if self.ray_node is not None else {})}

    @classmethod
    def from_wire(cls, msg: Any) -> CellTask:
        what = "task"
        msg = _mapping(msg, what)
        attempt = _field(msg, "attempt", int, what)
        if attempt < 0:
            raise WorkerProtocolError(f"task: field 'attempt' must be >= 0, not {attempt}")
        return cls(cell=cell_from_wire(_field(msg, "cell", dict, what)), batch=_field(msg, "batch", str, what),
                   experiment_name=_field(msg, "experiment_name", str, what), uri=_field(msg, "uri", str, what),
                   python=_field(msg, "python", str, what), attempt=attempt, task_id=_field(msg, "task_id", str, what),
                   ray_node=_field(msg, "ray_node", str, what) if msg.get("ray_node") is not None else None)


@dataclass(frozen=True)
class WorkerReady:
    """A worker finished its imports and waits for tasks."""

    pid: int
    python: str

    def to_wire(self) -> dict[str, Any]:
        return {"event": "ready", "pid": self.pid, "python": self.python}


@dataclass(frozen=True)
class CellStarted:
    """A cell's recorder exists (so a worker that dies later still names its run)."""

    task_id: str
    recorder_id: str

    def to_wire(self) -> dict[str, Any]:
        return {"event": "started", "task_id": self.task_id, "recorder_id": self.recorder_id}


@dataclass(frozen=True)
class CellResult:
    """How one task ended: finished (``ok``), failed, or ``killed`` by an interrupt."""

    task_id: str
    ok: bool
    killed: bool = False
    recorder_id: str | None = None
    experiment_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # the run's latest metrics (when ok)
    error: str | None = None  # the traceback (or why the worker is gone)
    summary: str | None = None  # "Type: message", one line
    wall_seconds: float | None = None  # the task in the worker, imports excluded
    fit_seconds: float | None = None
    seconds: float | None = None  # the workflow's own timing (run_task)
    pid: int | None = None  # the worker process

    @property
    def headline(self) -> str:
        """One line for a failure: the summary, else the error's last line."""
        if self.summary:
            return self.summary
        lines = (self.error or "").strip().splitlines()
        return lines[-1] if lines else ""

    def to_wire(self) -> dict[str, Any]:
        return {"event": "done", **asdict(self)}

    @classmethod
    def from_wire(cls, msg: Any) -> CellResult:
        what = "done event"
        msg = _mapping(msg, what)
        metrics = _field(msg, "metrics", dict, what, optional=True) or {}
        for k, v in metrics.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)):
                raise WorkerProtocolError(f"{what}: metrics[{k!r}] must be a number, not {_short(v)}")
        return cls(task_id=_field(msg, "task_id", str, what), ok=_field(msg, "ok", bool, what),
                   killed=bool(_field(msg, "killed", bool, what, optional=True)),
                   recorder_id=_field(msg, "recorder_id", str, what, optional=True),
                   experiment_id=_field(msg, "experiment_id", str, what, optional=True),
                   metrics={k: float(v) for k, v in metrics.items()},
                   error=_field(msg, "error", str, what, optional=True),
                   summary=_field(msg, "summary", str, what, optional=True),
                   wall_seconds=_number(msg, "wall_seconds", what), fit_seconds=_number(msg, "fit_seconds", what),
                   seconds=_number(msg, "seconds", what), pid=_field(msg, "pid", int, what, optional=True))

    def result_row(self, cell: Cell) -> ResultRow:
        """The row of ``BatchResult.results`` for a finished cell."""
        return ResultRow(model=cell.model, seed=cell.seed, task_id=self.task_id, recorder_id=self.recorder_id,
                         experiment_id=self.experiment_id, metrics=dict(self.metrics), wall_seconds=self.wall_seconds,
                         fit_seconds=self.fit_seconds, seconds=self.seconds, pid=self.pid)

    def failure_row(self, cell: Cell, attempts: int) -> FailureRow:
        """The row of ``BatchResult.failures`` (and the reports' failure list) for a failed cell."""
        return FailureRow(model=cell.model, seed=cell.seed, recorder_id=self.recorder_id, summary=self.headline,
                          error=self.error, attempts=attempts)


WorkerEvent = WorkerReady | CellStarted | CellResult


def event_from_wire(line: bytes | str) -> WorkerEvent:
    """One line a worker wrote on its protocol stream, checked."""
    try:
        msg = json.loads(line)
    except ValueError as exc:  # also UnicodeDecodeError
        raise WorkerProtocolError(f"not a JSON line ({exc}): {_short(line)}") from None
    msg = _mapping(msg, "worker message")
    kind = msg.get("event")
    if kind == "done":
        return CellResult.from_wire(msg)
    if kind == "started":
        return CellStarted(task_id=_field(msg, "task_id", str, "started event"),
                           recorder_id=_field(msg, "recorder_id", str, "started event"))
    if kind == "ready":
        return WorkerReady(pid=_field(msg, "pid", int, "ready event"), python=_field(msg, "python", str, "ready event"))
    raise WorkerProtocolError(f"unknown event {_short(kind)} (expected 'ready', 'started' or 'done'): {_short(msg)}")


def dumps(msg: CellTask | WorkerEvent) -> bytes:
    """One wire line (a NaN metric is kept: Python's json reads ``NaN`` back)."""
    return (json.dumps(msg.to_wire()) + "\n").encode()


__all__ = ["CellResult", "CellStarted", "CellTask", "FailureRow", "ResultRow", "WorkerEvent", "WorkerReady", "cell_from_wire", "dumps",
           "event_from_wire"]
