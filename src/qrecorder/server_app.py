"""The app ``qrec server`` serves: MLflow's own tracking server, plus two fast paths.

Why: through MLflow's server a 1,000-value ``runs/log-batch`` costs ~150 ms of ORM work
(one SQLAlchemy object per value), so 10,000 values took ~1.5 s to become durable, and each
run's ``log-batch`` and ``runs/update`` cost 10-17 ms of the ~40 ms a short run pays. The
direct SQL layer (:mod:`qrecorder.mlflow.sql`) writes the same rows in a few milliseconds.

This module is an MLflow app (the ``mlflow.app`` entry point ``qrecorder``; ``qrec server``
runs ``mlflow server --app-name qrecorder``). It takes MLflow's Flask app as it is -- with
MLflow's basic auth when ``QRECORDER_SERVER_AUTH=1`` -- and adds one ``before_request`` hook,
registered after auth's, so permission checks run first. The hook answers only:

- ``POST .../mlflow/runs/log-batch`` of plain metrics, params and tags (no ``mlflow.*`` tags,
  no model or dataset metrics);
- ``POST .../mlflow/runs/update`` setting status and/or end time (no rename),

and only when the schema guard allows direct SQL on the backend (SQLite or PostgreSQL, a
verified revision). The request is validated by MLflow's own validators, then written in one
transaction. Anything else -- another shape, a validation error, a deleted run, a changed
param, a database error -- is handed, untouched, to MLflow's handler, which then gives
MLflow's own answer (the transaction left nothing behind). ``QRECORDER_SERVER_FAST_PATHS=0``
turns the hook off.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from typing import Any

logger = logging.getLogger("qrecorder")

ENV_AUTH = "QRECORDER_SERVER_AUTH"
ENV_FAST_PATHS = "QRECORDER_SERVER_FAST_PATHS"
_RUN_STATUSES = frozenset({"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"})
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_UNSET: Any = object()


def create_app() -> Any:
    """MLflow's server app (with basic auth when asked) and qrecorder's fast paths."""
    from mlflow.server import app as flask_app

    served: Any = flask_app
    if os.environ.get(ENV_AUTH) == "1":
        from mlflow.server.auth import create_app as create_auth_app

        served = create_auth_app(flask_app)  # registers auth's before_request first
    # Not in `--artifacts-only` mode: there MLflow's tracking handlers answer 503 (no store).
    if os.environ.get(ENV_FAST_PATHS, "1") != "0" and not os.environ.get("_MLFLOW_SERVER_ARTIFACTS_ONLY"):
        FastPaths().install(flask_app)
    if served is flask_app and os.environ.get("_MLFLOW_SGI_NAME") == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        served = create_fastapi_app(flask_app)
    return served


class FastPaths:
    """The ``before_request`` hook: direct SQL for plain log-batch and update-run requests."""

    def __init__(self) -> None:
        self._sink: Any = _UNSET  # SqlBatchSink, None (not allowed), decided at the first request
        self._lock = threading.Lock()
        self._answers = {"_log_batch": self._log_batch, "_update_run": self._update_run}  # MLflow's view names

    def install(self, flask_app: Any) -> None:
        flask_app.before_request(self.handle)

    def handle(self) -> Any:
        from flask import request

        # Only a request Flask routed to MLflow's own view (its endpoint is the handler's name):
        # before_request hooks also run for paths no route matches, which auth does not guard.
        if request.method != "POST" or request.url_rule is None:
            return None
        answer = self._answers.get(request.endpoint or "")
        if answer is None:
            return None
        # MLflow's handlers take exactly application/json (parameters aside, no case folding);
        # Flask's get_json also takes application/*+json: MLflow refuses those with a 400.
        if (request.content_type or "").split(";")[0] != "application/json":
            return None
        sink = self.sink()
        if sink is None:
            return None
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return None
        try:
            return answer(sink, body)
        except Exception as exc:  # noqa: BLE001 - MLflow's handler answers instead (nothing was written)
            logger.debug("qrecorder fast path declined %s: %s: %s", request.path, type(exc).__name__, exc)
            return None

    def sink(self) -> Any:
        if self._sink is _UNSET:
            with self._lock:
                if self._sink is _UNSET:
                    self._sink = _open_sink()
        return self._sink

    # ------------------------------------------------------------------ runs/log-batch
    def _log_batch(self, sink: Any, body: dict[str, Any]) -> Any:
        parsed = parse_log_batch(body)
        if parsed is None:
            return None
        run_id, metrics, params, tags = parsed
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.utils import validation

        validation._validate_batch_log_api_req(body)  # as MLflow's handler calls it
        validation._validate_run_id(run_id)
        m = [Metric(k, v, ts, step) for k, v, ts, step in metrics]
        p = [Param(k, v) for k, v in params]
        t = [RunTag(k, v) for k, v in tags]
        checked = validation._validate_batch_log_data(m, p, t)
        if checked is not None:  # MLflow 3.x returns the (possibly truncated) entities
            m, p, t = checked
        validation._validate_batch_log_limits(m, p, t)
        validation._validate_param_keys_unique(p)
        sink.log_batch(
            run_id,
            [(x.key, x.value, x.timestamp, x.step) for x in m],
            [(x.key, x.value) for x in p],
            [(x.key, x.value) for x in t],
        )
        return _json_response("{}")

    # ------------------------------------------------------------------ runs/update
    def _update_run(self, sink: Any, body: dict[str, Any]) -> Any:
        parsed = parse_update_run(body)
        if parsed is None:
            return None
        run_id, status, end_time = parsed
        from mlflow.entities import RunInfo
        from mlflow.protos.service_pb2 import UpdateRun
        from mlflow.utils import validation
        from mlflow.utils.proto_json_utils import message_to_json

        validation._validate_run_id(run_id)
        row = sink.update_run_info(run_id, status, end_time)
        info = RunInfo(
            run_id=row[0], experiment_id=str(row[1]), user_id=row[2], status=row[3], start_time=row[4],
            end_time=row[5], lifecycle_stage=row[6], artifact_uri=row[7], run_name=row[8],
        )
        return _json_response(message_to_json(UpdateRun.Response(run_info=info.to_proto())))


FAST_PATH_HEADER = "X-Qrecorder-Fast-Path"


def _json_response(text: str) -> Any:
    from flask import Response

    # The header says which answers came from the fast path (tests, and operators reading logs).
    return Response(text, mimetype="application/json", headers={FAST_PATH_HEADER: "1"})


def _open_sink() -> Any:
    """The direct-SQL sink on the server's backend store, or None (MLflow answers everything)."""
    try:
        from mlflow.server.handlers import _get_tracking_store

        from .mlflow.sql.db import database_for_sql_store
        from .mlflow.sql.writes import SqlBatchSink

        return SqlBatchSink.for_database(database_for_sql_store(_get_tracking_store()))
    except Exception as exc:  # noqa: BLE001 - any surprise: MLflow's handlers do all the work
        logger.warning("qrecorder: the server's fast paths are off (%s: %s); MLflow answers every request",
                       type(exc).__name__, exc)
        return None


