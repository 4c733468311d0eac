"""Tracking-URI resolution: which store a call writes to, made absolute once at set time.

No MLflow import here: resolving a URI must stay cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlparse

from .errors import UnsupportedURIError

DEFAULT_DB_NAME = "mlflow.db"
DEFAULT_ARTIFACT_DIR = "mlartifacts"
ENV_URI = "QRECORDER_URI"
ENV_ARTIFACT_ROOT = "QRECORDER_ARTIFACT_ROOT"

_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mssql")
# Query parameters of a SQLite URI passed on to the driver (SQLAlchemy's pysqlite dialect).
# Others would either be ignored by SQLAlchemy (with only a warning) or change how the file is
# opened under qrecorder's feet (uri=true, mode=ro, isolation_level): they are refused.
SQLITE_QUERY_PARAMS = ("timeout", "cached_statements")


@dataclass(frozen=True)
class StoreLocation:
    """A resolved tracking URI with what qrecorder needs to know about it."""

    uri: str
    kind: str  # "sqlite" | "postgresql" | "mysql" | "mssql" | "file" | "http"
    path: Path | None = None  # the db file (sqlite) or the mlruns folder (file)
    query: str = ""  # SQLite: the driver parameters kept in ``uri`` (e.g. "timeout=30")

    @property
    def sqlite_timeout_ms(self) -> int | None:
        """``?timeout=<seconds>`` of a SQLite URI in milliseconds (the per-statement lock wait)."""
        for key, value in parse_qsl(self.query):
            if key == "timeout":
                return max(0, int(float(value) * 1000))
        return None


def default_uri(cwd: str | os.PathLike[str] | None = None) -> str:
    """The store used when nothing is configured: ``./mlflow.db`` (absolute)."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    return sqlite_uri_path((base / DEFAULT_DB_NAME).resolve())


def sqlite_uri_path(path: Path, scheme: str = "sqlite") -> str:
    """``sqlite:///<path>`` as SQLAlchemy (so MLflow) reads it back to ``path``: it decodes
    ``%XX`` in the database path and ends it at ``?``, so those two are escaped; every other
    character is kept as is (a plain path gives the plain URI)."""
    text = str(path).replace("%", "%25").replace("?", "%3F")
    return f"{scheme}:///{text}"


def configured_uri() -> str:
    """The URI from the environment (QRECORDER_URI, then MLFLOW_TRACKING_URI) or the default."""
    for name in (ENV_URI, "MLFLOW_TRACKING_URI"):
        value = os.environ.get(name, "").strip()
        if value:
            return resolve_uri(value).uri
    return default_uri()


