"""MLflowRecorder: the Recorder on an MLflow tracking store, through MlflowClient only."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import logging
import math
import os
import posixpath
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from .. import lifecycle, objects, provenance
from .. import tags as tagnames
from ..errors import (
    LoadObjectError,
    LoggingFailedError,
    RecorderNotFoundError,
    RecorderStateError,
    StoreError,
)
from ..recorder import Recorder
from ..validation import MAX_PARAM_VALUE_LENGTH, MAX_TAG_VALUE_LENGTH
from . import calls, stale
from .sql.writes import sanitize
from .store import Store, get_store
from .writer import HEARTBEAT_TAG, heartbeat_interval

if TYPE_CHECKING:
    from mlflow.entities import Run

logger = logging.getLogger("qrecorder")

LONG_VALUE_DIR = "qrecorder/long_values"
LONG_VALUE_MARKER = " ...[qrecorder: truncated; full value in artifact "
PROVENANCE_JOIN_TIMEOUT_S = 30.0

# Objects downloaded from a tracking server, kept per process: (store uri, run id, path,
# checksum) -> bytes. A checksum names one content, so an entry never goes stale; every load
# still verifies the bytes. Bounded by QRECORDER_DOWNLOAD_CACHE_MB (default 256; 0: off).
# key: (store URI, run id, artifact path, (checksum algorithm, hex digest))
_DOWNLOADS: dict[tuple[str, str, str, tuple[str, str]], bytes] = {}
_DOWNLOADS_LOCK = threading.Lock()


def _download_cache_limit() -> int:
    try:
        return max(0, int(os.environ.get("QRECORDER_DOWNLOAD_CACHE_MB", "256"))) * 1024 * 1024
    except ValueError:
        return 256 * 1024 * 1024


def _remember_download(key: tuple[str, str, str, tuple[str, str]], data: bytes | bytearray) -> None:
    limit = _download_cache_limit()
    if len(data) > limit // 4:  # only objects well below the bound
        return
    with _DOWNLOADS_LOCK:
        _DOWNLOADS[key] = bytes(data)
        while sum(len(v) for v in _DOWNLOADS.values()) > limit:
            _DOWNLOADS.pop(next(iter(_DOWNLOADS)))  # oldest first


class _OwnRun:
    """What this process knows of a run it started and has not ended: no need to ask the store.

    ``tags`` hold the stored form (a long value as its pointer), updated by our own writes;
    ``metrics`` the latest value per key by MLflow's rule (None: not kept — a resumed run, or a
    local store, where a read is cheaper than tracking every logged value on the caller's thread);
    ``artifacts`` the paths uploaded here (None: unknown, a resumed run or a local store).
    """

    __slots__ = ("artifacts", "lock", "metrics", "tags")

    def __init__(self, tags: Mapping[str, str], fresh: bool, remote: bool) -> None:
        self.tags: dict[str, str] = dict(tags)
        self.metrics: dict[str, tuple[int, int, float, float]] | None = {} if fresh and remote else None
        self.artifacts: set[str] | None = set() if fresh and remote else None
        self.lock = threading.Lock()

    def log_metrics(self, items: list[tuple[str, float]], step: int, timestamp: int) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        with self.lock:
            for key, value in items:
                stored, is_nan = sanitize(value)
                best = metrics.get(key)
                # MLflow's latest value: the largest (step, timestamp, stored value)
                if best is None or (step, timestamp, stored) > best[:3]:
                    metrics[key] = (step, timestamp, stored, math.nan if is_nan else stored)

    def add_artifacts(self, paths: list[str]) -> None:
        if self.artifacts is not None:
            with self.lock:
                self.artifacts.update(paths)


def _fmt_ms(ms: int | None) -> str | None:
    """Local time to the second, as ``datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d
    %H:%M:%S")`` (5x faster: listing 10,000 recorders formats 20,000 of these)."""
    if ms is None:
        return None
    if ms < 0:
        return datetime.fromtimestamp(ms / 1000.0).strftime("%Y-%m-%d %H:%M:%S")
    t = time.localtime(ms // 1000)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


class MLflowRecorder(Recorder):
    """A run in an MLflow store. ``mlflow_run`` wraps an existing run (Qlib's signature)."""

    def __init__(
        self,
        experiment_id: str,
        uri: str,
        name: str | None = None,
        mlflow_run: Run | None = None,
        *,
        store: Store | None = None,
    ) -> None:
        super().__init__(experiment_id, name)
        self._store = store or get_store(uri)
        self._uri = self._store.uri
        self._artifact_uri: str | None = None
        self._running_here = False
        self._owner_pid = os.getpid()
        self._beat_at = (0.0, 0.0)  # (monotonic, wall) time of the heartbeat written at start
        self._provenance_thread: threading.Thread | None = None
        self._provenance_error: BaseException | None = None
        self._own: _OwnRun | None = None  # while this process runs it (see _OwnRun)
        self._artifact_repo: Any = None
        if mlflow_run is not None:
            self._apply_run(mlflow_run)

    def _apply_run(self, run: Run) -> None:
        info = run.info
        self.id = info.run_id
        self.experiment_id = info.experiment_id
        self.name = info.run_name or run.data.tags.get(tagnames.MLFLOW_RUN_NAME, self.name)
        self.status = info.status
        self.start_time = _fmt_ms(info.start_time)
        self.end_time = _fmt_ms(info.end_time)
        self._artifact_uri = info.artifact_uri

    def __repr__(self) -> str:
        return f"MLflowRecorder(info={self.info}, uri={self._uri!r}, artifact_uri={self._artifact_uri!r})"

    # ------------------------------------------------------------------ properties
    @property
    def uri(self) -> str:
        return self._uri

    @property
    def artifact_uri(self) -> str | None:
        return self._artifact_uri

    @property
    def client(self) -> Any:
        """MLflow's client for this recorder's store (Qlib's ``MLflowRecorder.client``). Values this
        process queued are written first, so ``rec.client.get_metric_history(rec.id, ...)`` in the
        middle of a run sees what was logged."""
        self._store.sync()
        return self._store.client

    @property
    def _client(self) -> Any:
        """The client for qrecorder's own calls (no sync: the writer orders them itself)."""
        return self._store.client

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as (store, run) coordinates: Qlib's TrainerR and task tools pickle recorders."""
        state = (self.experiment_id, self._uri, self.name, self.id, self.status, self.start_time, self.end_time,
                 self._artifact_uri)
        return (_rebuild_recorder, (type(self), state))

    def get_artifact_uri(self) -> str:
        if self._artifact_uri is None:
            raise RecorderStateError("The recorder has no artifact location yet: start it first (R.start or start_run()).")
        return self._artifact_uri

    def _local_artifact_dir(self) -> Path | None:
        """The run's artifact folder when it is on this file system, else None."""
        uri = self.get_artifact_uri()
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return Path(unquote(parsed.path))
        if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
            return Path(uri)
        return None

    def get_local_dir(self) -> str:
        """The run's folder (parent of its ``artifacts`` folder) on the local file system.

        Created if no artifact was saved yet (Qlib raised instead)."""
        local = self._local_artifact_dir()
        if local is None:
            raise StoreError(f"Recorder {self.id} keeps its artifacts at {self._artifact_uri}, not on the local file system.")
        local.mkdir(parents=True, exist_ok=True)  # a run with no artifact yet has no folder
        return str(local.parent.resolve())

    def _require_id(self) -> str:
        if self.id is None:
            raise RecorderStateError(
                f"Recorder {self.name!r} has not been started: use R.start(...) or recorder.start_run() first."
            )
        return self.id

    # ------------------------------------------------------------------ lifecycle
    def _is_started(self) -> bool:
        return self._running_here

    def _create_run_directly(self, tags: dict[str, str]) -> Any:
        """A new run by SQL on a SQLite store (MLflow's rows, MLflow not imported) or by MLflow's
        request on a tracking server (:mod:`.rest`); None: use MLflow's client."""
        rest = self._store.rest
        if rest is not None:
            return rest.create_run(str(self.experiment_id), self.name, tags)  # retried inside (call_once)
        sink = self._store.sql_sink if self._store.kind in ("sqlite", "postgresql") else None
        if sink is None or not self.name:
            return None
        from .store import _unique_start_ms

        return calls.call(sink.create_run, str(self.experiment_id), self.name, tags, _unique_start_ms())

    def _start_run(self) -> Run:
        now_s = str(int(time.time()))
        tags = {
            tagnames.MLFLOW_USER: _user(self._store.kind),
            tagnames.MLFLOW_SOURCE_NAME: sys.argv[0] if sys.argv and sys.argv[0] else "<interactive>",
            tagnames.MLFLOW_SOURCE_TYPE: "LOCAL",
            tagnames.HOST: socket.gethostname(),
            tagnames.PID: str(os.getpid()),
            HEARTBEAT_TAG: now_s,
            provenance.PROCESS_TAG: provenance.process_identity(),
            tagnames.HEARTBEAT_INTERVAL: f"{heartbeat_interval():g}",
        }
        if self.id is None:
            run = self._create_run_directly(tags)
            if run is None:
                run = calls.call(self._client.create_run, self.experiment_id, run_name=self.name, tags=tags)
            resumed = False
        else:
            run = self._fetch_run()
            if run.info.lifecycle_stage == "deleted":
                raise RecorderNotFoundError(f"Recorder {self.id} is deleted and cannot be resumed.")
            client = self._client
            calls.call(client.update_run, self.id, status=Recorder.STATUS_R)
            calls.call(client.log_batch, self.id, tags=_run_tags(tags))
            resumed = True
        self._apply_run(run)
        own = _OwnRun(run.data.tags, fresh=not resumed, remote=self._local_artifact_dir() is None)
        if resumed:
            own.tags.update(tags)
        if resumed:
            # Known params, whole (a long value is stored shortened, with its full text aside).
            full = {k: self._expand(k, v, "params") for k, v in run.data.params.items()}
            with self._params_lock:
                self._params.update(full)
        self.status = Recorder.STATUS_R
        if resumed:
            self.start_time = self._now_text()
        self._running_here = True
        self._owner_pid = os.getpid()
        self._beat_at = (time.monotonic() - 1.0, time.time() - 1.0)  # the heartbeat tag above, in whole seconds
        self._own = own
        lifecycle.register(self)
        self._store.writer.add_heartbeat(self._require_id())
        params = {"cmd-sys.argv": provenance.command_line(), **provenance.env_params()}
        if resumed:
            params = {k: v for k, v in params.items() if k not in self._params}
        if params:
            self.log_params(**params)
        self._provenance_thread = threading.Thread(target=self._capture_provenance, name="qrecorder-provenance", daemon=True)
        self._provenance_thread.start()
        logger.info("Recorder %s starts running under experiment %s", self.id, self.experiment_id)
        return run

    def _capture_provenance(self) -> None:
        """Git texts and commit, captured off the caller's thread so start stays fast."""
        try:
            found = provenance.capture_git()
            for name, text in found.texts.items():
                self._write_text(text, name)
            if found.tags:
                self.set_tags(**found.tags)
        except BaseException as exc:  # noqa: BLE001 - kept and reported at end_run
            self._provenance_error = exc

    def _beat_age(self) -> float:
        """Seconds since the start's heartbeat: the larger of the monotonic clock (immune to clock
        changes) and the wall clock (which, unlike it, also counts a suspended machine)."""
        mono, wall = self._beat_at
        return max(time.monotonic() - mono, time.time() - wall)

    def _end_run(self, status: str) -> None:
        if self._running_here and self._owner_pid != os.getpid():
            # A forked child leaving the parent's `with R.start` block: the run is the parent's.
            self._store.writer.flush(self.id)
            self._running_here = False
            self._own = None
            return
        run_id = self._require_id() if self._running_here else self.id
        if run_id is None:
            self.status = status
            self.end_time = self._now_text()
            return
        error: BaseException | None = None
        if self._provenance_thread is not None:
            self._provenance_thread.join(PROVENANCE_JOIN_TIMEOUT_S)
            self._provenance_thread = None
        if self._provenance_error is not None:
            logger.warning("qrecorder: provenance of run %s not captured: %s", run_id, self._provenance_error)
            self._provenance_error = None
        writer = self._store.writer
        writer.remove_heartbeat(run_id)
        try:
            writer.flush(run_id)
        except LoggingFailedError as exc:
            error = exc
        final = Recorder.STATUS_FA if error is not None and status == Recorder.STATUS_FI else status
        end_ms = int(time.time() * 1000)
        try:
            if self._running_here:
                # Unless `qrec gc` marked the run stale meanwhile: then it stays FAILED and we say so.
                check = not stale.cannot_be_stale(self._beat_age(), heartbeat_interval())
                message = calls.call(stale.finish_run, self._store, run_id, final, end_ms, check)
                sink = self._store.sql_sink
                if sink is not None:
                    calls.call(sink.check_active, run_id)
                if message is not None:
                    final = Recorder.STATUS_FA
                    logger.warning(message)
                    warnings.warn(message, stale.StaleRunWarning, stacklevel=3)
            else:
                sink = self._store.sql_sink
                rest = self._store.rest
                if sink is not None:
                    calls.call(sink.set_terminated, run_id, final, end_ms)
                elif rest is not None:
                    calls.call(rest.update_run, run_id, final, end_ms)
                else:
                    calls.call(self._client.set_terminated, run_id, final, end_time=end_ms)
        except Exception as exc:
            if error is None:
                raise
            raise error from exc  # the lost values are the news; the status failure follows from them
        finally:
            lifecycle.unregister(self)
            self._running_here = False
            self._own = None
            self.status = final
        self.end_time = _fmt_ms(end_ms)
        if error is not None:
            raise error

    def _flush(self, timeout: float | None) -> None:
        if self.id is not None:
            self._store.writer.flush(self.id, timeout=timeout)

    def _own_run(self) -> _OwnRun | None:
        """The run's cached metadata when this process runs it (not in a forked child)."""
        own = self._own
        return own if own is not None and self._running_here and self._owner_pid == os.getpid() else None

    def _fetch_run(self) -> Run:
        from .sql import reads

        fast = reads.get_run(self._store, self._require_id(), light=True)
        if fast is not None:
            return fast  # type: ignore[no-any-return]
        from mlflow.exceptions import MlflowException

        try:
            return calls.call(self._client.get_run, self._require_id())
        except MlflowException as exc:
            raise RecorderNotFoundError(f"No recorder with id {self.id!r} in {self._uri}: {exc.message}") from exc

    # ------------------------------------------------------------------ logging
    def _log_params(self, items: Mapping[str, str]) -> None:
        run_id = self._require_id()
        stored = [(k, self._shorten(k, v, "params", MAX_PARAM_VALUE_LENGTH)) for k, v in items.items()]
        self._store.writer.submit(run_id, "p", stored, len(stored))

    def _log_metrics(self, items: list[tuple[str, float]], step: int, timestamp: int) -> None:
        self._store.writer.submit(self._require_id(), "m", (items, step, timestamp), len(items))
        own = self._own
        if own is not None:
            own.log_metrics(items, step, timestamp)

    def _set_tags(self, items: Mapping[str, str]) -> None:
        run_id = self._require_id()
        stored = [(k, self._shorten(k, v, "tags", MAX_TAG_VALUE_LENGTH)) for k, v in items.items()]
        self._store.writer.submit(run_id, "t", stored, len(stored))
        own = self._own
        if own is not None:
            own.tags.update(stored)

    def _delete_tags(self, keys: tuple[str, ...]) -> None:
        run_id = self._require_id()
        self._store.writer.flush(run_id)
        for key in keys:
            calls.call(self._client.delete_tag, run_id, key)
            own = self._own
            if own is not None:
                own.tags.pop(key, None)

    def _shorten(self, key: str, value: str, kind: str, limit: int) -> str:
        """Keep a value longer than MLflow's limit whole, as an artifact; store a pointer."""
        if LONG_VALUE_MARKER in value:
            from ..errors import InvalidValueError

            raise InvalidValueError(
                f"The value of {key!r} contains qrecorder's long-value pointer text {LONG_VALUE_MARKER.strip()!r}, "
                "which is reserved (reads would take it for a pointer). Log it as an artifact instead."
            )
        if len(value) <= limit:
            return value
        artifact = _long_value_artifact(kind, key)
        self._write_text(value, artifact)
        marker = f"{LONG_VALUE_MARKER}{artifact}]"
        return value[: limit - len(marker)] + marker

    def _write_text(self, text: str, artifact_file: str) -> None:
        local = self._local_artifact_dir()
        if local is not None:
            target = local / artifact_file
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = objects.staging_dir_for(local)
            staging.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=staging)
            try:
                with open(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            self._require_id()
            textdir = Path(tempfile.mkdtemp(prefix="qrecorder-"))
            try:
                textfile = textdir / posixpath.basename(artifact_file)
                textfile.write_text(text, encoding="utf-8")
                self._upload(textfile, posix_parent(artifact_file))
            finally:
                shutil.rmtree(textdir, ignore_errors=True)

    # ------------------------------------------------------------------ artifacts and objects
    def _repo(self) -> Any:
        """The run's artifact repository, made once from the artifact URI we know (MLflow's
        ``log_artifact``/``download_artifacts`` by run id would first fetch the run again)."""
        if self._artifact_repo is None:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            self._artifact_repo = get_artifact_repository(self.get_artifact_uri(), tracking_uri=self._uri)
        return self._artifact_repo

    def _upload(self, local: Path, artifact_dir: str | None) -> None:
        """Upload one file to a remote artifact store (one request through a tracking server)."""
        calls.call(self._repo().log_artifact, str(local), artifact_dir)
        own = self._own_run()
        if own is not None:
            own.add_artifacts([posixpath.join(artifact_dir or "", local.name)])

    def _log_local_path(self, path: Path, artifact_path: str | None) -> None:
        run_id = self._require_id()
        if self._local_artifact_dir() is None:
            if path.is_file():
                self._upload(path, artifact_path)
                return
            calls.call(self._repo().log_artifacts, str(path), artifact_path)
            own = self._own_run()
            if own is not None:
                own.add_artifacts([posixpath.join(artifact_path or "", f.relative_to(path).as_posix())
                                   for f in path.rglob("*") if f.is_file()])
            return
        if path.is_dir():
            calls.call(self._client.log_artifacts, run_id, str(path), artifact_path)
        else:
            calls.call(self._client.log_artifact, run_id, str(path), artifact_path)

    def _save_objects(self, objs: Mapping[str, Any], artifact_path: str | None) -> None:
        run_id = self._require_id()
        local = self._local_artifact_dir()
        if local is None:
            self._upload_objects(run_id, objs, artifact_path)
            return
        for name, obj in objs.items():
            rel = f"{artifact_path}/{name}" if artifact_path else name
            # One writer per (run, name) at a time, across threads and (on local stores) processes:
            # the file and its checksum tag then always belong to the same save.
            with _object_lock(run_id, rel, local):
                checksum = objects.dump_to_file(obj, local / rel, name, objects.staging_dir_for(local))
                # Written now, not queued: another process may load the object right after this call.
                self._write_tags_now(run_id, [(objects.checksum_tag(rel), checksum)])

    def _upload_objects(self, run_id: str, objs: Mapping[str, Any], artifact_path: str | None) -> None:
        """Upload each object (one request each), then write all their checksum tags at once."""
        rels = {name: f"{artifact_path}/{name}" if artifact_path else name for name in objs}
        tags: list[tuple[str, str]] = []
        with contextlib.ExitStack() as held:
            for rel in sorted(rels.values()):  # a fixed order: two saves never wait on each other
                held.enter_context(_object_lock(run_id, rel, None))
            tmpdir = Path(tempfile.mkdtemp(prefix="qrecorder-"))
            held.callback(shutil.rmtree, tmpdir, True)
            for name, obj in objs.items():
                rel = rels[name]
                tmp = tmpdir / Path(name).name
                checksum = objects.dump_to_file(obj, tmp, name)
                self._upload(tmp, posix_parent(rel))
                if tmp.stat().st_size <= _download_cache_limit() // 4:
                    # what we uploaded is what a load here would download: keep it
                    key = (str(self._uri), run_id, rel, objects.parse_checksum(checksum, legacy=False))
                    _remember_download(key, tmp.read_bytes())
                tmp.unlink()
                tags.append((objects.checksum_tag(rel), checksum))
            # Written before returning, not left queued: another process may load them right away.
            self._write_tags_now(run_id, tags)

    def _write_tags_now(self, run_id: str, tags: list[tuple[str, str]]) -> None:
        sink = self._store.sql_sink
        if sink is not None:
            calls.call(sink.log_batch, run_id, [], [], tags)
        elif self._store.kind == "http":
            # Through the writer and flushed at once: the values logged since its last batch
            # go in the same request.
            self._store.writer.submit(run_id, "t", tags, len(tags))
            self._store.writer.flush(run_id)
        else:
            from mlflow.entities import RunTag

            calls.call(self._client.log_batch, run_id, tags=[RunTag(k, v) for k, v in tags])
        own = self._own_run()
        if own is not None:
            own.tags.update(tags)

    def load_object(
        self,
        name: str,
        unpickler: Any = None,
        *,
        restricted: bool = False,
        allow: tuple[str, ...] = (),
        allowed_modules: tuple[str, ...] | None = None,
        require_checksum: bool | None = None,
    ) -> Any:
        """Unpickle artifact ``name`` after verifying the checksum recorded by save_objects.

        The file is read once into memory and checked before any byte is unpickled.
        ``restricted=True`` admits only allow-listed globals (numpy, pandas, builtins' containers;
        add exact ``module.qualname`` entries with ``allow=``), for artifacts you did not write
        yourself. ``require_checksum=True`` (or ``QRECORDER_REQUIRE_CHECKSUM=1``) refuses objects
        that have no recorded checksum (uploaded files, Qlib-era runs). Raises LoadObjectError.
        """
        rel = objects.clean_object_name(name)
        if allowed_modules:  # the pre-0.2 keyword: its entries are now exact names too
            allow = (*allow, *allowed_modules)
        if restricted:
            objects.allowed_pairs(allow)  # refuse a bad allow= before reading anything
        if require_checksum is None:
            require_checksum = os.environ.get("QRECORDER_REQUIRE_CHECKSUM", "").strip().lower() in ("1", "true", "yes")
        run_id = self._require_id()
        self._store.writer.flush(run_id)
        own = self._own_run()
        if own is not None and own.artifacts is not None and rel not in own.artifacts:
            # A run started here and not ended holds only what was uploaded here: no request.
            raise LoadObjectError(f"No artifact named {name!r} in recorder {run_id} (nothing was saved under that name).")
        for attempt in (0, 1):
            # While the run is ours its tags are known; a mismatch re-reads them (another process
            # may have saved the same name meanwhile).
            tags = own.tags if own is not None and attempt == 0 else self._fetch_run().data.tags
            checksum = objects.recorded_checksum(tags, rel)
            if checksum is None and require_checksum:
                raise LoadObjectError(
                    f"Artifact {name!r} of recorder {run_id} has no recorded checksum, and require_checksum is on: "
                    "it was not saved by save_objects (or predates checksums). Load it with require_checksum=False "
                    "if you trust it."
                )
            key = (str(self._uri), run_id, rel, checksum) if checksum is not None else None
            with _DOWNLOADS_LOCK:
                cached = _DOWNLOADS.get(key) if key is not None else None
            try:
                data = bytearray(cached) if cached is not None else self._read_object_bytes(run_id, rel, name)
                objects.verify(data, name, checksum)
                if cached is None and key is not None and self._local_artifact_dir() is None:
                    _remember_download(key, data)
            except LoadObjectError as exc:
                # A save of the same name by another process may sit between its file and its tag.
                if attempt == 0 and checksum is not None and "checksum" in str(exc):
                    time.sleep(0.05)
                    continue
                raise
            return objects.unpickle(data, name, unpickler, restricted, allow)
        raise AssertionError("unreachable")

    def _read_object_bytes(self, run_id: str, rel: str, name: str) -> bytearray:
        local = self._local_artifact_dir()
        if local is not None:
            path = objects.path_inside(local, rel, name)
            if not path.is_file():
                if path.exists():
                    raise LoadObjectError(f"Artifact {name!r} is a folder, not a pickled object.")
                raise LoadObjectError(f"No artifact named {name!r} in this recorder ({path} does not exist).")
            return objects._read_all(path, name)
        from mlflow.exceptions import MlflowException
        from requests import RequestException

        tmpdir = tempfile.mkdtemp(prefix="qrecorder-")
        try:
            try:
                path = calls.call(self._repo().download_artifacts, rel, tmpdir)
            except (MlflowException, OSError, RequestException) as exc:
                raise LoadObjectError(f"No artifact named {name!r} in recorder {run_id}: {exc}") from exc
            return objects._read_all(objects.path_inside(Path(tmpdir), os.path.relpath(path, tmpdir), name), name)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def list_artifacts(self, artifact_path: str | None = None) -> list[str]:
        run_id = self._require_id()
        return [a.path for a in calls.call(self._client.list_artifacts, run_id, artifact_path)]

    def download_artifact(self, path: str, dst_path: str | None = None) -> str:
        """Copy an artifact (file or folder) to ``dst_path`` (a temp folder by default)."""
        run_id = self._require_id()
        if dst_path is not None:
            Path(dst_path).mkdir(parents=True, exist_ok=True)
        if self._local_artifact_dir() is None:
            return calls.call(self._repo().download_artifacts, path, dst_path)
        return calls.call(self._client.download_artifacts, run_id, path, dst_path)

    # ------------------------------------------------------------------ reads
    def _synced_run(self) -> Run:
        if self.id is not None:
            self._store.writer.flush(self.id)
        return self._fetch_run()

    def list_metrics(self) -> dict[str, float]:
        own = self._own_run()
        if own is not None and own.metrics is not None:
            self._store.writer.flush(self._require_id())  # durable, and a lost batch is raised here
            with own.lock:
                return {k: v[3] for k, v in own.metrics.items()}
        return dict(self._synced_run().data.metrics)

    def list_params(self) -> dict[str, str]:
        if self._own_run() is not None:
            self._store.writer.flush(self._require_id())
            with self._params_lock:
                return dict(self._params)  # every param of the run, whole
        params = dict(self._synced_run().data.params)
        return {k: self._expand(k, v, "params") for k, v in params.items()}

    def list_tags(self) -> dict[str, str]:
        own = self._own_run()
        if own is not None:
            self._store.writer.flush(self._require_id())
            tags = dict(own.tags)
        else:
            tags = dict(self._synced_run().data.tags)
        return {k: self._expand(k, v, "tags") for k, v in tags.items()}

    def get_metric_history(self, key: str) -> list[tuple[int, float, int]]:
        """(step, value, timestamp) of every value logged for ``key``, in step order."""
        run_id = self._require_id()
        self._store.writer.flush(run_id)
        history = calls.call(self._client.get_metric_history, run_id, key)
        return sorted(((m.step, m.value, m.timestamp) for m in history), key=lambda t: (t[0], t[2]))

    def _expand(self, key: str, value: str, kind: str) -> str:
        """Replace a long-value pointer by the full text kept as an artifact.

        Only the pointer qrecorder itself writes for this key is followed
        (``qrecorder/long_values/<kind>/<key>.txt``, inside the run): a value that merely looks
        like a pointer, e.g. one naming ``../../etc/passwd``, is returned as it is.
        """
        if not value.endswith("]") or LONG_VALUE_MARKER not in value:
            return value
        artifact = value[value.rindex(LONG_VALUE_MARKER) + len(LONG_VALUE_MARKER) : -1]
        if artifact != _long_value_artifact(kind, key):
            return value
        local = self._local_artifact_dir()
        try:
            if local is not None:
                return objects.path_inside(local, artifact, key).read_text(encoding="utf-8")
            return _download_text(self, artifact)
        except Exception as exc:  # noqa: BLE001 - one lost value must not break every read
            logger.warning(
                "qrecorder: the full value of %r (artifact %s of run %s) could not be read (%s); its stored, "
                "shortened form is returned", key, artifact, self.id, exc,
            )
            return value

    def refresh(self) -> MLflowRecorder:
        """Re-read status, times and name from the store."""
        self._apply_run(self._fetch_run())
        return self


def _long_value_artifact(kind: str, key: str) -> str:
    return f"{LONG_VALUE_DIR}/{kind}/{key}.txt"


_OBJECT_LOCKS_GUARD = threading.Lock()
_OBJECT_LOCKS: dict[tuple[str, str], threading.Lock] = {}


@contextlib.contextmanager
def _object_lock(run_id: str, rel: str, local: Path | None) -> Iterator[None]:
    """Serialise saves of one object name in one run: threads here, processes by a file lock."""
    with _OBJECT_LOCKS_GUARD:
        lock = _OBJECT_LOCKS.setdefault((run_id, rel), threading.Lock())
    with lock:
        if local is None:
            yield
            return
        from filelock import FileLock

        staging = objects.staging_dir_for(local)
        staging.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(rel.encode("utf-8")).hexdigest()
        with FileLock(str(staging / f"{digest}.lock")):
            yield


def posix_parent(rel: str) -> str | None:
    parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
    return parent or None


def _download_text(recorder: MLflowRecorder, artifact: str) -> str:
    tmpdir = tempfile.mkdtemp(prefix="qrecorder-")
    try:
        path = recorder.download_artifact(artifact, tmpdir)
        return Path(path).read_text(encoding="utf-8")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _run_tags(tags: Mapping[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in tags.items()]


def _user(kind: str) -> str:
    """Who the run belongs to: the logged-in user of a tracking server, else the OS user."""
    if kind == "http":
        login = os.environ.get("MLFLOW_TRACKING_USERNAME", "").strip()
        if login:
            return login
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


def _rebuild_recorder(cls: type[MLflowRecorder], state: tuple[Any, ...]) -> MLflowRecorder:
    """Unpickle a recorder: the same run on the same store, not running in this process."""
    experiment_id, uri, name, rid, status, start_time, end_time, artifact_uri = state
    rec = cls(experiment_id, uri, name)
    rec.id, rec.status, rec.start_time, rec.end_time = rid, status, start_time, end_time
    rec._artifact_uri = artifact_uri
    return rec