# ---------------------------------------------------------------------- request parsing
def _number(value: Any) -> float | None:
    if type(value) is float:
        # A bare NaN or 1e400 literal (Python's JSON parser takes them) fails MLflow's proto
        # parsing, which then logs a partly parsed batch: only MLflow can give that answer.
        return value if math.isfinite(value) else None
    if type(value) is int:
        return float(value)
    if isinstance(value, str):
        return _SPECIAL_FLOATS.get(value)
    return None


def _int64(value: Any, default: int | None = None) -> int | None:
    if value is None:
        return default
    if type(value) is int:
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def parse_log_batch(
    body: dict[str, Any],
) -> tuple[str, list[tuple[str, float, int, int]], list[tuple[str, str]], list[tuple[str, str]]] | None:
    """(run_id, metrics, params, tags) of a plain log-batch body, or None for any other shape."""
    if not set(body) <= {"run_id", "metrics", "params", "tags"}:
        return None
    run_id = body.get("run_id")
    metrics_in, params_in, tags_in = body.get("metrics", []), body.get("params", []), body.get("tags", [])
    if not isinstance(run_id, str) or not all(isinstance(x, list) for x in (metrics_in, params_in, tags_in)):
        return None
    metrics = []
    for item in metrics_in:
        if not isinstance(item, dict) or not set(item) <= {"key", "value", "timestamp", "step"}:
            return None  # model_id, dataset_*, run_id: MLflow's handler
        key, value = item.get("key"), _number(item.get("value"))
        timestamp, step = _int64(item.get("timestamp")), _int64(item.get("step"), 0)
        if not isinstance(key, str) or value is None or timestamp is None or step is None:
            return None
        metrics.append((key, value, timestamp, step))
    pairs = []
    for items in (params_in, tags_in):
        out = []
        for item in items:
            if not isinstance(item, dict) or set(item) != {"key", "value"}:
                return None
            key, value = item["key"], item["value"]
            if not isinstance(key, str) or not isinstance(value, str):
                return None
            out.append((key, value))
        pairs.append(out)
    params, tags = pairs
    if any(key.startswith("mlflow.") for key, _ in tags):
        return None  # mlflow.runName renames the run, and the like: MLflow's handler
    return run_id, metrics, params, tags


def parse_update_run(body: dict[str, Any]) -> tuple[str, str | None, int | None] | None:
    """(run_id, status, end_time) of an update-run body without a rename, or None."""
    if not set(body) <= {"run_id", "run_uuid", "status", "end_time"}:
        return None
    # As MLflow's handler: run_uuid only when run_id is absent or null; an empty or non-string
    # run_id is refused there (400) even beside a valid run_uuid, and a non-string run_uuid
    # fails its proto parsing.
    run_id = body.get("run_id")
    if run_id is None:
        run_id = body.get("run_uuid")
    elif not isinstance(body.get("run_uuid", ""), str):
        return None
    if not isinstance(run_id, str) or not run_id:
        return None
    status = body.get("status")
    end_time = _int64(body.get("end_time"))
    if status is not None and status not in _RUN_STATUSES:
        return None
    if body.get("end_time") is not None and end_time is None:
        return None
    if status is None and end_time is None:
        return None
    return run_id, status, end_time
