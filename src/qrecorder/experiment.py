"""The abstract Experiment: a named group of recorders, with Qlib's get-or-create rules."""

from __future__ import annotations

import logging
from typing import Any, Final, Literal, overload

from .errors import RecorderNotFoundError
from .recorder import Recorder
from .validation import check_names

logger = logging.getLogger("qrecorder")


class Experiment:
    """An experiment holds recorders; at most one of them is active per Experiment object."""

    RT_D: Final = "dict"
    RT_L: Final = "list"

    def __init__(self, id: str, name: str) -> None:  # noqa: A002 - Qlib's argument name
        self.id = id
        self.name = name
        self.active_recorder: Recorder | None = None
        self._default_rec_name = "abstract_recorder"

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(id={self.id!r}, name={self.name!r})"

    def __str__(self) -> str:
        return str({"class": "Experiment", "id": self.id, "name": self.name})

    def __eq__(self, other: object) -> bool:
        # The same experiment whichever class it was handed out as (qrecorder's R makes
        # Qlib-compatible objects once Qlib is imported; Qlib's R makes its own): same id, same store.
        return (isinstance(other, Experiment) and other.id == self.id
                and getattr(other, "uri", None) == getattr(self, "uri", None))

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def info(self) -> dict[str, Any]:
        recorders = self.list_recorders()
        return {
            "class": "Experiment",
            "id": self.id,
            "name": self.name,
            "active_recorder": self.active_recorder.id if self.active_recorder is not None else None,
            "recorders": list(recorders.keys()),
        }

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, recorder_id: str | None = None, recorder_name: str | None = None, resume: bool = False) -> Recorder:
        """Start a recorder and make it active.

        ``resume=True`` continues the recorder with ``recorder_id`` (or the latest one named
        ``recorder_name``), creating it if there is none. A ``recorder_id`` given without
        ``resume`` also continues that recorder (Qlib silently ignored it).
        """
        check_names(recorder_id=recorder_id, recorder_name=recorder_name)
        if recorder_name is None and recorder_id is None:
            recorder_name = self._default_rec_name
        if recorder_id is not None:
            recorder = self._get_recorder(recorder_id=recorder_id)
        elif resume:
            recorder, _ = self._get_or_create_rec(recorder_name=recorder_name)
        else:
            recorder = self.create_recorder(recorder_name)
        recorder.start_run()
        self.active_recorder = recorder
        return recorder

    def end(self, recorder_status: str = Recorder.STATUS_FI) -> None:
        """End the active recorder with ``recorder_status``; a no-op when none is active."""
        recorder, self.active_recorder = self.active_recorder, None
        if recorder is not None:
            recorder.end_run(recorder_status)

    # ------------------------------------------------------------------ recorders
    def get_recorder(
        self,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        create: bool = True,
        start: bool = False,
    ) -> Recorder:
        """Qlib's rules (qlib/workflow/exp.py): no id/name → the active recorder, else the
        latest recorder with the default name (``"mlflow_recorder"``); with id/name → that
        recorder. A missing recorder is created when ``create``, else RecorderNotFoundError.
        ``start`` makes the recorder active and running when none is active."""
        if recorder_id is None and recorder_name is None:
            if self.active_recorder is not None:
                return self.active_recorder
            recorder_name = self._default_rec_name
        if create:
            recorder, is_new = self._get_or_create_rec(recorder_id=recorder_id, recorder_name=recorder_name)
        else:
            recorder, is_new = self._get_recorder(recorder_id=recorder_id, recorder_name=recorder_name), False
        if start and self.active_recorder is None:
            if is_new or recorder.status != Recorder.STATUS_R:
                recorder.start_run()
            self.active_recorder = recorder
        return recorder

    def _get_or_create_rec(self, recorder_id: str | None = None, recorder_name: str | None = None) -> tuple[Recorder, bool]:
        if recorder_id is None and recorder_name is None:
            recorder_name = self._default_rec_name
        try:
            return self._get_recorder(recorder_id=recorder_id, recorder_name=recorder_name), False
        except RecorderNotFoundError:
            if recorder_id is not None:
                raise
            logger.info("No recorder named %r in experiment %r; creating it.", recorder_name, self.name)
            return self.create_recorder(recorder_name), True

    def create_recorder(self, recorder_name: str | None = None) -> Recorder:
        raise NotImplementedError

    def _get_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None) -> Recorder:
        raise NotImplementedError

    @overload
    def list_recorders(
        self,
        rtype: Literal["dict"] = ...,
        max_results: int | None = ...,
        status: str | None = ...,
        filter_string: str = ...,
    ) -> dict[str, Recorder]: ...

    @overload
    def list_recorders(
        self,
        rtype: Literal["list"],
        max_results: int | None = ...,
        status: str | None = ...,
        filter_string: str = ...,
    ) -> list[Recorder]: ...

    def list_recorders(
        self,
        rtype: Literal["dict", "list"] = RT_D,
        max_results: int | None = None,
        status: str | None = None,
        filter_string: str = "",
    ) -> dict[str, Recorder] | list[Recorder]:
        """Recorders of this experiment, newest first (a dict by id, or a list); ``status``
        and ``filter_string`` are answered by the store (``_recorders``)."""
        if rtype not in (self.RT_D, self.RT_L):
            raise ValueError(f"rtype must be 'dict' or 'list', got {rtype!r}.")
        recorders = self._recorders(max_results, status, filter_string or "")
        if rtype == self.RT_L:
            return recorders
        return {r.id: r for r in recorders}  # type: ignore[misc]

    def _recorders(self, max_results: int | None, status: str | None, filter_string: str) -> list[Recorder]:
        """The store's side of ``list_recorders``: matching recorders, newest first."""
        raise NotImplementedError

    def search_records(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    def delete_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ notebooks
    def _repr_html_(self, max_rows: int = 50) -> str:
        """A notebook's view: the experiment and its newest ``max_rows`` recorders as an HTML table."""
        import html

        head = f"<b>Experiment</b> {html.escape(str(self.name))} <code>{html.escape(str(self.id))}</code>"
        try:
            recs = self.list_recorders(rtype=self.RT_L, max_results=max_rows + 1)
        except Exception as exc:  # noqa: BLE001 - a display must not raise; say why it is short
            return f"<div class='qrec-experiment'>{head}<p>(could not list recorders: {html.escape(str(exc))})</p></div>"
        recs = list(recs.values()) if isinstance(recs, dict) else list(recs)
        more = len(recs) > max_rows
        rows = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(v))}</td>"
                             for v in (r.id, r.name, r.status, r.start_time, r.end_time)) + "</tr>"
            for r in recs[:max_rows])
        heads = "".join(f"<th>{h}</th>" for h in ("id", "name", "status", "start", "end"))
        return (f"<div class='qrec-experiment'>{head}: {len(recs[:max_rows])}{'+' if more else ''} recorder(s)"
                f"<table><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>"
                + (f"<p>(first {max_rows} shown)</p>" if more else "") + "</div>")
