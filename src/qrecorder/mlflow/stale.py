"""Find runs whose process died without ending them (SIGKILL, power loss) and mark them FAILED.

The rule (docs/concepts.md, "Heartbeats and stale runs"):

- A RUNNING run without a ``qrecorder.heartbeat`` tag was not started by qrecorder: never stale.
- A run is stale when its heartbeat is older than ``max(grace, 3 x its heartbeat interval)``,
  whatever its recorded pid says. A process that is stopped (SIGSTOP, Ctrl-Z), swapped out or
  in another PID namespace is judged by this rule alone.
- The one shortcut: the run's ``qrecorder.process`` tag (boot id, PID namespace, pid and start
  time, written by the run's process) matches this host, this boot and this PID namespace,
  and that process is provably gone (no such pid, a zombie, or the pid now belongs to a
  process that started at another time). Then the run is stale at once. Without that tag, or
  from another namespace or machine, a pid proves nothing and only the heartbeat counts.

Marking is a compare-and-set: a run is marked only if it is still RUNNING *and* its
heartbeat is still the one that was judged, so a run that ended or beat meanwhile is left
alone. Once marked (status FAILED, tags ``qrecorder.stale=1``, ``qrecorder.stale_at``,
``qrecorder.stale_reason``) the run stays FAILED: a process that comes back is reported by
the next scan (:attr:`GcReport.returned`) and, at its end of run, :func:`finish_run` keeps the
status and tells it so, instead of flipping the run back to FINISHED.

Writes take the database's write lock for at most ``timeout`` seconds (SQLite busy timeout,
PostgreSQL ``lock_timeout``): a process that holds the lock and is stopped makes the scan
give up with :class:`GcTimeoutError`, never hang.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import provenance
from .. import tags as tagnames
from ..errors import StoreUnavailableError
from . import calls, query
from .sql.stale import _SqlMarker

if TYPE_CHECKING:
    from .store import Store

HEARTBEAT_TAG = tagnames.HEARTBEAT
INTERVAL_TAG = tagnames.HEARTBEAT_INTERVAL
STALE_TAG = tagnames.STALE
STALE_AT_TAG = tagnames.STALE_AT
STALE_REASON_TAG = tagnames.STALE_REASON
RETURNED_TAG = tagnames.STALE_RETURNED
RETURNED_STATUS_TAG = tagnames.STALE_RETURNED_STATUS
HEARTBEATS_TO_STALE = 3
DEFAULT_GRACE_S = 60.0
DEFAULT_TIMEOUT_S = 30.0


class GcTimeoutError(StoreUnavailableError):
    """The store's write lock stayed held past the scan's budget (e.g. by a stopped process)."""

    def __init__(self, message: str, marked: list[str], pending: list[str]) -> None:
        super().__init__(message)
        self.marked = marked
        self.pending = pending


class StaleRunWarning(UserWarning):
    """This process's run was marked FAILED by ``qrec gc`` while the process was silent."""


@dataclass
class Verdict:
    stale: bool
    reason: str
    heartbeat: str | None  # the heartbeat tag value judged (the compare-and-set condition)
    live: bool = False  # has a heartbeat and is not stale: someone is writing it


@dataclass
class GcReport:
    """What a scan found: runs marked (or to mark), runs that came back, live runs."""

    stale: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    returned: list[str] = field(default_factory=list)  # marked FAILED earlier, heartbeat newer than the mark
    skipped: list[str] = field(default_factory=list)  # judged stale but they ended or beat meanwhile


# ------------------------------------------------------------------ the rule
def _process_gone(tags: dict[str, str], host: str) -> str | None:
    """Why the run's process is provably gone from this machine, or None if it may be alive."""
    if tags.get(tagnames.HOST) != host:
        return None
    parts = tags.get(provenance.PROCESS_TAG, "").split(":")
    if len(parts) != 5 or parts[0] != "linux":
        return None
    _, boot, ns, pid, start = parts
    if pid != tags.get(tagnames.PID):  # tags of two different processes (a resume in flight)
        return None
    if not pid.isdigit() or boot != provenance.boot_id() or ns != provenance.pid_namespace():
        return None  # another boot or another PID namespace: its pid means nothing here
    if int(pid) == os.getpid():
        return None
    stat = provenance.process_stat(pid)
    if stat is None:
        return f"its process {pid} is gone from {host}"
    state, started = stat
    if started != start:
        return f"its process {pid} is gone from {host} (the pid now belongs to another process)"
    if state in ("Z", "X", "x"):
        return f"its process {pid} on {host} has exited"
    return None


