"""The batched writer: limits, retries of transient failures, failures raised to the caller."""

from __future__ import annotations

import threading
import time

import pytest

from qrecorder import LoggingFailedError
from qrecorder.mlflow.writer import BatchWriter


class RecordingClient:
    """Stands in for MlflowClient.log_batch only, to observe the writer's calls."""

    def __init__(self, fail_times: int = 0, error: Exception | None = None, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, int, int, int]] = []
        self.fail_times = fail_times
        self.error = error or RuntimeError("database is locked")
        self.delay = delay
        self.lock = threading.Lock()

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=True):
        time.sleep(self.delay)
        with self.lock:
            if self.fail_times > 0:
                self.fail_times -= 1
                raise self.error
            self.calls.append((run_id, len(metrics), len(params), len(tags)))


def test_batches_respect_mlflow_limits():
    client = RecordingClient()
    writer = BatchWriter(client, flush_interval=5.0)
    writer.submit("r", "p", [(f"p{i}", "v") for i in range(250)], 250)
    for step in range(2500):
        writer.submit("r", "m", ([("a", 1.0), ("b", 2.0)], step, 1), 2)
    writer.flush("r", timeout=30)
    assert sum(c[1] for c in client.calls) == 5000 and sum(c[2] for c in client.calls) == 250
    for _, m, p, t in client.calls:
        assert m <= 1000 and p <= 100 and t <= 100 and m + p + t <= 1000
    writer.close()


def test_transient_failures_are_retried():
    client = RecordingClient(fail_times=3)
    writer = BatchWriter(client, flush_interval=0.01)
    writer.submit("r", "m", ([("a", 1.0)], 0, 1), 1)
    writer.flush("r", timeout=30)
    assert client.calls == [("r", 1, 0, 0)]
    writer.close()


def test_permanent_failure_reaches_the_caller_once():
    client = RecordingClient(fail_times=1, error=ValueError("Run 'r' must be active"))
    writer = BatchWriter(client, flush_interval=0.01)
    writer.submit("r", "m", ([("a", 1.0)], 0, 1), 1)
    with pytest.raises(LoggingFailedError, match="must be active"):
        writer.flush("r", timeout=30)
    writer.submit("r", "m", ([("a", 2.0)], 1, 1), 1)  # reported once; later values go through
    writer.flush("r", timeout=30)
    assert client.calls == [("r", 1, 0, 0)]
    writer.close()


def test_failure_of_one_run_does_not_touch_another():
    client = RecordingClient(fail_times=1, error=ValueError("boom"))
    writer = BatchWriter(client, flush_interval=0.2)
    writer.submit("bad", "m", ([("a", 1.0)], 0, 1), 1)
    writer.submit("good", "m", ([("a", 1.0)], 0, 1), 1)
    writer.flush("good", timeout=30)
    assert ("good", 1, 0, 0) in client.calls
    with pytest.raises(LoggingFailedError):
        writer.submit("bad", "m", ([("a", 1.0)], 1, 1), 1)
    writer.close()


def test_backpressure_bounds_memory():
    client = RecordingClient(delay=0.05)
    writer = BatchWriter(client, flush_interval=0.01, max_pending=100, high_watermark=50)
    peak = 0
    for step in range(1000):
        writer.submit("r", "m", ([("a", 1.0)], step, 1), 1)
        peak = max(peak, writer._pending_count)
    writer.flush("r", timeout=60)
    assert peak <= 100
    assert sum(c[1] for c in client.calls) == 1000
    writer.close()


def test_deleted_run_surfaces_at_end_run(R):
    with pytest.raises(LoggingFailedError):
        with R.start(experiment_name="w"):
            rec = R.get_recorder()
            rec.client.delete_run(rec.id)  # another process deletes it under our feet
            R.log_metrics(a=1.0)
    assert rec.status == "FAILED"


def test_forked_child_logs_through_its_own_writer(R):
    import multiprocessing as mp

    with R.start(experiment_name="fork"):
        R.log_metrics(step=0, parent=1.0)
        rid = R.get_recorder().id

        def child() -> None:
            from qrecorder import R as child_r

            rec = child_r.get_recorder(recorder_id=rid)
            rec.log_metrics(step=0, child=2.0)
            rec.flush()

        proc = mp.get_context("fork").Process(target=child)
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0
    assert R.get_recorder(recorder_id=rid).list_metrics() == {"parent": 1.0, "child": 2.0}


def test_forked_child_exit_does_not_end_the_parents_run(store_dir):
    from conftest import run_python

    code = """
import os, sys
from qrecorder import R
with R.start(experiment_name="fork"):
    R.log_metrics(a=1.0)
    pid = os.fork()
    if pid == 0:
        sys.exit(0)  # a normal exit in the child: atexit handlers run there
    os.waitpid(pid, 0)
    print(R.get_recorder().refresh().status)
print(R.get_recorder(recorder_id=R.list_recorders(experiment_name="fork").popitem()[0]).status)
"""
    out = run_python(code, store_dir)
    assert out.stdout.split() == ["RUNNING", "FINISHED"], out.stderr


def test_local_mlflow_errors_are_not_retried():
    from mlflow.exceptions import MlflowException, RestException

    from qrecorder.mlflow.retry import is_transient

    assert not is_transient(MlflowException("duplicate order_by field"))  # INTERNAL_ERROR, local
    assert is_transient(MlflowException("(sqlite3.OperationalError) database is locked"))
    assert is_transient(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}))
    assert not is_transient(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}))
    assert is_transient(ConnectionResetError())
