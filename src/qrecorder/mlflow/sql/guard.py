"""The one guard of every direct SQL path: may qrecorder read and write MLflow's tables itself?

qrecorder's fast paths bypass MLflow's ORM: :mod:`.reads` (search and get by SELECT),
:mod:`.writes` (experiments, runs, metrics, params, tags and run end by INSERT/UPDATE) and
:mod:`qrecorder.mlflow.sql.quick` (``qrec experiments`` / ``qrec runs`` on SQLite without importing
MLflow). They are exact only on schemas they were checked against. This module holds that
check, once:

- ``VERIFIED``: every Alembic head revision of the MLflow 3.x releases pip can install, each
  with the releases that ship it and what the direct paths must know about it
  (:class:`Capabilities`). How each was verified is in ``docs/mlflow-versions.md``; the matrix
  ``./run test-mlflow VERSION...`` re-runs the proof for a release.
- :func:`direct_sql_allowed` decides for a SQLAlchemy engine (once per engine) and
  :func:`sqlite_decision` for a plain :mod:`sqlite3` connection (once per database file). A
  :class:`Decision` says whether the direct path may be used, at which revision and why; the
  reason is logged once (INFO when the direct path is refused, DEBUG when it is taken).

The decision needs, in this order: exactly one row in ``alembic_version``, a revision listed
in ``VERIFIED``, every column the direct paths use present, no experiment outside MLflow's
``default`` workspace (schemas from 3.10 on carry ``experiments.workspace``; MLflow's
single-tenant store refuses such databases, so only the workspace-aware API may answer), and,
when the installed MLflow is a release listed here, the database at that release's head (an
older or newer database is one MLflow itself will not open: its API gives the error).

This module imports only the standard library: the CLI's quick path uses it before (and
instead of) importing MLflow or SQLAlchemy.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("qrecorder")

DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True)
class Capabilities:
    """What the direct paths need to know about one schema revision."""

    #: The MLflow releases whose schema head this revision is.
    releases: tuple[str, ...]
    #: ``experiments.workspace`` exists (MLflow >= 3.10). Single-tenant MLflow only opens a
    #: database whose experiments are all in the ``default`` workspace; the guard checks that.
    experiment_workspaces: bool = False
    #: ``metrics`` has the (run_uuid, key, step) index (MLflow >= 3.12): speed only.
    metrics_step_index: bool = False

    @property
    def line(self) -> str:
        """The release line(s), e.g. ``3.0.1-3.1.4``."""
        return self.releases[0] if len(self.releases) == 1 else f"{self.releases[0]}-{self.releases[-1]}"


_WS = {"experiment_workspaces": True}
_WS_IDX = {"experiment_workspaces": True, "metrics_step_index": True}

#: Alembic head revision -> capabilities, for every MLflow 3.x release pip installs here
#: (3.18.0 pins an mlflow-skinny the registry lacks). Between these heads the tables the direct
#: paths use (runs, metrics, latest_metrics, params, tags, experiments, inputs) changed only by
#: ``experiments.workspace`` (1b5f0d9ad7c1, 3.10), an index on ``metrics`` (a5b4c3d2e1f0, 3.12)
#: and ``experiment_tags.value`` becoming TEXT (17e22815139b, 3.16; not used directly).
VERIFIED: dict[str, Capabilities] = {
    "6953534de441": Capabilities(("3.0.0", "3.1.0")),
    "bda7b8c39065": Capabilities(("3.0.1", "3.1.1", "3.1.3", "3.1.4")),
    "770bee3ae1dd": Capabilities(("3.2.0",)),
    "1a0cddfcaa16": Capabilities(("3.3.0", "3.3.1", "3.3.2")),
    "71994744cf8e": Capabilities(("3.4.0",)),
    "bf29a5ff90ea": Capabilities(("3.5.0", "3.5.1", "3.6.0", "3.7.0")),
    "1bd49d398cd23": Capabilities(("3.8.0", "3.8.1")),
    "d3e4f5a6b7c8": Capabilities(("3.9.0",)),
    "1b5f0d9ad7c1": Capabilities(("3.10.0", "3.10.1"), **_WS),
    "c3d6457b6d8a": Capabilities(("3.11.1",), **_WS),
    "7d34483879f0": Capabilities(("3.12.0",), **_WS_IDX),
    "da6fb0208061": Capabilities(("3.13.0",), **_WS_IDX),
    "b7e4c1a90f23": Capabilities(("3.14.0",), **_WS_IDX),
    "6f8d9c3b2a1e": Capabilities(("3.15.0", "3.15.1", "3.15.2"), **_WS_IDX),
    "b7e2c1a4d9f3": Capabilities(("3.16.0", "3.16.1"), **_WS_IDX),
    "dc11669786a5": Capabilities(("3.17.0", "3.17.1", "3.17.2"), **_WS_IDX),
}

#: Release -> its schema head (derived from VERIFIED).
HEAD_OF_RELEASE: dict[str, str] = {rel: rev for rev, caps in VERIFIED.items() for rel in caps.releases}

#: Every column a direct path reads or writes, per table.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "runs": (
        "run_uuid", "name", "experiment_id", "user_id", "status", "start_time", "end_time",
        "lifecycle_stage", "artifact_uri",
    ),
    "metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
    "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
    "params": ("key", "value", "run_uuid"),
    "tags": ("key", "value", "run_uuid"),
    "experiments": ("experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time"),
    "inputs": ("source_type", "source_id", "destination_type", "destination_id"),
}


@dataclass(frozen=True)
class Decision:
    """Whether the direct SQL paths may be used on one database, and why."""

    allowed: bool
    revision: str  # the database's Alembic revision ("" if unknown)
    reason: str
    capabilities: Capabilities | None = None

    def __bool__(self) -> bool:
        return self.allowed


Rows = Callable[[str], Sequence[Sequence[Any]]]


_installed: list[str | None] = []  # the installed MLflow's version, once read


def installed_mlflow_version() -> str | None:
    """The installed MLflow's version, read once per process without importing MLflow: from
    its ``mlflow/version.py`` (a file read), else from its package metadata (importing
    ``importlib.metadata`` and scanning site-packages costs a fresh process 30-300 ms)."""
    if not _installed:
        _installed.append(_version_from_source() or _version_from_metadata())
    return _installed[0]


def _version_from_source() -> str | None:
    import importlib.util
    from pathlib import Path

    try:
        spec = importlib.util.find_spec("mlflow")
        for folder in (spec.submodule_search_locations or []) if spec is not None else []:
            source = Path(folder, "version.py")
            if source.is_file():
                found = re.search(r'^VERSION = "(\d+\.\d+[^"]*)"', source.read_text(encoding="utf-8"), re.M)
                if found:
                    return found.group(1)
    except (ImportError, ValueError, OSError):
        pass
    return None


def _version_from_metadata() -> str | None:
    from importlib import metadata

    for dist in ("mlflow", "mlflow-skinny"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def decide(rows: Rows, mlflow_version: str | None = None) -> Decision:
    """The decision for a database reached through ``rows(sql) -> rows`` (which may raise).

    ``mlflow_version`` is the installed MLflow's (None: do not compare the database with it).
    """
    try:
        found = [r[0] for r in rows("SELECT version_num FROM alembic_version")]
    except Exception as exc:  # noqa: BLE001 - not an MLflow SQL store (or not initialised)
        return Decision(False, "", f"no readable alembic_version table ({_first_line(exc)})")
    if len(found) != 1:
        return Decision(False, ",".join(map(str, found)), f"alembic_version has {len(found)} rows, expected 1")
    revision = str(found[0])
    caps = VERIFIED.get(revision)
    if caps is None:
        return Decision(
            False,
            revision,
            f"schema revision {revision} is not one qrecorder was verified against "
            f"(MLflow {_first_release()} to {_last_release()})",
        )
    for table, columns in REQUIRED_COLUMNS.items():
        # Qualified: SQLite reads an unknown bare "name" as a string literal, not an error.
        select = ", ".join(f't."{c}"' for c in columns)
        try:
            rows(f"SELECT {select} FROM {table} t WHERE 1 = 0")
        except Exception as exc:  # noqa: BLE001
            return Decision(False, revision, f"table {table} lacks a column the direct paths use ({_first_line(exc)})", caps)
    if caps.experiment_workspaces:
        try:
            other = rows(f"SELECT 1 FROM experiments WHERE workspace <> '{DEFAULT_WORKSPACE}' LIMIT 1")
        except Exception as exc:  # noqa: BLE001
            return Decision(False, revision, f"experiments.workspace unreadable ({_first_line(exc)})", caps)
        if other:
            return Decision(
                False,
                revision,
                "experiments exist outside the default workspace: only MLflow's workspace-aware store may answer",
                caps,
            )
    if mlflow_version is not None:
        expected = HEAD_OF_RELEASE.get(mlflow_version)
        if expected is not None and expected != revision:
            return Decision(
                False,
                revision,
                f"the database is at {revision} (MLflow {caps.line}) but the installed MLflow "
                f"{mlflow_version} expects {expected}: MLflow itself will not open it until it is "
                "migrated (mlflow db upgrade)",
                caps,
            )
    notes = [f"schema revision {revision} (MLflow {caps.line}) is verified"]
    if caps.experiment_workspaces:
        notes.append("experiments carry a workspace column, all in 'default'")
    if mlflow_version is not None and mlflow_version not in HEAD_OF_RELEASE:
        notes.append(f"installed MLflow {mlflow_version} is not a listed release; the schema is")
    return Decision(True, revision, "; ".join(notes), caps)


# ------------------------------------------------------------------------------ per release
@dataclass(frozen=True)
class Behaviour:
    """What MLflow's *code* (not its schema) does differently across the verified releases,
    which the direct read path copies to answer exactly as the installed MLflow does."""

    #: ``search_runs`` sets ``run.outputs`` (3.6 on; before, None; ``get_run`` always sets it).
    search_runs_outputs: bool = True
    #: Metric filters never match a NaN value except with ``!=`` (3.17 on; before, NaN is
    #: compared as the 0 stored in its place).
    metric_filters_skip_nan: bool = True
    #: MLflow's filter parser gives ``start_time``/``end_time`` numbers as numbers (3.17 on;
    #: before, as text, which SQLite compares as numbers and PostgreSQL refuses).
    time_filters_numeric: bool = True


def release_tuple(version: str | None) -> tuple[int, ...] | None:
    """(3, 17, 2) for "3.17.2" (pre/dev suffixes dropped); None if unparsable."""
    if not version:
        return None
    parts = []
    for piece in version.split(".")[:3]:
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
    return tuple(parts) or None


def behaviour_of(version: str | None) -> Behaviour:
    """The behaviour of MLflow ``version`` (an unknown or newer one: the newest verified)."""
    parsed = release_tuple(version)
    if parsed is None:
        return Behaviour()
    line = parsed[:2]
    return Behaviour(search_runs_outputs=line >= (3, 6), metric_filters_skip_nan=line >= (3, 17),
                     time_filters_numeric=line >= (3, 17))


_behaviour: Behaviour | None = None


def behaviour() -> Behaviour:
    """The installed MLflow's :class:`Behaviour` (read once)."""
    global _behaviour
    if _behaviour is None:
        _behaviour = behaviour_of(installed_mlflow_version())
    return _behaviour