def judge(tags: dict[str, str], now: float, grace: float, host: str) -> Verdict:
    """Is a RUNNING run with these tags stale? (the rule in this module's docstring)"""
    seen = tags.get(HEARTBEAT_TAG)
    try:
        beat = float(seen) if seen is not None else float("nan")
        interval = float(tags.get(INTERVAL_TAG, "10"))
    except ValueError:
        return Verdict(False, "unreadable heartbeat", seen)
    if beat != beat:  # no heartbeat: not started by qrecorder, leave it alone
        return Verdict(False, "no qrecorder heartbeat", seen)
    gone = _process_gone(tags, host)
    if gone is not None:
        return Verdict(True, gone, seen)
    limit = max(grace, HEARTBEATS_TO_STALE * interval)
    age = now - beat
    if age > limit:
        return Verdict(True, f"no heartbeat for {age:.0f}s (limit {limit:.0f}s)", seen)
    return Verdict(False, f"heartbeat {age:.0f}s ago", seen, live=True)


def is_stale(tags: dict[str, str], now: float, grace: float, host: str) -> bool:
    return judge(tags, now, grace, host).stale


def live_runs(store: Store, experiment_ids: list[str], grace_seconds: float = DEFAULT_GRACE_S) -> list[Any]:
    """RUNNING runs of these experiments with a fresh heartbeat (someone is writing them)."""
    if not experiment_ids:
        return []
    runs = query.search_runs(store, experiment_ids, filter_string="attributes.status = 'RUNNING'")
    now, host = time.time(), socket.gethostname()
    return [run for run in runs if judge(run.data.tags, now, grace_seconds, host).live]


# ------------------------------------------------------------------ the scan
def scan(
    store: Store,
    experiment_ids: list[str] | None = None,
    grace_seconds: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> GcReport:
    """Mark stale RUNNING runs FAILED; report runs that came back after being marked.

    Raises :class:`GcTimeoutError` when the store's write lock is not obtained within
    ``timeout`` seconds (what was marked before stays marked; the error lists both).
    """
    deadline = time.monotonic() + timeout
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in calls.call(store.client.search_experiments, view_type=1)]
    report = GcReport()
    if not experiment_ids:
        return report
    runs = query.search_runs(store, experiment_ids, filter_string="attributes.status = 'RUNNING'")
    now, host = time.time(), socket.gethostname()
    judged = [(run, judge(run.data.tags, now, grace_seconds, host)) for run in runs]
    to_mark = [(run.info.run_id, v) for run, v in judged if v.stale]
    report.reasons = {rid: v.reason for rid, v in to_mark}
    report.returned = _returned(store, experiment_ids, now, grace_seconds)
    if dry_run:
        report.stale = [rid for rid, _ in to_mark]
        return report
    marker = _SqlMarker(store, _LockTimeout) if store.direct is not None else None
    try:
        for i, (rid, verdict) in enumerate(to_mark):
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise _LockTimeout()
                if marker is not None:
                    done = marker.mark(rid, verdict, remaining)
                else:
                    done = _mark_via_client(store, rid, verdict, remaining)
            except _LockTimeout as exc:
                pending = [r for r, _ in to_mark[i:]]
                raise GcTimeoutError(_timeout_message(store, timeout, report.stale, pending, exc.detail),
                                     report.stale, pending) from None
            (report.stale if done else report.skipped).append(rid)
    finally:
        if marker is not None:
            marker.close()
    return report


