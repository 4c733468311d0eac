"""Requests where ``qrec server``'s fast paths once answered differently from MLflow.

Each case is sent, as raw bytes with its own headers, to a fast server and to a plain one
(fixtures of test_server_fast_paths); the answers (status, error code, body) and the rows
left in MLflow's tables must be the same.
"""

from __future__ import annotations

import json

import pytest
import requests
from test_server_fast_paths import API, FAST_PATH_HEADER, Target, _answer, _experiment, fast, plain  # noqa: F401

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

JSON = {"Content-Type": "application/json"}
_BATCH = '{"run_id": "$RUN", "metrics": [{"key": "k", "value": 1.5, "timestamp": 1, "step": 0}]}'

# (id, path, raw body with $RUN for the run id, headers)
CASES: list[tuple[str, str, str, dict[str, str]]] = [
    # JSON's bare NaN / 1e400 literals: Python's parser takes them, MLflow's proto parser does not
    ("nan-literal", "runs/log-batch",
     '{"run_id": "$RUN", "metrics": [{"key": "a", "value": 1, "timestamp": 1}, '
     '{"key": "k", "value": NaN, "timestamp": 1}, {"key": "z", "value": 2, "timestamp": 1}]}', JSON),
    ("inf-literal", "runs/log-batch", '{"run_id": "$RUN", "metrics": [{"key": "k", "value": 1e400, "timestamp": 1}]}',
     JSON),
    ("-inf-literal", "runs/log-batch", '{"run_id": "$RUN", "metrics": [{"key": "k", "value": -1e400, "timestamp": 1}]}',
     JSON),
    # MLflow accepts exactly application/json (parameters aside); Flask's is_json more
    ("content-type+json", "runs/log-batch", _BATCH, {"Content-Type": "application/vnd.api+json"}),
    ("content-type-upper", "runs/log-batch", _BATCH, {"Content-Type": "Application/JSON"}),
    ("content-type-space", "runs/log-batch", _BATCH, {"Content-Type": "application/json ; charset=utf-8"}),
    ("content-type-update", "runs/update", '{"run_id": "$RUN", "status": "KILLED"}',
     {"Content-Type": "application/merge-patch+json"}),
    # run_id present but empty / not a string: MLflow refuses, even with a valid run_uuid
    ("update-empty-run-id", "runs/update", '{"run_id": "", "run_uuid": "$RUN", "status": "KILLED"}', JSON),
    ("update-zero-run-id", "runs/update", '{"run_id": 0, "run_uuid": "$RUN", "status": "KILLED"}', JSON),
    ("update-false-run-id", "runs/update", '{"run_id": false, "run_uuid": "$RUN", "status": "KILLED"}', JSON),
    # still the same: null run_id falls back on run_uuid, as in MLflow
    ("update-null-run-id", "runs/update", '{"run_id": null, "run_uuid": "$RUN", "status": "KILLED"}', JSON),
    ("update-bad-run-uuid", "runs/update", '{"run_id": "$RUN", "run_uuid": 5, "status": "KILLED", "end_time": 3}', JSON),
]


def _raw(t: Target, path: str, body: str, headers: dict[str, str], run_id: str) -> requests.Response:
    return t.session.post(t.srv.url + API + path, data=body.replace("$RUN", run_id).encode(), headers=headers,
                          timeout=60)


@pytest.mark.parametrize(("path", "body", "headers"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_same_answer_and_rows_as_mlflow(fast: Target, plain: Target, path: str, body: str,  # noqa: F811
                                        headers: dict[str, str]) -> None:
    answers, rows = {}, {}
    for t in (fast, plain):
        run_id = t.new_run(_experiment(t))
        r = _raw(t, path, body, headers, run_id)
        answer = _answer(r, run_id)
        if isinstance(answer[1], dict):
            answer = (answer[0], json.dumps(answer[1], sort_keys=True))
        answers[t], rows[t] = answer, t.rows(run_id)
    assert answers[fast] == answers[plain]
    assert rows[fast] == rows[plain]