# ------------------------------------------------------------------------------ per engine
_NO_CONNECTION = "cannot connect"
_by_engine: weakref.WeakKeyDictionary[Any, Decision] = weakref.WeakKeyDictionary()
_by_path: dict[str, Decision] = {}
_lock = threading.Lock()


def direct_sql_allowed(engine: Any) -> Decision:
    """The decision for MLflow's SQLAlchemy ``engine`` (SQLite or PostgreSQL), made once."""
    if engine is None:
        return Decision(False, "", "no SQL engine (not a SQLite or PostgreSQL store)")
    try:
        return _by_engine[engine]
    except (KeyError, TypeError):
        pass
    with _lock:
        cached = _by_engine.get(engine)
        if cached is not None:
            return cached
        decision = _decide_engine(engine)
        _log(decision, _describe_engine(engine))
        if decision.reason.startswith(_NO_CONNECTION):
            return decision  # perhaps passing: decide again next time
        try:
            _by_engine[engine] = decision
        except TypeError:  # not weak-referenceable: decide each time
            pass
        return decision


def _decide_engine(engine: Any) -> Decision:
    dialect = getattr(getattr(engine, "dialect", None), "name", None)
    if dialect not in ("sqlite", "postgresql"):
        return Decision(False, "", f"dialect {dialect!r} is not SQLite or PostgreSQL")
    try:
        conn = engine.raw_connection()
    except Exception as exc:  # noqa: BLE001
        return Decision(False, "", f"{_NO_CONNECTION} ({_first_line(exc)})")
    try:

        def rows(sql: str) -> Sequence[Sequence[Any]]:
            cur = conn.cursor()
            try:
                cur.execute(sql)
                return cur.fetchall()
            finally:
                cur.close()

        return decide(rows, installed_mlflow_version())
    finally:
        try:
            conn.rollback()  # end PostgreSQL's implicit transaction (or a failed statement's)
        except Exception:  # noqa: BLE001
            pass
        conn.close()