def mark_stale_runs(
    store: Store,
    experiment_ids: list[str] | None = None,
    grace_seconds: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[str]:
    """Mark stale RUNNING runs FAILED (tag ``qrecorder.stale=1``); return their ids."""
    return scan(store, experiment_ids, grace_seconds, dry_run, timeout).stale


def _returned(store: Store, experiment_ids: list[str], now: float, grace: float) -> list[str]:
    """Runs marked stale earlier whose process wrote a heartbeat after the mark, recently."""
    flt = f"attributes.status = 'FAILED' and tags.`{STALE_TAG}` = '1'"
    out = []
    for run in query.search_runs(store, experiment_ids, filter_string=flt):
        tags = run.data.tags
        try:
            beat, marked = float(tags.get(HEARTBEAT_TAG, "nan")), float(tags.get(STALE_AT_TAG, "nan"))
            interval = float(tags.get(INTERVAL_TAG, "10"))
        except ValueError:
            continue
        if beat > marked and now - beat <= max(grace, HEARTBEATS_TO_STALE * interval):
            out.append(run.info.run_id)
    return out


def _timeout_message(store: Store, timeout: float, marked: list[str], pending: list[str], detail: str) -> str:
    return (
        f"Gave up after {timeout:g}s: the store's write lock is held by another process ({detail}). "
        f"A stopped process (SIGSTOP, Ctrl-Z) or a long transaction keeps it until it continues or dies. "
        f"Marked {len(marked)} of {len(marked) + len(pending)} stale run(s) FAILED"
        + (f"; not marked: {', '.join(pending)}" if pending else "")
        + ". Run `qrec gc` again later, or give it more time with --timeout."
    )


class _LockTimeout(Exception):
    def __init__(self, detail: str = "timed out") -> None:
        super().__init__(detail)
        self.detail = detail


def _stale_tags(verdict: Verdict, now: float) -> dict[str, str]:
    return {STALE_TAG: "1", STALE_AT_TAG: f"{now:.0f}", STALE_REASON_TAG: verdict.reason[:1000]}


def _mark_via_client(store: Store, run_id: str, verdict: Verdict, remaining: float) -> bool:
    """Tracking servers and file stores: re-check, then tag and end (a small race window remains)."""
    from mlflow.entities import RunTag

    budget = os.environ.get("QRECORDER_RETRY_SECONDS")
    os.environ["QRECORDER_RETRY_SECONDS"] = f"{max(remaining, 0.1):.3f}"
    try:
        run = calls.call(store.client.get_run, run_id)
        if run.info.status != "RUNNING" or run.data.tags.get(HEARTBEAT_TAG) != verdict.heartbeat:
            return False
        now = time.time()
        calls.call(store.client.log_batch, run_id, tags=[RunTag(k, v) for k, v in _stale_tags(verdict, now).items()])
        calls.call(store.client.set_terminated, run_id, "FAILED")
        return True
    except StoreUnavailableError as exc:
        raise _LockTimeout(str(exc)[:300]) from exc
    finally:
        if budget is None:
            os.environ.pop("QRECORDER_RETRY_SECONDS", None)
        else:
            os.environ["QRECORDER_RETRY_SECONDS"] = budget


# ------------------------------------------------------------------ the process that comes back
def returned_message(run_id: str, tags: dict[str, str], wanted: str) -> str:
    when = tags.get(STALE_AT_TAG, "")
    try:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(when)))
    except ValueError:
        pass
    return (
        f"Run {run_id} was marked FAILED by `qrec gc` / R.mark_stale_runs() at {when} "
        f"({tags.get(STALE_REASON_TAG, 'no heartbeat')}) while this process was silent (stopped, "
        f"suspended or cut off from the store). It stays FAILED; it is not set to {wanted}. "
        f"What was logged after the mark was kept (tag {RETURNED_TAG}). To continue it on purpose, "
        "resume it with R.start(recorder_id=..., resume=True)."
    )


def cannot_be_stale(beat_age_s: float, interval_s: float) -> bool:
    """True when no ``qrec gc`` can have marked a run of this (live) process stale: its last
    heartbeat was written ``beat_age_s`` seconds ago, and a live process's run is judged stale
    only past ``HEARTBEATS_TO_STALE x interval`` (:func:`judge`). Half that window is kept as a
    margin for another machine's clock running ahead."""
    return beat_age_s < HEARTBEATS_TO_STALE * interval_s / 2


def finish_run(store: Store, run_id: str, status: str, end_ms: int, check_stale: bool = True) -> str | None:
    """End a run with ``status`` unless ``qrec gc`` marked it stale meanwhile.

    For the recorder's end of run (instead of ``set_terminated``). Returns None when the status
    was set; else the status is kept FAILED, the tags ``qrecorder.stale_returned`` (now) and
    ``qrecorder.stale_returned_status`` (what the process wanted) are written, and the message
    to warn the process with (:class:`StaleRunWarning`) is returned. On SQL stores the check
    and the update are one statement; on a tracking server they are two calls, and the check
    is skipped when ``check_stale`` is False (:func:`cannot_be_stale`: a short run saves a
    ``runs/get``).
    """
    returned = [(RETURNED_TAG, f"{time.time():.0f}"), (RETURNED_STATUS_TAG, status)]
    sink = store.sql_sink
    if sink is not None:
        found = sink.finish_run(run_id, status, end_ms, STALE_TAG, returned)
        return None if found is None else returned_message(run_id, found, status)
    rest = store.rest  # a tracking server's requests without MLflow (see .rest), else MLflow's client
    if check_stale:
        run = calls.call(rest.get_run if rest is not None else store.client.get_run, run_id)
        tags = dict(run.data.tags)
        if run.info.status != "RUNNING" and tags.get(STALE_TAG) == "1":
            if rest is not None:
                calls.call(rest.log_batch, run_id, [], [], returned)
            else:
                from mlflow.entities import RunTag

                calls.call(store.client.log_batch, run_id, tags=[RunTag(k, v) for k, v in returned])
            return returned_message(run_id, tags, status)
    if rest is not None:
        calls.call(rest.update_run, run_id, status, end_ms)
    else:
        calls.call(store.client.set_terminated, run_id, status, end_time=end_ms)
    return None
