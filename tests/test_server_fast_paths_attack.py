"""Requests where ``qrec server``'s fast paths once answered differently from MLflow.

Each case is sent, as raw bytes with its own headers, to a fast server and to a plain one
(fixtures of test_server_fast_paths); the answers (status, error code, body) and the rows
left in MLflow's tables must be the same.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from test_server_fast_paths import API, FAST_PATH_HEADER, Target, _answer, _experiment, fast, plain  # noqa: F401

from qrecorder.server import ServerConfig, ServerProcess, free_port

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


class SqliteTarget(Target):
    """A server on a SQLite file; the same rows read with sqlite3."""

    def rows(self, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
        con = sqlite3.connect(self.db.removeprefix("sqlite:///"))
        try:
            out = {}
            for table, cols in (("metrics", "key, value, timestamp, step, is_nan"),
                                ("latest_metrics", "key, value, timestamp, step, is_nan"),
                                ("params", "key, value"), ("tags", "key, value")):
                found = con.execute(f"SELECT {cols} FROM {table} WHERE run_uuid = ? ORDER BY {cols}", (run_id,))  # noqa: S608
                out[table] = [tuple(bool(x) if c.strip() == "is_nan" else x for c, x in zip(cols.split(","), row, strict=True))
                              for row in found.fetchall()]
            out["runs"] = con.execute("SELECT status, end_time, lifecycle_stage, name FROM runs WHERE run_uuid = ?",
                                      (run_id,)).fetchall()
            return out
        finally:
            con.close()


def _start_sqlite(folder: Any, **cfg: Any) -> Iterator[Target]:
    db = f"sqlite:///{folder / 'mlflow.db'}"
    srv = ServerProcess(ServerConfig(backend_store_uri=db, artifacts_destination=str(folder / "artifacts"),
                                     port=free_port(), workers=1, **cfg), log_path=folder / "server.log").start()
    try:
        yield SqliteTarget(srv, db)
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def fast_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from _start_sqlite(tmp_path_factory.mktemp("fast_sqlite"))


@pytest.fixture(scope="module")
def plain_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from _start_sqlite(tmp_path_factory.mktemp("plain_sqlite"), fast_paths=False)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
@pytest.mark.parametrize(("path", "body", "headers"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_same_answer_and_rows_as_mlflow(request: pytest.FixtureRequest, backend: str, path: str, body: str,
                                        headers: dict[str, str]) -> None:
    suffix = "_sqlite" if backend == "sqlite" else ""
    targets = tuple(request.getfixturevalue(name + suffix) for name in ("fast", "plain"))
    answers, rows = {}, {}
    for t in targets:
        run_id = t.new_run(_experiment(t))
        r = _raw(t, path, body, headers, run_id)
        answer = _answer(r, run_id)
        if isinstance(answer[1], dict):
            answer = (answer[0], json.dumps(answer[1], sort_keys=True))
        answers[t], rows[t] = answer, t.rows(run_id)
    assert answers[targets[0]] == answers[targets[1]]  # fast, plain
    assert rows[targets[0]] == rows[targets[1]]


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