def resolve_uri(uri: str | os.PathLike[str]) -> StoreLocation:
    """Normalize ``uri``; relative local paths become absolute (against the current directory).

    Accepted: ``sqlite:///path.db`` (optionally ``?timeout=<seconds>``), ``postgresql://...``, ``mysql://...``, ``http(s)://host``,
    ``file:/path`` or ``file:relative`` (legacy Qlib ``mlruns``), and a bare path (a ``.db``
    file means SQLite, anything else a ``file:`` store).
    """
    text = os.fspath(uri).strip()
    if not text:
        raise UnsupportedURIError("The tracking URI is empty: pass e.g. 'sqlite:///mlflow.db'.")
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    if len(scheme) == 1 and os.name == "nt":  # a Windows drive letter, not a scheme
        scheme = ""
    base_scheme = scheme.split("+", 1)[0]
    if scheme == "":
        path = Path(text).expanduser().resolve()
        if path.suffix in (".db", ".sqlite", ".sqlite3"):
            return StoreLocation(sqlite_uri_path(path), "sqlite", path)
        return StoreLocation(path.as_uri(), "file", path)
    if base_scheme == "sqlite":
        raw = text[len(parsed.scheme) + 1 :]
        query = ""
        if "?" in raw:
            raw, query = raw.split("?", 1)
            query = _sqlite_query(query, text)
        if raw.startswith("///"):
            db = unquote(raw[3:])
        elif raw.startswith("//"):
            db = unquote(raw[2:])
        else:
            raise UnsupportedURIError(f"Malformed SQLite URI {text!r}: write 'sqlite:///relative.db' or 'sqlite:////abs/path.db'.")
        if db in ("", ":memory:"):
            raise UnsupportedURIError(
                "An in-memory SQLite store cannot be shared with the background writer: use a file, "
                "e.g. 'sqlite:///mlflow.db'."
            )
        path = Path(db).expanduser().resolve()
        suffix = f"?{query}" if query else ""
        return StoreLocation(sqlite_uri_path(path, parsed.scheme) + suffix, "sqlite", path, query)
    if base_scheme in ("postgresql", "postgres"):
        fixed = text if base_scheme == "postgresql" else "postgresql" + text[len("postgres") :]
        return StoreLocation(fixed, "postgresql")
    if base_scheme in ("mysql", "mssql"):
        return StoreLocation(text, base_scheme)
    if scheme in ("http", "https"):
        return StoreLocation(text.rstrip("/"), "http")
    if scheme == "file":
        raw = text[len("file:") :]
        if raw.startswith("//"):
            netloc_path = unquote(parsed.netloc + parsed.path)
            path = Path(netloc_path if parsed.netloc in ("", "localhost") else "/" + netloc_path)
            if parsed.netloc == "localhost":
                path = Path(unquote(parsed.path))
        else:
            path = Path(unquote(raw))
        path = path.expanduser().resolve()
        return StoreLocation(path.as_uri(), "file", path)
    raise UnsupportedURIError(
        f"Unsupported tracking URI scheme {parsed.scheme!r} in {text!r}. Use sqlite:///..., "
        "postgresql://..., http(s)://<mlflow server> or file:<mlruns folder>."
    )


def _sqlite_query(query: str, text: str) -> str:
    """The accepted driver parameters of a SQLite URI, normalised; anything else is refused."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise UnsupportedURIError(f"Malformed query string in SQLite URI {text!r}: {exc}.") from exc
    for key, value in pairs:
        if key not in SQLITE_QUERY_PARAMS:
            raise UnsupportedURIError(
                f"SQLite URI {text!r}: query parameter {key!r} is not supported. qrecorder passes only "
                f"{', '.join(SQLITE_QUERY_PARAMS)} to the driver (timeout=<seconds> caps how long one statement "
                "waits for a lock; the whole retry budget is QRECORDER_RETRY_SECONDS). Remove it from the URI."
            )
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if number < 0 or (key == "cached_statements" and not number.is_integer()):
            raise UnsupportedURIError(f"SQLite URI {text!r}: {key}={value!r} must be a non-negative number.")
    return urlencode(pairs)


def artifact_root_for(location: StoreLocation) -> str | None:
    """Where new experiments keep their artifacts, or None to let the store/server decide.

    SQLite: a folder beside the database. Direct SQL databases: QRECORDER_ARTIFACT_ROOT or
    ``./mlartifacts``. Servers and file stores manage their own.
    """
    override = os.environ.get(ENV_ARTIFACT_ROOT, "").strip()
    if location.kind == "sqlite":
        assert location.path is not None
        root = Path(override).expanduser().resolve() if override else location.path.parent / DEFAULT_ARTIFACT_DIR
        return str(root)
    if location.kind in ("postgresql", "mysql", "mssql"):
        if override and "://" in override:
            return override.rstrip("/")
        return str(Path(override or DEFAULT_ARTIFACT_DIR).expanduser().resolve())
    return None


def lock_path_for(location: StoreLocation) -> Path | None:
    """Absolute path of the lock file that serializes schema and experiment creation."""
    if location.path is None:
        return None
    return location.path.with_name(location.path.name + ".qrecorder.lock")
