"""The abstract Recorder: one run of an experiment, with Qlib's status machine and checks.

Backends implement the underscore methods; the public methods validate input in the caller's
thread so that a bad key or value fails at the call site and never in a background writer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from . import tags as tag_keys  # `tags` is a common local name here
from . import validation
from .errors import InvalidValueError, ParamConflictError, RecorderStateError, SaveObjectError


class Recorder:
    """A run: params, metrics, tags, artifacts and pickled objects, with a status.

    Statuses follow Qlib (SCHEDULED, RUNNING, FINISHED, FAILED) plus KILLED for runs stopped
    by Ctrl-C or SIGTERM.
    """

    STATUS_S = "SCHEDULED"
    STATUS_R = "RUNNING"
    STATUS_FI = "FINISHED"
    STATUS_FA = "FAILED"
    STATUS_K = "KILLED"
    STATUSES = (STATUS_S, STATUS_R, STATUS_FI, STATUS_FA, STATUS_K)

    def __init__(self, experiment_id: str, name: str | None) -> None:
        self.id: str | None = None
        self.name = name
        self.experiment_id = experiment_id
        self.start_time: str | None = None
        self.end_time: str | None = None
        self.status = Recorder.STATUS_S
        self._params: dict[str, str] = {}  # params known to be stored, for conflict checks
        self._params_lock = threading.Lock()

    # ------------------------------------------------------------------ description
    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(info={self.info})"

    def __str__(self) -> str:
        return str(self.info)

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recorder) and other.id is not None and other.id == self.id

    @property
    def info(self) -> dict[str, Any]:
        return {
            "class": "Recorder",
            "id": self.id,
            "name": self.name,
            "experiment_id": self.experiment_id,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "status": self.status,
        }

    def set_recorder_name(self, rname: str) -> None:
        self.name = rname

    @staticmethod
    def _now_text() -> str:
        return datetime.now().strftime("%Y-%m-%d %H:%M:%S")

    # ------------------------------------------------------------------ lifecycle
    def start_run(self) -> Any:
        """Mark the run RUNNING and begin capturing provenance and heartbeats."""
        if self.status == Recorder.STATUS_R and self._is_started():
            raise RecorderStateError(f"Recorder {self.id} is already running in this process.")
        validation.refresh_policy()
        return self._start_run()

    def end_run(self, status: str = STATUS_FI) -> None:
        """Flush everything logged, then set the final status and end time.

        Qlib's default here was SCHEDULED; qrecorder ends a run FINISHED unless told otherwise.
        Raises LoggingFailedError if queued values could not be written (the status is still
        set, FAILED when the caller asked for FINISHED, so the run never lies).
        """
        if status not in Recorder.STATUSES:
            raise InvalidValueError(f"Unknown recorder status {status!r}; use one of {', '.join(Recorder.STATUSES)}.")
        self._end_run(status)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every value logged so far is durable in the store."""
        self._flush(timeout)

    # ------------------------------------------------------------------ logging
    def log_params(self, **kwargs: Any) -> None:
        """Log params. MLflow params are immutable: the same value again is a no-op, another
        value raises ParamConflictError. Values longer than MLflow's 6000 characters are kept
        whole as an artifact (see ``list_params``)."""
        items: dict[str, str] = {}
        with self._params_lock:
            for key, value in kwargs.items():
                validation.check_key(key, "Param")
                text = validation.stringify(value, key)
                old = self._params.get(key, items.get(key))
                if old is not None:
                    if old != text:
                        raise ParamConflictError(
                            f"Param {key!r} of recorder {self.id} is already {old[:200]!r}; MLflow params "
                            f"cannot change (new value {text[:200]!r}). Log it under another key or use a tag."
                        )
                    continue
                items[key] = text
            if items:
                self._params.update(items)
        if items:
            try:
                self._log_params(items)
            except BaseException:
                with self._params_lock:
                    for key in items:
                        self._params.pop(key, None)
                raise

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        """Log metrics at ``step``; values are checked here and written in the background."""
        if not kwargs:
            return
        step_value = step if step.__class__ is int and -(2**63) <= step < 2**63 else validation.check_step(step)
        policy = validation.NONFINITE_POLICY
        timestamp = time.time_ns() // 1_000_000
        known = validation.VALID_KEYS
        items = []
        # The hot path of a training loop: plain str keys seen before and float values.
        for key, value in kwargs.items():
            if key not in known:
                validation.check_key(key, "Metric")
            if value.__class__ is not float or policy == "raise":
                value = validation.check_metric_value(key, value, policy)
            items.append((key, value))
        self._log_metrics(items, step_value, timestamp)

    def set_tags(self, **kwargs: Any) -> None:
        """Set tags (mutable, unlike params). Long values are kept whole as an artifact."""
        items = {validation.check_key(k, "Tag"): validation.stringify(v, k) for k, v in kwargs.items()}
        if items:
            self._set_tags(items)

    def delete_tags(self, *keys: str) -> None:
        for key in keys:
            validation.check_key(key, "Tag")
        self._delete_tags(keys)

    # ------------------------------------------------------------------ objects and artifacts
    def save_objects(self, local_path: str | Path | None = None, artifact_path: str | None = None, **kwargs: Any) -> None:
        """Save a local file/folder (``local_path``) or pickle Python objects given as keywords."""
        if local_path is not None and kwargs:
            raise SaveObjectError(
                "save_objects takes either local_path (a file or folder to upload) or objects as keywords, "
                f"not both (got local_path={str(local_path)!r} and {sorted(kwargs)})."
            )
        if local_path is None and not kwargs:
            raise SaveObjectError("save_objects needs local_path or at least one object as a keyword argument.")
        if artifact_path is not None:
            artifact_path = _clean_artifact_path(artifact_path)
        if local_path is not None:
            path = Path(local_path)
            if not path.exists():
                raise SaveObjectError(f"save_objects: local_path {str(path)!r} does not exist.")
            self._log_local_path(path, artifact_path)
            return
        # One spelling per object: "./pred.pkl" and "sub//x" are saved, tagged and loaded as
        # "pred.pkl" and "sub/x" (else the checksum tag and the file would go by different names).
        objects: dict[str, Any] = {}
        for name, obj in kwargs.items():
            clean = _clean_artifact_path(name)
            if clean in objects:
                raise SaveObjectError(f"save_objects got two names for the object {clean!r}: {sorted(kwargs)}.")
            objects[clean] = obj
        self._save_objects(objects, artifact_path)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(local_path)
        if not path.exists():
            raise SaveObjectError(f"log_artifact: {str(path)!r} does not exist.")
        self._log_local_path(path, _clean_artifact_path(artifact_path) if artifact_path else None)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Save ``text`` as the artifact ``artifact_file`` (e.g. "notes/summary.md")."""
        self._write_text(str(text), _clean_artifact_path(artifact_file))

    # ------------------------------------------------------------------ backend hooks
    def _write_text(self, text: str, artifact_file: str) -> None:
        raise NotImplementedError

    def _is_started(self) -> bool:
        raise NotImplementedError

    def _start_run(self) -> Any:
        raise NotImplementedError

    def _end_run(self, status: str) -> None:
        raise NotImplementedError

    def _flush(self, timeout: float | None) -> None:
        raise NotImplementedError

    def _log_params(self, items: Mapping[str, str]) -> None:
        raise NotImplementedError

    def _log_metrics(self, items: list[tuple[str, float]], step: int, timestamp: int) -> None:
        raise NotImplementedError

    def _set_tags(self, items: Mapping[str, str]) -> None:
        raise NotImplementedError

    def _delete_tags(self, keys: tuple[str, ...]) -> None:
        raise NotImplementedError

    def _log_local_path(self, path: Path, artifact_path: str | None) -> None:
        raise NotImplementedError

    def _save_objects(self, objects: Mapping[str, Any], artifact_path: str | None) -> None:
        raise NotImplementedError

    def load_object(self, name: str, unpickler: Any = None, *, restricted: bool = False, allow: tuple[str, ...] = ()) -> Any:
        raise NotImplementedError

    def list_artifacts(self, artifact_path: str | None = None) -> list[str]:
        raise NotImplementedError

    def download_artifact(self, path: str, dst_path: str | None = None) -> str:
        raise NotImplementedError

    def list_metrics(self) -> dict[str, float]:
        raise NotImplementedError

    def list_params(self) -> dict[str, str]:
        raise NotImplementedError

    def list_tags(self) -> dict[str, str]:
        raise NotImplementedError

    def get_local_dir(self) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ notebooks
    def _repr_html_(self) -> str:
        """A notebook's view: the run's info, params, latest metrics and tags (not MLflow's own nor checksums)."""
        import html

        def table(title: str, items: Mapping[str, Any]) -> str:
            rows = "".join(f"<tr><td style='text-align:left'>{html.escape(str(k))}</td>"
                           f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in sorted(items.items()))
            return f"<details open><summary>{title} ({len(items)})</summary><table>{rows}</table></details>"

        parts = [f"<b>Recorder</b> {html.escape(str(self.name))} <code>{html.escape(str(self.id))}</code> "
                 f"(experiment <code>{html.escape(str(self.experiment_id))}</code>): <b>{html.escape(str(self.status))}</b>"
                 f", started {html.escape(str(self.start_time))}, ended {html.escape(str(self.end_time))}"]
        if self.id is not None:
            try:
                tags = {k: v for k, v in self.list_tags().items()
                        if not k.startswith((tag_keys.MLFLOW_PREFIX, tag_keys.CHECKSUM_PREFIX))}
                parts += [table("params", self.list_params()), table("metrics", self.list_metrics()), table("tags", tags)]
            except Exception as exc:  # noqa: BLE001 - a display must not raise; say why it is short
                parts.append(f"<p>(could not read the run: {html.escape(f'{type(exc).__name__}: {exc}')})</p>")
        return "<div class='qrec-recorder'>" + "".join(parts) + "</div>"


def _clean_artifact_path(path: str) -> str:
    """Refuse artifact paths that would escape the run's artifact folder."""
    import posixpath

    text = str(path).replace("\\", "/")
    norm = posixpath.normpath(text)
    if text.startswith("/") or norm.startswith("..") or norm == ".":
        raise SaveObjectError(f"Artifact path {path!r} must be relative and stay inside the run (no '/' prefix, no '..').")
    return norm
