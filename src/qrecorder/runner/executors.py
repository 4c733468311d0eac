"""Executors run cell tasks and report events; the scheduler (batch.py) decides what to run.

Interface: ``capacity()`` free slots, ``submit(task)``, ``poll(timeout)`` -> events,
``interrupt(grace)`` -> final events, ``close()``. Events are the worker protocol's dicts.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


class RunnerError(RuntimeError):
    """The runner cannot go on (bad option, missing optional dependency)."""


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    python: str
    task: dict[str, Any] | None = None
    buf: bytes = b""
    ready: bool = False
    extra: list[dict[str, Any]] = field(default_factory=list)

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
        log = open(self.log_dir / f"worker-{self._spawned}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen([python, "-m", "qrecorder.runner.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, env=self.env, start_new_session=True)
        log.close()
        w = _Worker(proc, python)
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

    def submit(self, task: dict[str, Any]) -> None:
        python = task.get("python") or sys.executable
        idle = [w for w in self.workers if w.task is None]
        w = next((w for w in idle if w.python == python), None)
        if w is None:
            if len(self.workers) >= self.n and idle:
                self._retire(idle[0])  # make room: a worker of another interpreter is idle
            w = self._spawn(python)
        w.task = task
        w.stdin.write((json.dumps(task) + "\n").encode())
        w.stdin.flush()

    def _read(self, w: _Worker) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        try:
            chunk = os.read(w.stdout.fileno(), 65536)
        except BlockingIOError:
            return events
        if chunk:
            w.buf += chunk
            while b"\n" in w.buf:
                line, w.buf = w.buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg.get("event") == "ready":
                    continue
                if msg.get("event") == "done" and w.task is not None and msg.get("task_id") == w.task["task_id"]:
                    w.task = None
                events.append(msg)
            return events
        # EOF: the worker is gone
        code = w.proc.wait()
        if w.task is not None:
            events.append({"event": "done", "task_id": w.task["task_id"], "ok": False,
                           "killed": code in (-signal.SIGINT, 130, -signal.SIGKILL, -signal.SIGTERM, 143),
                           "recorder_id": None,
                           "error": f"worker process {w.proc.pid} exited with code {code}; see {self.log_dir}"})
        self._retire(w)
        return events

    def poll(self, timeout: float = 0.2) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for key, _ in self.sel.select(timeout):
            events += self._read(key.data)
        return events

    def interrupt(self, grace: float = 30.0) -> list[dict[str, Any]]:
        """Forward one SIGINT to each busy worker, collect their last events, kill stragglers."""
        for w in list(self.workers):
            if w.task is not None:
                try:
                    os.kill(w.proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
            else:
                self._retire(w)
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + grace
        while self.busy() and time.monotonic() < deadline:
            events += self.poll(0.2)
        for w in list(self.workers):
            if w.task is not None:
                w.proc.kill()
                w.proc.wait()
                events += self._read(w) if w in self.workers else []
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
        self.refs: dict[Any, dict[str, Any]] = {}
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_run)

    def capacity(self) -> int:
        return self.n - len(self.refs)

    def busy(self) -> int:
        return len(self.refs)

    def prestart(self, count: int, python: str | None = None) -> None:
        pass

    def submit(self, task: dict[str, Any]) -> None:
        self.refs[self._remote.remote(task)] = task

    def _collect(self, ref: Any) -> dict[str, Any]:
        task = self.refs.pop(ref)
        try:
            return self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - task cancelled or worker died
            cancelled = "Cancel" in type(exc).__name__
            return {"event": "done", "task_id": task["task_id"], "ok": False, "killed": cancelled,
                    "recorder_id": None, "error": f"{type(exc).__name__}: {exc}"}

    def poll(self, timeout: float = 0.2) -> list[dict[str, Any]]:
        if not self.refs:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        return [self._collect(r) for r in ready]

    def interrupt(self, grace: float = 30.0) -> list[dict[str, Any]]:
        for ref in list(self.refs):
            self.ray.cancel(ref)  # KeyboardInterrupt in the task: R.start marks the run KILLED
        events: list[dict[str, Any]] = []
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
    import ray

    from qrecorder import R
    from qrecorder.runner.worker import run_one

    task = {**task, "ray_node": ray.get_runtime_context().get_node_id()}  # tagged on the run: where it ran
    try:
        with R.uri_context(task["uri"]):  # not os.environ: Ray's local mode runs tasks in the driver
            return run_one(task)
    except KeyboardInterrupt:
        return {"event": "done", "task_id": task["task_id"], "ok": False, "killed": True, "recorder_id": None,
                "error": "interrupted"}
