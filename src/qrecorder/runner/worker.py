"""Run cells in a worker process: ``python -m qrecorder.runner.worker`` reads JSON tasks on stdin.

Why a long-lived worker speaking JSON lines: imports (MLflow, LightGBM, scikit-learn) are paid
once per worker instead of once per cell; the same protocol works for a per-model venv's
python; and the parent controls signals (workers live in their own session, so a terminal's
Ctrl-C reaches only the parent, which forwards exactly one SIGINT to each busy worker).

Protocol: one task per line in; out, ``{"event": "started", "recorder_id": ...}`` then
``{"event": "done", "ok": ..., ...}``. The model's own prints go to stderr (the worker log).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from qrecorder.runner.cells import T_ATTEMPT, T_BATCH, T_DATASET


def run_one(task: dict[str, Any], send: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run one cell; never raises for a model failure (KeyboardInterrupt propagates after reporting)."""
    from qrecorder.workflow.run import run_task

    cell, started = task["cell"], {}
    t0 = time.perf_counter()

    def on_start(recorder: Any) -> None:
        started["recorder_id"] = recorder.id
        if send is not None:
            send({"event": "started", "task_id": task["task_id"], "recorder_id": recorder.id})

    base = {"event": "done", "task_id": task["task_id"], "pid": os.getpid()}
    try:
        res = run_task(
            cell["config_path"], experiment_name=task["experiment_name"], seed=cell["seed"], model_name=cell["model"],
            uri=task["uri"], recorder_name=f"{cell['model']}-seed{cell['seed']}-try{task['attempt']}",
            tags={T_BATCH: task["batch"], T_ATTEMPT: task["attempt"], T_DATASET: cell["dataset"],
                  "qrecorder.python": sys.executable, **({"qrecorder.ray_node": task["ray_node"]} if "ray_node" in task else {})},
            on_start=on_start,
        )
        return {**base, "ok": True, **res, "wall_seconds": time.perf_counter() - t0}
    except KeyboardInterrupt:
        out = {**base, "ok": False, "killed": True, "recorder_id": started.get("recorder_id"), "error": "interrupted"}
        if send is not None:
            send(out)
        raise
    except BaseException as exc:  # noqa: BLE001 - a failing model must not stop the batch
        from qrecorder.errors import TerminatedBySignal

        killed = isinstance(exc, TerminatedBySignal)
        return {**base, "ok": False, "killed": killed, "recorder_id": started.get("recorder_id"),
                "error": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                "summary": f"{type(exc).__name__}: {exc}", "wall_seconds": time.perf_counter() - t0}


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
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed by models (also from C code) goes to the log, not the protocol
    sys.stdout = sys.stderr

    def send(msg: dict[str, Any]) -> None:
        proto.write(json.dumps(msg, default=str) + "\n")
        proto.flush()

    try:
        _prewarm()
        send({"event": "ready", "pid": os.getpid(), "python": sys.executable})
        for line in sys.stdin:
            if not line.strip():
                continue
            send(run_one(json.loads(line), send))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
