"""The batched background writer: callers enqueue, one thread coalesces into ``log_batch``.

Why: MLflow's per-value calls cost one database transaction each (~9 ms on SQLite), which
is what made Qlib's logging slow. Here a ``log_metrics`` call only appends to a list; a
daemon thread wakes every ``flush_interval`` (or sooner under load), groups what arrived by
run and writes it within MLflow's batch limits. Memory is bounded: past ``max_pending``
values the caller waits (backpressure). Transient failures are retried with backoff; any
other failure is kept per run and raised to the caller at its next log call, flush or end.
Heartbeat tags of running runs are refreshed from the same thread.

Every accepted value is also appended to this process's journal (``journal.py``) before the
call returns, so a SIGKILL loses nothing that was accepted: the next process that opens the
store replays what had not been settled.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import defaultdict
from typing import Any

from .. import lifecycle
from .. import tags as tagnames
from ..errors import LoggingFailedError, StoreUnavailableError
from . import calls
from .journal import Journal, claim_orphans

logger = logging.getLogger("qrecorder")

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
HEARTBEAT_TAG = tagnames.HEARTBEAT
SQL_ROWS_PER_TRANSACTION = 20_000

_all_writers: weakref.WeakSet[BatchWriter] = weakref.WeakSet()


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def heartbeat_interval() -> float:
    return _env_float("QRECORDER_HEARTBEAT_INTERVAL", 10.0)


class BatchWriter:
    """Coalesces params, metrics and tags of any number of runs into ``log_batch`` calls."""

    def __init__(
        self,
        client: Any,
        *,
        sink: Any = None,
        flush_interval: float | None = None,
        max_pending: int | None = None,
        high_watermark: int = 5000,
        journal: Journal | None = None,
    ) -> None:
        self._client = client
        self._journal = journal
        self._rec_submitted = 0  # journal records accepted (values' calls, not values)
        self._rec_done = 0  # journal records written to the store (or failed and reported)
        self._rec_base = 0  # records before the journal's last rotation
        self._sink = sink  # sql.writes.SqlBatchSink for SQL stores, else None (MLflow's log_batch)
        self.flush_interval = flush_interval if flush_interval is not None else _env_float("QRECORDER_FLUSH_INTERVAL", 0.2)
        self.max_pending = int(max_pending if max_pending is not None else _env_float("QRECORDER_MAX_PENDING", 200_000))
        self._high = min(high_watermark, self.max_pending)
        self._lock = threading.Lock()  # entered directly on the hot path (C-level, cheaper)
        self._cond = threading.Condition(self._lock)
        # Held by whoever writes a batch (the thread, or a caller draining in flush), so that
        # batches reach the store in the order they were queued.
        self._write_mutex = threading.Lock()
        self._pending: list[tuple[Any, ...]] = []
        self._pending_count = 0
        self._submitted = 0  # values accepted so far (sequence number)
        self._done = 0  # values written (or given up) so far
        self._flush_waiters = 0
        self._errors: dict[str, BaseException] = {}
        self._heartbeat_runs: dict[str, None] = {}
        self._hb_interval = heartbeat_interval()
        self._last_heartbeat = time.monotonic()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        _all_writers.add(self)

    # ------------------------------------------------------------------ caller side
    def submit(self, run_id: str, kind: str, payload: Any, count: int) -> None:
        """Queue ``count`` values of ``kind`` ('m' metrics, 'p' params, 't' tags) for a run."""
        with self._lock:
            if self._errors:
                self._raise_pending_error(run_id)
            if self._closed:
                raise LoggingFailedError("The qrecorder writer is closed (the interpreter is exiting); the values were not logged.")
            if self._thread is None or self._pid != os.getpid():
                self._start_thread()
            while self._pending_count >= self.max_pending:
                self._cond.notify_all()
                self._cond.wait(0.5)
                self._raise_pending_error(run_id)
            if self._journal is not None:
                self._journal.append(_journal_record(run_id, kind, payload))
                self._rec_submitted += 1
            self._pending.append((run_id, kind, payload))
            self._pending_count += count
            self._submitted += count
            if self._pending_count >= self._high:
                self._cond.notify_all()

    def flush(self, run_id: str | None = None, timeout: float | None = None) -> None:
        """Wait until everything submitted before this call is written; raise a run's failure.

        Without a timeout the caller writes what is queued itself (no hand-off to the thread:
        this is what makes ending a short run cheap); with one it waits for the thread.
        """
        if timeout is None and self._thread is not None and self._pid == os.getpid():
            self._drain()
        with self._cond:
            target = self._submitted
            if self._done < target and self._thread is not None:
                self._flush_waiters += 1
                self._cond.notify_all()
                deadline = None if timeout is None else time.monotonic() + timeout
                try:
                    while self._done < target:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise StoreUnavailableError(
                                f"Flush timed out after {timeout:.1f}s with {target - self._done} values still "
                                "queued; the store is slow or unreachable. They stay queued and are retried."
                            )
                        self._cond.wait(remaining if remaining is not None else 1.0)
                finally:
                    self._flush_waiters -= 1
            if run_id is not None:
                self._raise_pending_error(run_id)
            elif self._errors:
                rid = next(iter(self._errors))
                self._raise_pending_error(rid)

    def sync(self) -> None:
        """Write what is queued now (reads after it see it); failures stay with their runs."""
        if self._thread is not None and self._pid == os.getpid() and self._pending:
            self._drain()

    def add_heartbeat(self, run_id: str) -> None:
        with self._cond:
            self._heartbeat_runs[run_id] = None

    def remove_heartbeat(self, run_id: str) -> None:
        with self._cond:
            self._heartbeat_runs.pop(run_id, None)

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush what is queued (bounded wait) and stop the thread."""
        if self._thread is None or self._pid != os.getpid():
            self._closed = True
            return
        failures: list[str] = []
        try:
            self.flush(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - reported, the interpreter is exiting
            failures.append(str(exc))
        with self._cond:
            failures.extend(f"run {rid}: {type(e).__name__}: {e}" for rid, e in self._errors.items())
            self._errors.clear()
        for message in failures:
            # No later call will raise it: the process's exit status says it instead.
            logger.error("qrecorder: values could not be written before exit: %s", message)
            lifecycle.note_exit_failure(f"values could not be written: {message}")
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            if self._journal is not None:
                # Nothing unsettled: the journal has served. Else the file stays for the next process.
                self._journal.close(remove=self._rec_done == self._rec_submitted and not self._pending)

    def _raise_pending_error(self, run_id: str) -> None:
        exc = self._errors.pop(run_id, None)
        if exc is not None:
            if isinstance(exc, LoggingFailedError):
                raise exc
            raise LoggingFailedError(
                f"Values logged to run {run_id} could not be written: {type(exc).__name__}: {exc}"
            ) from exc

    def _reinit_after_fork(self) -> None:
        """In a forked child: fresh locks, no thread, nothing queued (the parent writes its own)."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending, self._pending_count = [], 0
        self._submitted = self._done = self._flush_waiters = 0
        self._errors, self._heartbeat_runs = {}, {}
        self._thread, self._closed, self._pid = None, False, os.getpid()
        self._rec_submitted = self._rec_done = self._rec_base = 0
        if self._journal is not None:
            self._journal.forget_after_fork()

    # ------------------------------------------------------------------ writer thread
    def _start_thread(self) -> None:
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name="qrecorder-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.flush_interval
                while (
                    not self._closed
                    and not self._flush_waiters
                    and self._pending_count < self._high
                    and (remaining := deadline - time.monotonic()) > 0
                ):
                    self._cond.wait(remaining)
                closed = self._closed
            self._drain(heartbeats=True)
            with self._cond:
                if closed and not self._pending:
                    return

    def _drain(self, heartbeats: bool = False) -> None:
        """Write everything queued now, in order (the thread's loop, or a flushing caller)."""
        with self._write_mutex:
            with self._cond:
                batch, self._pending = self._pending, []
                count, self._pending_count = self._pending_count, 0
                records = len(batch)
                beat = self._heartbeat_due() if heartbeats else []
                self._cond.notify_all()  # wake producers blocked on backpressure
            if beat:
                batch.extend((rid, "t", [(HEARTBEAT_TAG, str(int(time.time())))]) for rid in beat)
            failed: set[str] = set()
            try:
                if batch:
                    failed = self._write(batch)
            finally:
                with self._cond:
                    self._done += count
                    if records and self._journal is not None:
                        # Values of a run whose write failed go back into the journal unsettled:
                        # its caller is told at the next call, and the next process (or
                        # `qrec recover`) can still write them.
                        for run_id, kind, payload in batch[:records]:
                            if run_id in failed:
                                self._journal.append(_journal_record(run_id, kind, payload))
                                self._rec_submitted += 1
                        self._rec_done += records
                        self._journal.settle(self._rec_done - self._rec_base)
                        if self._rec_done == self._rec_submitted and self._journal.should_rotate():
                            self._journal.rotate()
                            self._rec_base = self._rec_done
                    self._cond.notify_all()

    def _heartbeat_due(self) -> list[str]:
        now = time.monotonic()
        if self._heartbeat_runs and now - self._last_heartbeat >= self._hb_interval:
            self._last_heartbeat = now
            return list(self._heartbeat_runs)
        return []

    @property
    def journal_dir(self) -> str | None:
        return str(self._journal.directory) if self._journal is not None else None

    def replay_orphans(self) -> ReplayReport:
        """Write what dead processes' journals accepted but never settled (exactly once in effect)."""
        report = ReplayReport()
        if self._journal is None:
            return report
        own = self._journal.path if self._pid == os.getpid() else None
        for orphan in claim_orphans(self._journal.directory, own):
            errors: dict[str, BaseException] = {}
            try:
                batch = [_from_journal_record(r) for r in orphan.records]
                with self._write_mutex:
                    self._write(batch, errors)
            except Exception as failure:  # noqa: BLE001 - keep this journal aside, go on with the others
                batch = []
                errors["(journal)"] = failure
            report.files += 1
            report.values += sum(_count(b) for b in batch)
            report.runs.update(b[0] for b in batch)
            for run_id, error in errors.items():
                report.errors[run_id] = f"{type(error).__name__}: {error}"
            if errors:
                kept = orphan.path.with_suffix(".failed")
                try:
                    os.replace(orphan.path, kept)
                    report.kept.append(str(kept))
                except OSError:
                    pass
                orphan.release(remove=False)
            else:
                orphan.release(remove=True)
        if report.values:
            logger.warning(
                "qrecorder: replayed %d values of %d run(s) from %d journal(s) of processes that died before "
                "writing them", report.values, len(report.runs), report.files,
            )
        for run_id, message in report.errors.items():
            logger.error("qrecorder: journal values of run %s could not be replayed: %s", run_id, message)
        return report

    def _write(self, batch: list[tuple[Any, ...]], errors: dict[str, BaseException] | None = None) -> set[str]:
        """Write a batch grouped by run; return the runs whose values were not written."""
        failed: set[str] = set()
        per_run: dict[str, tuple[list[Any], dict[str, str], dict[str, str]]] = defaultdict(lambda: ([], {}, {}))
        for run_id, kind, payload in batch:
            metrics, params, tags = per_run[run_id]
            if kind == "m":
                items, step, ts = payload
                metrics.extend((key, value, ts, step) for key, value in items)
            elif kind == "p":
                params.update(payload)
            else:
                tags.update(payload)  # the last value of a tag wins
        for run_id, (metrics, params, tags) in per_run.items():
            if errors is None and run_id in self._errors:
                failed.add(run_id)
                continue  # the run already failed; its caller is told once
            try:
                self._write_run(run_id, _dedupe(metrics), list(params.items()), list(tags.items()))
            except Exception as exc:  # noqa: BLE001 - kept and raised to the caller
                failed.add(run_id)
                if errors is not None:
                    errors[run_id] = exc
                    continue
                logger.error("qrecorder: logging to run %s failed: %s", run_id, exc)
                with self._cond:
                    self._errors[run_id] = exc
        return failed

    def _write_run(self, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
        sink = self._sink
        if sink is not None and getattr(sink, "remote", False):
            if sink.available():  # rest.RestClient: MLflow's requests, without MLflow
                for m, p, t in _chunks(metrics, params, tags):
                    self._with_retry(run_id, sink.log_batch, run_id, m, p, t)
                return
        elif sink is not None and not any(k.startswith("mlflow.") for k, _ in tags):
            for start in range(0, max(len(metrics), 1), SQL_ROWS_PER_TRANSACTION):
                chunk = metrics[start : start + SQL_ROWS_PER_TRANSACTION]
                first = start == 0
                self._with_retry(run_id, self._sink.log_batch, run_id, chunk, params if first else [], tags if first else [])
            return
        from mlflow.entities import Metric, Param, RunTag

        entities = [Metric(k, v, ts, step) for k, v, ts, step in metrics]
        for m, p, t in _chunks(entities, [Param(k, v) for k, v in params], [RunTag(k, v) for k, v in tags]):
            self._with_retry(run_id, self._client.log_batch, run_id, metrics=m, params=p, tags=t, synchronous=True)

    def _with_retry(self, run_id: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            calls.call(fn, *args, **kwargs)  # retries busy/unreachable stores within the budget
        except StoreUnavailableError as exc:
            raise StoreUnavailableError(f"Values of run {run_id} were not written: {exc}") from exc


class ReplayReport:
    """What a journal replay wrote: files, values, runs, and per-run errors."""

    def __init__(self) -> None:
        self.files = 0
        self.values = 0
        self.runs: set[str] = set()
        self.errors: dict[str, str] = {}
        self.kept: list[str] = []


def _plain(items: Any) -> list[tuple[str, Any]]:
    return [(str(k), v if v.__class__ in (float, str, int) else (float(v) if isinstance(v, (int, float)) else str(v)))
            for k, v in items]


def _journal_record(run_id: str, kind: str, payload: Any) -> tuple[Any, ...]:
    if kind == "m":
        items, step, ts = payload
        return ("m", run_id, items, step, ts)
    return (kind, run_id, payload)


def plain_record(record: tuple[Any, ...]) -> tuple[Any, ...]:
    """The record with values marshal can write (the rare non-builtin number or string)."""
    if record[0] == "m":
        kind, run_id, items, step, ts = record
        return (kind, run_id, _plain(items), int(step), int(ts))
    kind, run_id, items = record
    return (kind, run_id, _plain(items))


def _from_journal_record(record: tuple[Any, ...]) -> tuple[Any, ...]:
    if record[0] == "m":
        _, run_id, items, step, ts = record
        return (run_id, "m", ([tuple(i) for i in items], step, ts))
    kind, run_id, items = record
    return (run_id, kind, [tuple(i) for i in items])


def _count(entry: tuple[Any, ...]) -> int:
    _, kind, payload = entry
    return len(payload[0]) if kind == "m" else len(payload)


def _dedupe(metrics: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Drop exact repeats (same key, value, timestamp, step), as MLflow's store does."""
    if len(set(metrics)) == len(metrics):
        return metrics
    return list(dict.fromkeys(metrics))


def _chunks(metrics: list[Any], params: list[Any], tags: list[Any]):
    """Split into ``log_batch`` calls within MLflow's per-call limits; params first."""
    while metrics or params or tags:
        p, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
        t, tags = tags[:MAX_PARAMS_TAGS_PER_BATCH], tags[MAX_PARAMS_TAGS_PER_BATCH:]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(p) - len(t))
        m, metrics = metrics[:room], metrics[room:]
        yield m, p, t


def close_all_writers(timeout: float | None = 30.0) -> None:
    """Flush and stop every writer of this process (called at interpreter exit)."""
    for writer in list(_all_writers):
        writer.close(timeout)
    from .sql.db import close_all_connections

    close_all_connections()  # after the writers: nothing writes through them any more


def _after_fork_in_child() -> None:
    for writer in list(_all_writers):
        writer._reinit_after_fork()


lifecycle.add_exit_hook(close_all_writers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