def sqlite_decision(con: Any, path: Any) -> Decision:
    """The decision for a :mod:`sqlite3` connection to the database file ``path``, made once
    per file and process (:func:`forget` drops it)."""
    key = str(path)
    cached = _by_path.get(key)
    if cached is not None:
        return cached

    def rows(sql: str) -> Sequence[Sequence[Any]]:
        return con.execute(sql).fetchall()

    decision = decide(rows, installed_mlflow_version())
    with _lock:
        if key not in _by_path:
            _by_path[key] = decision
            _log(decision, f"sqlite:///{key}")
    return _by_path[key]


def forget() -> None:
    """Drop every cached decision (e.g. after ``mlflow db upgrade`` in this process)."""
    with _lock:
        _by_engine.clear()
        _by_path.clear()


def _log(decision: Decision, where: str) -> None:
    if decision.allowed:
        logger.debug("qrecorder: direct SQL paths on for %s: %s", where, decision.reason)
    else:
        logger.info("qrecorder: direct SQL paths off for %s, using MLflow's API: %s", where, decision.reason)


def _describe_engine(engine: Any) -> str:
    try:
        return engine.url.render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return repr(engine)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _first_release() -> str:
    return next(iter(VERIFIED.values())).releases[0]


def _last_release() -> str:
    return list(VERIFIED.values())[-1].releases[-1]


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
