"""Run cells in a worker process: ``python -m qrecorder.runner.worker`` reads JSON tasks on stdin.

Why a long-lived worker speaking JSON lines: imports (MLflow, LightGBM, scikit-learn) are paid
once per worker instead of once per cell; the same protocol works for a per-model venv's
python; and the parent controls signals (workers live in their own session, so a terminal's
Ctrl-C reaches only the parent, which forwards exactly one SIGINT to each busy worker).

Protocol (the messages are in runner/messages.py): out ``ready`` once; then one task per line in,
and per task ``started`` (when its recorder exists) and ``done`` out. The model's own prints go
to stderr (the worker log). A malformed task line ends the worker with the reason in its log.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from qrecorder import tags
from qrecorder.errors import WorkerProtocolError
from qrecorder.runner.messages import CellResult, CellStarted, CellTask, WorkerEvent, WorkerReady, dumps


def run_one(task: CellTask, send: Callable[[WorkerEvent], None] | None = None) -> CellResult:
    """Run one cell; never raises for a model failure (KeyboardInterrupt propagates after reporting)."""
    from qrecorder.workflow.run import run_task

    cell = task.cell
    started: dict[str, str] = {}
    t0 = time.perf_counter()

    def on_start(recorder: Any) -> None:
        started["recorder_id"] = recorder.id
        if send is not None:
            send(CellStarted(task.task_id, recorder.id))

    try:
        res = run_task(
            cell.config_path, experiment_name=task.experiment_name, seed=cell.seed, model_name=cell.model,
            uri=task.uri, recorder_name=task.recorder_name,
            tags={tags.BATCH: task.batch, tags.ATTEMPT: task.attempt, tags.DATASET: cell.dataset,
                  tags.PYTHON: sys.executable, **({tags.RAY_NODE: task.ray_node} if task.ray_node else {})},
            on_start=on_start,
        )
        return CellResult(task.task_id, ok=True, recorder_id=str(res["recorder_id"]),
                          experiment_id=str(res["experiment_id"]),
                          metrics={str(k): float(v) for k, v in (res.get("metrics") or {}).items()},
                          fit_seconds=res.get("fit_seconds"), seconds=res.get("seconds"),
                          wall_seconds=time.perf_counter() - t0, pid=os.getpid())
    except KeyboardInterrupt:
        out = CellResult(task.task_id, ok=False, killed=True, recorder_id=started.get("recorder_id"),
                         error="interrupted", wall_seconds=time.perf_counter() - t0, pid=os.getpid())
        if send is not None:
            send(out)
        raise
    except BaseException as exc:  # noqa: BLE001 - a failing model must not stop the batch
        from qrecorder.errors import TerminatedBySignal

        return CellResult(task.task_id, ok=False, killed=isinstance(exc, TerminatedBySignal),
                          recorder_id=started.get("recorder_id"),
                          error="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                          summary=f"{type(exc).__name__}: {exc}", wall_seconds=time.perf_counter() - t0,
                          pid=os.getpid())


def _prewarm() -> None:
    """Import what every cell needs before the first task arrives (overlaps with the parent's setup)."""
    import importlib

    for name in ("qrecorder.workflow.run", "qrecorder.records", "qrecorder.mlflow.manager", "mlflow",
                 "sklearn.linear_model", "lightgbm"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def main() -> int:
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by models (also from C code) goes to the log, not the protocol
    sys.stdout = sys.stderr

    def send(msg: WorkerEvent) -> None:
        proto.write(dumps(msg))
        proto.flush()

    try:
        _prewarm()
        send(WorkerReady(os.getpid(), sys.executable))
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                task = CellTask.from_wire(json.loads(line))
            except (ValueError, WorkerProtocolError) as exc:  # the parent sees this worker exit, names its log
                raise SystemExit(f"qrecorder worker {os.getpid()}: malformed task line {line[:300]!r}: {exc}") from exc
            send(run_one(task, send))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
