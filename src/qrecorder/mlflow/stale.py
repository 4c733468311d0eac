"""Find runs whose process died without ending them (SIGKILL, power loss) and mark them FAILED.

A run is stale when its heartbeat tag is older than ``max(grace, 3 x its heartbeat
interval)``, or, on the same host, when its recorded process id no longer exists.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

from . import calls, query
from .writer import HEARTBEAT_TAG

if TYPE_CHECKING:
    from .store import Store


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(tags: dict[str, str], now: float, grace: float, host: str) -> bool:
    try:
        beat = float(tags.get(HEARTBEAT_TAG, "nan"))
        interval = float(tags.get("qrecorder.heartbeat_interval", "10"))
    except ValueError:
        return False
    if tags.get("qrecorder.host") == host and tags.get("qrecorder.pid", "").isdigit():
        pid = int(tags["qrecorder.pid"])
        if pid != os.getpid() and not _pid_alive(pid):
            return True
    if beat != beat:  # no heartbeat: not started by qrecorder, leave it alone
        return False
    return now - beat > max(grace, 3 * interval)


def mark_stale_runs(
    store: Store,
    experiment_ids: list[str] | None = None,
    grace_seconds: float = 60.0,
    dry_run: bool = False,
) -> list[str]:
    """Mark stale RUNNING runs FAILED (tag ``qrecorder.stale=1``); return their ids."""
    from mlflow.entities import RunTag

    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in calls.call(store.client.search_experiments, view_type=1)]
    if not experiment_ids:
        return []
    runs = query.search_runs(store, experiment_ids, filter_string="attributes.status = 'RUNNING'")
    now, host = time.time(), socket.gethostname()
    stale = [run for run in runs if is_stale(run.data.tags, now, grace_seconds, host)]
    if dry_run:
        return [run.info.run_id for run in stale]
    for run in stale:
        calls.call(store.client.log_batch, run.info.run_id, tags=[RunTag("qrecorder.stale", "1")])
        calls.call(store.client.set_terminated, run.info.run_id, "FAILED")
    return [run.info.run_id for run in stale]
