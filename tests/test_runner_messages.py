"""The runner's wire messages: typed, round-tripped, and checked on receipt (real worker processes)."""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qrecorder.errors import QRecorderError, RunnerError, WorkerProtocolError
from qrecorder.runner.cells import Cell
from qrecorder.runner.executors import LocalExecutor, RayExecutor
from qrecorder.runner.messages import CellResult, CellStarted, CellTask, WorkerReady, dumps, event_from_wire

CELL = Cell("Linear", "/b/Linear/workflow_config_linear_synthetic.yaml", 3, 1, "synthetic", "abc123", None)


def _task(python: str = sys.executable) -> CellTask:
    return CellTask(CELL, batch="b1", experiment_name="exp", uri="sqlite:////tmp/x.db", python=python)


def test_task_and_result_round_trip_through_json():
    task = _task()
    assert CellTask.from_wire(json.loads(dumps(task))) == task
    retry = task.retry()
    assert (retry.attempt, retry.cell) == (1, CELL) and retry.task_id != task.task_id
    assert retry.recorder_name == "Linear-seed3-try1"
    res = CellResult(task.task_id, ok=True, recorder_id="r1", experiment_id="1",
                     metrics={"IC": 0.25, "ICIR": math.nan}, wall_seconds=1.5, pid=42)
    back = event_from_wire(dumps(res))
    assert isinstance(back, CellResult) and back.metrics["IC"] == 0.25 and math.isnan(back.metrics["ICIR"])
    assert back.recorder_id == "r1" and back.pid == 42
    assert event_from_wire(dumps(CellStarted("t", "r"))) == CellStarted("t", "r")
    assert event_from_wire(dumps(WorkerReady(7, "/py"))) == WorkerReady(7, "/py")
    row = res.result_row(CELL)
    assert (row["model"], row["seed"], row["recorder_id"], row["metrics"]["IC"]) == ("Linear", 3, "r1", 0.25)


def test_failure_row_names_the_last_line_of_the_error():
    res = CellResult("t", ok=False, recorder_id="r9", error="Traceback ...\n  line\nRuntimeError: boom\n")
    row = res.failure_row(CELL, attempts=2)
    assert row == {"model": "Linear", "seed": 3, "recorder_id": "r9", "summary": "RuntimeError: boom",
                   "error": res.error, "attempts": 2}


@pytest.mark.parametrize("line, text", [
    (b"Traceback (most recent call last):", "not a JSON line"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"event": "finished", "task_id": "t"}', "unknown event 'finished'"),
    (b'{"event": "done", "ok": true}', "done event: field 'task_id' is missing"),
    (b'{"event": "done", "task_id": 5, "ok": true}', "field 'task_id' must be str, not int 5"),
    (b'{"event": "done", "task_id": "t", "ok": 1}', "field 'ok' must be bool, not int 1"),
    (b'{"event": "done", "task_id": "t", "ok": true, "metrics": {"IC": "high"}}', "metrics['IC'] must be a number"),
    (b'{"event": "done", "task_id": "t", "ok": true, "wall_seconds": "1s"}', "'wall_seconds' must be int or float"),
    (b'{"event": "started", "task_id": "t"}', "started event: field 'recorder_id' is missing"),
    (b'{"event": "ready", "pid": true, "python": "p"}', "field 'pid' must be int, not bool"),
])
def test_malformed_events_are_runner_errors_naming_the_field(line, text):
    with pytest.raises(WorkerProtocolError, match=None) as e:
        event_from_wire(line)
    assert text in str(e.value)
    assert isinstance(e.value, RunnerError) and isinstance(e.value, QRecorderError) and isinstance(e.value, RuntimeError)


def test_malformed_task_names_the_cell_field():
    wire = _task().to_wire()
    wire["cell"]["seed"] = "3"
    with pytest.raises(WorkerProtocolError, match=r"task.cell: field 'seed' must be int, not str '3'"):
        CellTask.from_wire(wire)
    wire = _task().to_wire()
    del wire["uri"]
    with pytest.raises(WorkerProtocolError, match="task: field 'uri' is missing"):
        CellTask.from_wire(wire)


