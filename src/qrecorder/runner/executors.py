"""Executors run cell tasks and report their results; the scheduler (batch.py) decides what to run.

An executor satisfies ``Executor``: ``capacity()`` free slots, ``busy()`` tasks in flight,
``submit(task)``, ``poll(timeout)`` -> results of tasks that ended, ``interrupt(grace)`` -> the last
results, ``close()``. Every submitted task ends in exactly one ``CellResult`` (runner/messages.py).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Protocol

from qrecorder.errors import RunnerError, WorkerProtocolError
from qrecorder.runner.messages import CellResult, CellStarted, CellTask, dumps, event_from_wire


class Executor(Protocol):
    """What the scheduler needs of an executor (LocalExecutor, RayExecutor)."""

    def capacity(self) -> int:
        """How many more tasks ``submit`` takes now."""
        ...

    def busy(self) -> int:
        """How many submitted tasks have no result yet."""
        ...

    def submit(self, task: CellTask) -> None:
        """Start a task (only when ``capacity() > 0``)."""
        ...

    def poll(self, timeout: float = 0.2) -> list[CellResult]:
        """Results of tasks that ended, waiting up to ``timeout`` seconds for one."""
        ...

    def interrupt(self, grace: float = 30.0) -> list[CellResult]:
        """Interrupt every running task (its run ends KILLED); their results, within ``grace`` seconds."""
        ...

    def close(self) -> None:
        """Release workers; no task runs afterwards."""
        ...


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    python: str
    log: Path
    task: CellTask | None = None
    recorder_id: str | None = None  # of the current task, once the worker said "started"
    buf: bytes = b""

    @property
    def stdin(self) -> IO[bytes]:
        """Tasks go in here (the worker is spawned with stdin=PIPE)."""
        assert self.proc.stdin is not None
        return self.proc.stdin

    @property
    def stdout(self) -> IO[bytes]:
        """Events come out here (the worker is spawned with stdout=PIPE)."""
        assert self.proc.stdout is not None
        return self.proc.stdout


class LocalExecutor:
    """A pool of ``workers`` long-lived worker processes (one per python interpreter in use)."""

    def __init__(self, workers: int, log_dir: str | Path, env: dict[str, str] | None = None) -> None:
        if workers < 1:
            raise RunnerError("--workers must be >= 1")
        self.n = workers
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **(env or {})}
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            self.env.setdefault(var, threads)
        self.workers: list[_Worker] = []
        self.sel = selectors.DefaultSelector()
        self._spawned = 0

    def capacity(self) -> int:
        return self.n - sum(w.task is not None for w in self.workers)

    def busy(self) -> int:
        return sum(w.task is not None for w in self.workers)

    def _spawn(self, python: str) -> _Worker:
        self._spawned += 1
        path = self.log_dir / f"worker-{self._spawned}.log"
        log = open(path, "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen([python, "-m", "qrecorder.runner.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, env=self.env, start_new_session=True)
        log.close()
        w = _Worker(proc, python, path)
        os.set_blocking(w.stdout.fileno(), False)
        self.sel.register(w.stdout, selectors.EVENT_READ, w)
        self.workers.append(w)
        return w

    def _retire(self, w: _Worker) -> None:
        try:
            self.sel.unregister(w.stdout)
        except (KeyError, ValueError):
            pass
        if w in self.workers:
            self.workers.remove(w)
        try:
            w.stdin.close()
        except OSError:
            pass

    def submit(self, task: CellTask) -> None:
        python = task.python or sys.executable
        idle = [w for w in self.workers if w.task is None]
        w = next((w for w in idle if w.python == python), None)
        if w is None:
            if len(self.workers) >= self.n and idle:
                self._retire(idle[0])  # make room: a worker of another interpreter is idle
            w = self._spawn(python)
        w.task, w.recorder_id = task, None
        w.stdin.write(dumps(task))
        w.stdin.flush()

    def _protocol_error(self, w: _Worker, line: bytes, exc: WorkerProtocolError) -> WorkerProtocolError:
        return WorkerProtocolError(f"worker process {w.proc.pid} ({w.python}) broke the runner protocol: {exc}; "
                                   f"line {line[:300]!r}; see its log {w.log}")

    def _receive(self, w: _Worker, line: bytes) -> CellResult | None:
        """Check one line of a worker and apply it; a result ends the worker's task."""
        try:
            ev = event_from_wire(line)
        except WorkerProtocolError as exc:
            raise self._protocol_error(w, line, exc) from None
        if isinstance(ev, CellStarted | CellResult):
            if w.task is None or ev.task_id != w.task.task_id:
                current = w.task.task_id if w.task else "none"
                raise self._protocol_error(w, line, WorkerProtocolError(
                    f"an event for task {ev.task_id}, but its task is {current}"))
            if isinstance(ev, CellStarted):
                w.recorder_id = ev.recorder_id
                return None
            w.task = None
            return ev
        return None  # ready

    def _read(self, w: _Worker) -> list[CellResult]:
        results: list[CellResult] = []
        try:
            chunk = os.read(w.stdout.fileno(), 65536)
        except BlockingIOError:
            return results
        if chunk:
            w.buf += chunk
            while b"\n" in w.buf:
                line, w.buf = w.buf.split(b"\n", 1)
                if line.strip():
                    res = self._receive(w, line)
                    if res is not None:
                        results.append(res)
            return results
        return self._gone(w)  # EOF

    def _gone(self, w: _Worker) -> list[CellResult]:
        """The worker exited: its task (if any) ends failed, or killed when a signal ended it."""
        code = w.proc.wait()
        results = []
        if w.task is not None:
            results.append(CellResult(
                w.task.task_id, ok=False, recorder_id=w.recorder_id,
                killed=code in (-signal.SIGINT, 130, -signal.SIGKILL, -signal.SIGTERM, 143),
                error=f"worker process {w.proc.pid} exited with code {code}; see its log {w.log}"))
            w.task = None
        self._retire(w)
        return results

    def poll(self, timeout: float = 0.2) -> list[CellResult]:
        events: list[CellResult] = []
        for key, _ in self.sel.select(timeout):
            events += self._read(key.data)
        return events

    def interrupt(self, grace: float = 30.0) -> list[CellResult]:
        """Forward one SIGINT to each busy worker, collect their last events, kill stragglers."""
        for w in list(self.workers):
            if w.task is not None:
                try:
                    os.kill(w.proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
            else:
                self._retire(w)
        events: list[CellResult] = []
        deadline = time.monotonic() + grace
        while self.busy() and time.monotonic() < deadline:
            events += self.poll(0.2)
        for w in list(self.workers):
            if w.task is not None:
                w.proc.kill()
                w.proc.wait()
                drain = time.monotonic() + 2.0
                while w in self.workers and time.monotonic() < drain:  # what it wrote before dying, then EOF
                    events += self._read(w)
                    time.sleep(0.01)
                if w in self.workers:  # something else holds its pipe open: stop waiting for EOF
                    events += self._gone(w)
        return events

    def prestart(self, count: int, python: str | None = None) -> None:
        """Spawn idle workers now, so their imports overlap with the parent's own setup."""
        for _ in range(min(count, self.n) - len(self.workers)):
            self._spawn(python or sys.executable)

    def close(self) -> None:
        workers = list(self.workers)
        for w in workers:  # close every stdin first: the workers exit in parallel
            self._retire(w)
        for w in workers:
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.proc.kill()
        self.sel.close()


class RayExecutor:
    """Cells as Ray tasks (one CPU each) on a local or existing Ray cluster (``address``)."""

    def __init__(self, workers: int, address: str | None = None, env: dict[str, str] | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise RunnerError("--executor ray needs Ray: pip install 'qrecorder[ray]'") from exc
        self.ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False,
                                      "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = workers
            env_vars = {k: v for k, v in (env or {}).items()}
            if env_vars:
                kwargs["runtime_env"] = {"env_vars": env_vars}
            ray.init(**kwargs)
        self.n = workers
        self.refs: dict[Any, CellTask] = {}
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_run)

    def capacity(self) -> int:
        return self.n - len(self.refs)

    def busy(self) -> int:
        return len(self.refs)

    def submit(self, task: CellTask) -> None:
        self.refs[self._remote.remote(task.to_wire())] = task

    def _collect(self, ref: Any) -> CellResult:
        task = self.refs.pop(ref)
        try:
            wire = self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - task cancelled or worker died
            cancelled = "Cancel" in type(exc).__name__
            return CellResult(task.task_id, ok=False, killed=cancelled, error=f"{type(exc).__name__}: {exc}")
        try:
            res = CellResult.from_wire(wire)
        except WorkerProtocolError as exc:
            raise WorkerProtocolError(f"Ray task {task.task_id} ({task.cell.model} seed {task.cell.seed}) "
                                      f"returned a malformed result: {exc}") from None
        if res.task_id != task.task_id:
            raise WorkerProtocolError(f"Ray task {task.task_id} returned the result of task {res.task_id}")
        return res

    def poll(self, timeout: float = 0.2) -> list[CellResult]:
        if not self.refs:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        return [self._collect(r) for r in ready]

    def interrupt(self, grace: float = 30.0) -> list[CellResult]:
        for ref in list(self.refs):
            self.ray.cancel(ref)  # KeyboardInterrupt in the task: R.start marks the run KILLED
        events: list[CellResult] = []
        deadline = time.monotonic() + grace
        while self.refs and time.monotonic() < deadline:
            events += self.poll(0.5)
        for ref in list(self.refs):
            self.ray.cancel(ref, force=True)
            events.append(self._collect(ref))
        return events

    def close(self) -> None:
        pass


def _ray_run(task: dict[str, Any]) -> dict[str, Any]:
    """A Ray task: wire dicts in and out (checked like a worker's lines; no qrecorder class is pickled)."""
    import ray

    from qrecorder import R
    from qrecorder.runner.worker import run_one

    cell_task = replace(CellTask.from_wire(task), ray_node=ray.get_runtime_context().get_node_id())  # tagged on the run
    try:
        with R.uri_context(cell_task.uri):  # not os.environ: Ray's local mode runs tasks in the driver
            return run_one(cell_task).to_wire()
    except KeyboardInterrupt:
        return CellResult(cell_task.task_id, ok=False, killed=True, error="interrupted").to_wire()


__all__ = ["Executor", "LocalExecutor", "RayExecutor", "RunnerError"]
