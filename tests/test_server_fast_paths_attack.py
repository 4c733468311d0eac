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


def test_concurrent_batches_with_shuffled_keys_do_not_deadlock(fast: Target) -> None:  # noqa: F811
    """Batches to one run naming the same new keys in different orders, at once.

    The fast path's upserts took their row locks in the batch's order, so two such batches
    deadlocked on PostgreSQL: the loser was declined and MLflow's handler, now racing the
    fast path's transactions, answered some with a 503 (deadlock detected). MLflow itself
    sorts the keys it locks."""
    import random
    import threading

    run_id = fast.new_run(_experiment(fast))
    answers: list[tuple[int, str | None]] = []

    def send(seed: int) -> None:
        rnd, session = random.Random(seed), requests.Session()
        for i in range(10):
            keys = [f"k{j}" for j in range(40)]
            rnd.shuffle(keys)
            body = {"run_id": run_id, "metrics": [{"key": k, "value": rnd.random(), "timestamp": i, "step": i} for k in keys],
                    "tags": [{"key": f"t{j}", "value": str(seed)} for j in rnd.sample(range(10), 10)],
                    "params": [{"key": f"p{j}", "value": "same"} for j in rnd.sample(range(10), 10)]}
            r = session.post(fast.srv.url + API + "runs/log-batch", json=body, timeout=120)
            answers.append((r.status_code, r.headers.get(FAST_PATH_HEADER)))

    threads = [threading.Thread(target=send, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [(200, "1")] * 80
    rows = fast.rows(run_id)
    assert len(rows["metrics"]) == 8 * 10 * 40 and len(rows["latest_metrics"]) == 40 and len(rows["params"]) == 10
