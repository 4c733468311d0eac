"""Errors raised by the data layer: they name the file and the column at fault."""

from __future__ import annotations

from qrecorder.errors import QRecorderError


class DataError(QRecorderError, ValueError):
    """A panel is unusable; the message says which file and which column, and what to fix."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source = source
        self.field = field
        where = ", ".join(p for p in (source, f"column {field!r}" if field else None) if p)
        super().__init__(f"{where}: {message}" if where else message)
