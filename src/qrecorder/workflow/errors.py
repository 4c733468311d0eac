"""Config errors that name the file and the field, so the fix is obvious."""

from __future__ import annotations

from qrecorder.errors import QRecorderError


class ConfigError(QRecorderError, ValueError):
    """A workflow config is wrong. ``source`` is the file (or "<dict>"), ``field`` a dotted path."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source, self.field, self.reason = source, field, message
        where = ": ".join(p for p in (source, field) if p)
        super().__init__(f"{where}: {message}" if where else message)
