"""A read-only SQLite path for ``qrec experiments`` / ``qrec runs`` that never imports MLflow.

Importing MLflow costs 2-3 s, more than the whole answer may take. For the common listing
(a SQLite store, no filter string, MLflow's default order ``start_time DESC, run_uuid``)
the rows are read with :mod:`sqlite3` directly, only when the schema guard
(:func:`qrecorder.mlflow.sql.guard.sqlite_decision`, the one the fast read and write paths use)
allows direct SQL on the database. Anything else returns None and the command goes through
the core (MLflow's API or the fast read path), which gives MLflow's answer or its error.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ... import tags as tagnames

_IN_CHUNK = 500


def _enabled() -> bool:
    return os.environ.get("QRECORDER_FAST_READS", "1").strip().lower() not in ("0", "false", "no", "off")


def connect(db_path: Path | None) -> sqlite3.Connection | None:
    """A read-only connection when the schema is verified, else None."""
    if db_path is None or not _enabled() or not db_path.is_file():
        return None
    from .guard import sqlite_decision  # standard library only: MLflow is not imported

    try:
        # A SQLite URI: the path is percent-encoded ('?', '#' and '%' would cut or change it).
        con = sqlite3.connect(f"file:{quote(str(db_path))}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    if not sqlite_decision(con, db_path.resolve()).allowed:
        con.close()
        return None
    return con


def experiments(con: sqlite3.Connection, include_deleted: bool = False) -> list[dict[str, Any]]:
    stages = ("active", "deleted") if include_deleted else ("active",)
    marks = ", ".join("?" for _ in stages)
    rows = con.execute(
        "SELECT e.experiment_id, e.name, e.lifecycle_stage, e.artifact_location, e.creation_time, "
        "(SELECT COUNT(*) FROM runs r WHERE r.experiment_id = e.experiment_id AND r.lifecycle_stage = 'active') "
        f"FROM experiments e WHERE e.lifecycle_stage IN ({marks}) ORDER BY e.creation_time DESC, e.experiment_id ASC",
        stages,
    ).fetchall()
    return [
        {"experiment_id": str(r[0]), "name": r[1], "lifecycle_stage": r[2], "artifact_location": r[3],
         "creation_time": r[4], "runs": r[5]}
        for r in rows
    ]


def find_experiment(con: sqlite3.Connection, ident: str) -> tuple[str, str] | None:
    """(id, name) of the active experiment named ``ident``, else with id ``ident``."""
    row = con.execute(
        "SELECT experiment_id, name FROM experiments WHERE name = ? AND lifecycle_stage = 'active'", (ident,)
    ).fetchone()
    if row is None and ident.isdigit():
        row = con.execute(
            "SELECT experiment_id, name FROM experiments WHERE experiment_id = ? AND lifecycle_stage = 'active'",
            (int(ident),),
        ).fetchone()
    return (str(row[0]), row[1]) if row else None


def runs(con: sqlite3.Connection, experiment_id: str, status: str | None, limit: int | None) -> tuple[list[dict[str, Any]], int]:
    """Runs newest first (MLflow's default order) with latest metrics and params; and the total."""
    where = "r.experiment_id = ? AND r.lifecycle_stage = 'active'"
    args: list[Any] = [int(experiment_id)]
    if status:
        where += " AND r.status = ?"
        args.append(status)
    total = con.execute(f"SELECT COUNT(*) FROM runs r WHERE {where}", args).fetchone()[0]
    sql = (
        "SELECT r.run_uuid, r.name, r.status, r.start_time, r.end_time, r.experiment_id "
        f"FROM runs r WHERE {where} ORDER BY r.start_time DESC, r.run_uuid ASC"
    )
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    out = [
        {"run_id": r[0], "name": r[1], "status": r[2], "start_time": r[3], "end_time": r[4],
         "experiment_id": str(r[5]), "metrics": {}, "params": {}}
        for r in con.execute(sql, args)
    ]
    index = {run["run_id"]: run for run in out}
    ids = list(index)
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        for run_id, key, value, is_nan in con.execute(
            f'SELECT run_uuid, "key", "value", is_nan FROM latest_metrics WHERE run_uuid IN ({marks})', chunk
        ):
            index[run_id]["metrics"][key] = float("nan") if is_nan else value
        for run_id, key, value in con.execute(
            f'SELECT run_uuid, "key", "value" FROM params WHERE run_uuid IN ({marks})', chunk
        ):
            index[run_id]["params"][key] = value
        nameless = [rid for rid in chunk if not index[rid]["name"]]
        if nameless:
            marks2 = ", ".join("?" for _ in nameless)
            for run_id, value in con.execute(
                f"SELECT run_uuid, \"value\" FROM tags WHERE \"key\" = ? AND run_uuid IN ({marks2})",
                [tagnames.MLFLOW_RUN_NAME, *nameless],
            ):
                index[run_id]["name"] = value
    return out, total