def _fake_worker(tmp_path: Path, body: str) -> str:
    """An executable that LocalExecutor spawns as if it were a python running qrecorder.runner.worker."""
    script = tmp_path / "fake-python"
    script.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    script.chmod(0o755)
    return str(script)


def _poll_until(ex: LocalExecutor, seconds: float = 30.0) -> list[CellResult]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = ex.poll(0.2)
        if got:
            return got
    raise AssertionError("no result from the worker")


READY = 'print(\'{"event": "ready", "pid": 1, "python": "fake"}\', flush=True)\nsys.stdin.readline()\n'


@pytest.mark.parametrize("reply, text", [
    ('print("this is not json", flush=True)', "not a JSON line"),
    ('print(\'{"event": "done", "task_id": "t", "ok": "yes"}\', flush=True)', "field 'ok' must be bool"),
    ('print(\'{"event": "done", "task_id": "someone-else", "ok": true}\', flush=True)',
     "an event for task someone-else, but its task is"),
])
def test_a_malformed_line_from_a_worker_process_is_a_runner_error_naming_its_log(tmp_path, reply, text):
    python = _fake_worker(tmp_path, READY + reply + "\nsys.stdin.readline()")
    ex = LocalExecutor(1, tmp_path / "logs")
    try:
        ex.submit(_task(python))
        with pytest.raises(RunnerError) as e:
            _poll_until(ex)
        msg = str(e.value)
        assert text in msg and "broke the runner protocol" in msg
        assert str(tmp_path / "logs" / "worker-1.log") in msg and (tmp_path / "logs" / "worker-1.log").exists()
    finally:
        ex.close()


def test_a_worker_that_dies_after_started_reports_the_run_it_had(tmp_path):
    started = 'import json\nt = json.loads(sys.stdin.readline())\n' \
              'print(json.dumps({"event": "started", "task_id": t["task_id"], "recorder_id": "run-77"}), flush=True)\n' \
              'sys.stderr.write("dying now\\n")\nsys.exit(3)'
    python = _fake_worker(tmp_path, 'print(\'{"event": "ready", "pid": 1, "python": "fake"}\', flush=True)\n' + started)
    ex = LocalExecutor(1, tmp_path / "logs")
    try:
        task = _task(python)
        ex.submit(task)
        (res,) = _poll_until(ex)
        assert (res.task_id, res.ok, res.killed, res.recorder_id) == (task.task_id, False, False, "run-77")
        assert "exited with code 3" in (res.error or "") and str(tmp_path / "logs" / "worker-1.log") in res.error
        assert "dying now" in (tmp_path / "logs" / "worker-1.log").read_text()
        assert ex.busy() == 0 and ex.capacity() == 1
    finally:
        ex.close()


def test_the_real_worker_refuses_a_malformed_task_line_and_says_why():
    proc = subprocess.run([sys.executable, "-m", "qrecorder.runner.worker"], input='{"task_id": "t", "cell": {}}\n',
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "malformed task line" in proc.stderr and "field 'attempt' is missing" in proc.stderr
    ready = json.loads(proc.stdout.splitlines()[0])
    assert ready["event"] == "ready"  # the protocol stream held only protocol lines


class _StubRay:
    """Ray's get/wait for RayExecutor._collect, returning what a (broken) remote task returned."""

    def __init__(self, value):
        self.value = value

    def get(self, ref):
        return self.value


def test_a_malformed_ray_result_is_a_runner_error_naming_the_task():
    ex = object.__new__(RayExecutor)
    task = _task()
    ex.ray, ex.refs = _StubRay({"event": "done", "task_id": task.task_id}), {"ref": task}
    with pytest.raises(WorkerProtocolError, match=rf"Ray task {task.task_id} \(Linear seed 3\).*field 'ok' is missing"):
        ex._collect("ref")
    ex.ray, ex.refs = _StubRay(CellResult(task.task_id, ok=True, recorder_id="r").to_wire()), {"ref": task}
    assert ex._collect("ref") == CellResult(task.task_id, ok=True, recorder_id="r")
