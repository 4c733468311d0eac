"""The fast read path: read-only SQL over MLflow's own schema, for SQLite and PostgreSQL stores.

MLflow's ``search_runs`` loads every run as an ORM object with three eager-loaded relations,
then converts each to an entity, then looks up dataset inputs and model outputs: seconds for
10,000 runs. The same answer is three or four plain SELECTs. This module builds them, but only
where it can give *exactly* what MLflow's API gives:

- the store is MLflow's plain ``SqlAlchemyStore`` on SQLite or PostgreSQL (not the
  workspace-aware one, not HTTP, not the legacy ``file:`` store);
- the schema guard (:mod:`.schema`, shared with the write path and the CLI) allows direct
  SQL on the database: an Alembic revision qrecorder was verified against, with the columns
  read here;
- the filter and ``order_by`` parse (with MLflow's own parser) into clauses translated here
  with MLflow's semantics: string ``=``/``!=``/``IN``/``NOT IN`` on ``status``, ``run_id``
  and ``run_name`` (which MLflow matches against the ``mlflow.runName`` tag), numeric
  comparisons on ``start_time``/``end_time``, ``params``/``tags`` with ``=``/``!=``/
  ``IS NULL``/``IS NOT NULL``, ``metrics`` with ``< <= = != >= >`` (NaN never matches except
  ``!=``); ordering by ``start_time``/``end_time``/``run_name``/``status``, metrics, params and
  tags, with MLflow's NULL/NaN placement and its ``start_time DESC, run_uuid`` tie-break;
- none of the runs have dataset inputs or logged-model inputs/outputs (MLflow's Run carries
  those; qrecorder never writes them).

Everything else returns ``None``, and the caller uses MLflow's API (``query.search_runs``).
The ordering is done by the database itself with the same expressions MLflow emits, so
collation and float ordering are the database's, as in MLflow.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ... import tags as tagnames
from .entities import LightMetric, LightRun, LightRunData, LightRunInfo

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store
    from .db import Database

logger = logging.getLogger("qrecorder")

ACTIVE_ONLY, DELETED_ONLY, ALL = 1, 2, 3
_STAGES = {ACTIVE_ONLY: ("active",), DELETED_ONLY: ("deleted",), ALL: ("active", "deleted")}
_IN_CHUNK = 500  # bound ids per IN (...) list, well below SQLite's limit
_BULK_THRESHOLD = 2000  # above this many runs covering half the table: scan it instead

_RUN_COLS = (
    "r.run_uuid, r.name, r.experiment_id, r.user_id, r.status, r.start_time, r.end_time, "
    "r.lifecycle_stage, r.artifact_uri"
)
_ATTR_COLUMNS = {
    "status": "r.status",
    "run_id": "r.run_uuid",
    "start_time": "r.start_time",
    "end_time": "r.end_time",
}
_ORDER_ATTR_COLUMNS = {
    "start_time": "r.start_time",
    "end_time": "r.end_time",
    "run_name": "r.name",
    "status": "r.status",
}
_CHILD_TABLES = {"metric": "latest_metrics", "parameter": "params", "tag": "tags"}
_RUN_NAME_TAG = tagnames.MLFLOW_RUN_NAME


class Unsupported(Exception):
    """A filter, order or store the fast path does not translate (the API path is used)."""


# ---------------------------------------------------------------------------------- readers
def reader_for(store: Store) -> Database | None:
    """The store's direct SQL access (:mod:`.db`), or None when the fast path does not apply."""
    from .db import database_for

    return database_for(store)


def enabled() -> bool:
    """False when QRECORDER_FAST_READS=0: every read then goes through MLflow's API."""
    return os.environ.get("QRECORDER_FAST_READS", "1").strip().lower() not in ("0", "false", "no", "off")


def forget(store_uri: str | None = None) -> None:
    """Drop cached decisions (all, or the one of ``store_uri``), e.g. after a schema upgrade."""
    from . import db

    db.forget(store_uri)


# ---------------------------------------------------------------------------------- plans
@dataclass
class _Plan:
    joins: list[str] = field(default_factory=list)  # LEFT JOINs for ordering
    where: list[str] = field(default_factory=list)
    where_params: list[Any] = field(default_factory=list)
    join_params: list[Any] = field(default_factory=list)
    order: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=256)
def _plan(filter_string: str, order_by: tuple[str, ...]) -> _Plan | None:
    try:
        plan = _Plan()
        _translate_filter(filter_string, plan)
        _translate_order(order_by, plan)
        return plan
    except Unsupported:
        return None
    except Exception:  # noqa: BLE001 - MLflow's parser refused it: let the API raise its error
        return None


# MLflow's filter grammar is parsed by its own parser (importing MLflow, ~1.7 s). The few
# shapes qrecorder itself sends (a status, a run name, a start time, a tag) are parsed here
# into exactly what MLflow's parser returns (tests/test_fastread.py compares the two); any
# other text goes to MLflow's parser.
_STR = r"'(?P<s1>[^'\\]*)'|\"(?P<s2>[^\"\\]*)\""
_NUM = r"(?P<num>-?\d+(?:\.\d+)?)"
_KEY = r"`(?P<k1>[^`]+)`|(?P<k2>[A-Za-z_][A-Za-z0-9_]*)"
_CLAUSE = re.compile(
    r"\s*(?:attributes\.(?P<attr>status|run_name|run_id|start_time|end_time)"
    rf"|(?P<kind>tags|params|metrics)\.(?:{_KEY}))"
    rf"\s*(?P<op>!=|<=|>=|=|<|>)\s*(?:{_STR}|{_NUM})\s*"
)
_AND = re.compile(r"(?i)and\b")
_SIMPLE_KINDS = {"tags": "tag", "params": "parameter", "metrics": "metric"}
_SIMPLE_ORDER = re.compile(r"\s*(?:attributes\.)?(?P<key>start_time|end_time|run_name|status)(?:\s+(?P<dir>ASC|DESC))?\s*")


def _time_filters_numeric() -> bool:
    from .guard import behaviour

    return behaviour().time_filters_numeric


def parse_simple_filter(filter_string: str) -> list[dict[str, Any]] | None:
    """The clauses of a filter of the shapes qrecorder itself sends, as MLflow's
    ``SearchUtils.parse_search_filter`` returns them; None for anything else."""
    clauses: list[dict[str, Any]] = []
    pos, text = 0, filter_string
    while True:
        m = _CLAUSE.match(text, pos)
        if m is None:
            return None
        attr, op, num = m.group("attr"), m.group("op"), m.group("num")
        string = m.group("s1") if m.group("s1") is not None else m.group("s2")
        if attr is not None:
            if attr in ("start_time", "end_time"):
                if num is None or not _time_filters_numeric():
                    return None  # MLflow < 3.17 parses these as text: its parser and the API decide
                value: Any = float(num) if "." in num else int(num)
            elif string is None or op not in ("=", "!="):
                return None
            else:
                value = string
            clauses.append({"type": "attribute", "key": attr, "comparator": op, "value": value})
        else:
            kind = _SIMPLE_KINDS[m.group("kind")]
            key = m.group("k1") if m.group("k1") is not None else m.group("k2")
            if kind == "metric":
                if num is None:
                    return None
                value = num
            elif string is None or op not in ("=", "!="):
                return None
            else:
                value = string
            clauses.append({"type": kind, "key": key, "comparator": op, "value": value})
        pos = m.end()
        if pos == len(text):
            return clauses
        a = _AND.match(text, pos)
        if a is None or pos == m.start() + len(m.group(0).rstrip()):  # "and" needs a space before it
            return None
        pos = a.end()


def parse_simple_order(text: str) -> tuple[str, str, bool] | None:
    """``SearchUtils.parse_order_by_for_search_runs`` for an attribute order, else None."""
    m = _SIMPLE_ORDER.fullmatch(text)
    if m is None:
        return None
    return "attribute", m.group("key"), m.group("dir") != "DESC"


def _translate_filter(filter_string: str, plan: _Plan) -> None:
    if not filter_string or not filter_string.strip():
        return
    clauses = parse_simple_filter(filter_string)
    if clauses is None:
        from mlflow.utils.search_utils import SearchUtils

        clauses = [
            {**c, "key": SearchUtils.translate_key_alias(c.get("key"))}
            for c in SearchUtils.parse_search_filter(filter_string)
        ]
    for clause in clauses:
        kind = clause.get("type")
        key = clause.get("key")
        comparator = str(clause.get("comparator")).upper()
        value = clause.get("value")
        if kind == "attribute":
            _attribute_filter(str(key), comparator, value, plan)
        elif kind in ("metric", "parameter", "tag"):
            _child_filter(str(kind), str(key), comparator, value, plan)
        else:
            raise Unsupported(kind)


def _attribute_filter(key: str, comparator: str, value: Any, plan: _Plan) -> None:
    if key == "run_name":
        # MLflow matches run_name against the mlflow.runName tag (old runs lack the column).
        if comparator not in ("=", "!="):
            raise Unsupported(comparator)
        plan.where.append(
            'r.run_uuid IN (SELECT run_uuid FROM tags WHERE "key" = ? AND "value" ' + comparator + " ?)"
        )
        plan.where_params += [_RUN_NAME_TAG, value]
        return
    column = _ATTR_COLUMNS.get(key)
    if column is None:
        raise Unsupported(key)
    if key in ("start_time", "end_time"):
        # Older MLflow parsers keep the number as text, which SQLite compares as a number and
        # PostgreSQL refuses: step aside (isinstance str below) and let MLflow answer or raise.
        if comparator not in ("=", "!=", "<", "<=", ">", ">=") or isinstance(value, (str, bytes, tuple)):
            raise Unsupported(comparator)
        plan.where.append(f"{column} {comparator} ?")
        plan.where_params.append(int(value) if float(value).is_integer() else float(value))
        return
    if comparator in ("=", "!=") and isinstance(value, str):
        plan.where.append(f"{column} {comparator} ?")
        plan.where_params.append(value)
    elif comparator in ("IN", "NOT IN") and isinstance(value, (tuple, list)) and value:
        marks = ", ".join("?" for _ in value)
        plan.where.append(f"{column} {comparator} ({marks})")
        plan.where_params.extend(value)
    else:
        raise Unsupported(comparator)


def _child_filter(kind: str, key: str, comparator: str, value: Any, plan: _Plan) -> None:
    table = _CHILD_TABLES[kind]
    if comparator in ("IS NULL", "IS NOT NULL"):
        negate = "NOT " if comparator == "IS NULL" else ""
        plan.where.append(
            f'{negate}EXISTS (SELECT 1 FROM {table} c WHERE c.run_uuid = r.run_uuid AND c."key" = ?)'
        )
        plan.where_params.append(key)
        return
    if kind == "metric":
        if comparator not in ("=", "!=", "<", "<=", ">", ">="):
            raise Unsupported(comparator)
        number = float(value)
        from .guard import behaviour

        if not behaviour().metric_filters_skip_nan:  # MLflow < 3.17: NaN compares as its stored 0
            cond = f'"value" {comparator} ?'
        elif comparator == "!=":
            cond = '("value" != ? OR is_nan = true)'
        else:
            cond = f'("value" {comparator} ? AND is_nan = false)'
        plan.where.append(f'r.run_uuid IN (SELECT run_uuid FROM latest_metrics WHERE "key" = ? AND {cond})')
        plan.where_params += [key, number]
        return
    if comparator not in ("=", "!=") or not isinstance(value, str):
        raise Unsupported(comparator)
    plan.where.append(
        f'r.run_uuid IN (SELECT run_uuid FROM {table} WHERE "key" = ? AND "value" {comparator} ?)'
    )
    plan.where_params += [key, value]


def _translate_order(order_by: tuple[str, ...], plan: _Plan) -> None:
    seen: set[tuple[str, str]] = set()
    for n, text in enumerate(order_by, start=1):
        simple = parse_simple_order(text)
        if simple is not None:
            kind, key, ascending = simple
        else:
            from mlflow.utils.search_utils import SearchUtils

            kind, key, ascending = SearchUtils.parse_order_by_for_search_runs(text)
            key = SearchUtils.translate_key_alias(key)
        if (kind, key) in seen:
            raise Unsupported("duplicate order_by field")  # MLflow raises: let it
        seen.add((kind, key))
        direction = "" if ascending else " DESC"
        if kind == "attribute":
            column = _ORDER_ATTR_COLUMNS.get(key)
            if column is None:
                raise Unsupported(key)
            plan.order.append(f"CASE WHEN {column} IS NULL THEN 1 ELSE 0 END")
            plan.order.append(column + direction)
            continue
        table = _CHILD_TABLES.get(kind)
        if table is None:
            raise Unsupported(kind)
        alias = f"o{n}"
        if kind == "metric":
            plan.joins.append(
                f'LEFT OUTER JOIN (SELECT run_uuid, "value", is_nan FROM latest_metrics WHERE "key" = ?) {alias} '
                f"ON {alias}.run_uuid = r.run_uuid"
            )
            plan.order.append(
                f'CASE WHEN {alias}.is_nan = true THEN 1 WHEN {alias}."value" IS NULL THEN 2 ELSE 0 END'
            )
            plan.join_params.append(key)
        else:
            plan.joins.append(
                f'LEFT OUTER JOIN (SELECT run_uuid, "value" FROM {table} WHERE "key" = ?) {alias} '
                f"ON {alias}.run_uuid = r.run_uuid"
            )
            plan.join_params.append(key)
            plan.order.append(f'CASE WHEN {alias}."value" IS NULL THEN 1 ELSE 0 END')
        plan.order.append(f'{alias}."value"{direction}')
    if ("attribute", "start_time") not in seen:
        plan.order.append("r.start_time DESC")
    plan.order.append("r.run_uuid")


# ---------------------------------------------------------------------------------- queries
Children = dict[str, list[tuple[Any, ...]]]  # run_uuid -> rows without the run_uuid


def _experiment_ints(experiment_ids: Any) -> list[int] | None:
    if isinstance(experiment_ids, (str, int)):
        experiment_ids = [experiment_ids]
    out = []
    for e in experiment_ids:
        try:
            out.append(int(e))
        except (TypeError, ValueError):
            return None  # MLflow raises its own error for these: let it
    return out


def _select_runs(
    store: Store,
    experiment_ids: Any,
    filter_string: str,
    run_view_type: int,
    max_results: int | None,
    order_by: Sequence[str] | None,
) -> tuple[Database, list[tuple[Any, ...]]] | None:
    """The run rows MLflow's search would return, in its order; None if not translatable."""
    reader = reader_for(store)
    if reader is None or not enabled():
        return None
    try:
        stages = _STAGES.get(int(run_view_type or ACTIVE_ONLY))
    except (TypeError, ValueError):
        return None
    exp_ids = _experiment_ints(experiment_ids)
    plan = _plan(filter_string or "", tuple(order_by or ()))
    if stages is None or exp_ids is None or plan is None:
        return None
    if (max_results is not None and max_results <= 0) or not exp_ids:
        return reader, []
    where = [
        f"r.experiment_id IN ({', '.join('?' for _ in exp_ids)})",
        f"r.lifecycle_stage IN ({', '.join('?' for _ in stages)})",
        *plan.where,
    ]
    sql = f"SELECT {_RUN_COLS} FROM runs r {' '.join(plan.joins)} WHERE {' AND '.join(where)} ORDER BY {', '.join(plan.order)}"
    params: list[Any] = [*plan.join_params, *exp_ids, *stages, *plan.where_params]
    if max_results is not None:
        sql += " LIMIT ?"
        params.append(int(max_results))
    try:
        return reader, reader.rows(sql, params)
    except Exception as exc:  # noqa: BLE001 - the API path will give the real error, if any
        logger.debug("qrecorder: fast search failed, using MLflow's API: %s", exc)
        return None


_METRIC_SELECT = 'SELECT run_uuid, "key", "value", "timestamp", step, is_nan FROM latest_metrics'
_METRIC_SELECT_SHORT = 'SELECT run_uuid, "key", "value", is_nan FROM latest_metrics'
_PARAM_SELECT = 'SELECT run_uuid, "key", "value" FROM params'
_TAG_SELECT = 'SELECT run_uuid, "key", "value" FROM tags'


def _selectors(reader: Database, ids: list[str]) -> list[tuple[str, list[Any]]]:
    """WHERE conditions on run_uuid covering ``ids``: IN lists, or nothing (a full scan, the
    extra rows dropped by the caller) when the runs are most of the table."""
    if len(ids) > _BULK_THRESHOLD:
        total = reader.rows("SELECT COUNT(*) FROM runs")[0][0]
        if 2 * len(ids) >= total:
            return [("", [])]
    return [
        (f" WHERE run_uuid IN ({', '.join('?' for _ in chunk)})", chunk)
        for chunk in (ids[i : i + _IN_CHUNK] for i in range(0, len(ids), _IN_CHUNK))
    ]


def _children(reader: Database, select: str, selectors: list[tuple[str, list[Any]]], wanted: Any) -> Children:
    out: Children = {}
    for cond, params in selectors:
        for row in reader.rows(select + cond, params):
            run_id = row[0]
            bucket = out.get(run_id)
            if bucket is None:
                if run_id not in wanted:
                    continue
                out[run_id] = [row[1:]]
            else:
                bucket.append(row[1:])
    return out


def _columns(
    reader: Database, select: str, selectors: list[tuple[str, list[Any]]], index: dict[str, int], fill: Any, metric: bool
) -> dict[str, list[Any]]:
    """key -> one value per run (in ``index`` order, ``fill`` where absent), in one pass over
    the rows (metrics: NaN where ``is_nan``)."""
    n = len(index)
    nan = float("nan")
    cols: dict[str, list[Any]] = {}
    get_index, get_col = index.get, cols.get
    for cond, params in selectors:
        for row in reader.rows(select + cond, params):
            i = get_index(row[0])
            if i is None:
                continue
            col = get_col(row[1])
            if col is None:
                col = cols[row[1]] = [fill] * n
            col[i] = (nan if row[3] else row[2]) if metric else row[2]
    return cols


def _has_inputs(reader: Database, ids: list[str]) -> bool:
    """True if any of the runs has dataset inputs or logged-model inputs/outputs."""
    if not reader.rows("SELECT 1 FROM inputs LIMIT 1"):
        return False  # the usual case: none in the whole store
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = ids[i : i + _IN_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        sql = (
            f"SELECT 1 FROM inputs WHERE (destination_type = 'RUN' AND destination_id IN ({marks})) "
            f"OR (source_type IN ('RUN_INPUT', 'RUN_OUTPUT') AND source_id IN ({marks})) LIMIT 1"
        )
        if reader.rows(sql, [*chunk, *chunk]):
            return True
    return False


# ---------------------------------------------------------------------------------- entities
def _run_data_layout_ok() -> bool:
    """RunData is built without its constructor (no Param/RunTag object per value); check
    once that MLflow's attribute layout is the one written here, else use the constructor."""
    from mlflow.entities import Metric, Param, RunData, RunTag

    metric = Metric("k", 1.0, 2, 3)
    data = RunData(metrics=[metric], params=[Param("p", "v")], tags=[RunTag("t", "w")])
    return vars(data) == {
        "_metric_objs": [metric],
        "_metrics": {"k": 1.0},
        "_params": {"p": "v"},
        "_tags": {"t": "w"},
    }


@functools.lru_cache(maxsize=1)
def _fast_run_data() -> bool:
    try:
        return _run_data_layout_ok()
    except Exception:  # noqa: BLE001
        return False


def _run_info(row: tuple[Any, ...], tags: list[tuple[Any, ...]], light: bool = False) -> Any:
    run_id, name, exp, user, status, start, end, stage, uri = row
    if not name:  # as SqlRun.to_mlflow_entity: old runs keep the name in a tag only
        name = next((v for k, v in tags if k == _RUN_NAME_TAG), None) or name
    if light:
        return LightRunInfo(run_id, str(exp), user, status, start, end, stage, uri, name)
    from mlflow.entities import RunInfo

    return RunInfo(run_id, str(exp), user, status, start, end, stage, uri, name)


def _run_data(
    metrics: list[tuple[Any, ...]], params: list[tuple[Any, ...]], tags: list[tuple[Any, ...]], light: bool = False
) -> Any:
    nan = float("nan")
    if light:
        objs_light = [LightMetric(k, nan if is_nan else v, ts, step) for k, v, ts, step, is_nan in metrics]
        return LightRunData({m.key: m.value for m in objs_light}, dict(params), dict(tags), objs_light)
    from mlflow.entities import Metric, Param, RunData, RunTag

    objs = [Metric(k, nan if is_nan else v, ts, step) for k, v, ts, step, is_nan in metrics]
    if not _fast_run_data():
        return RunData(
            metrics=objs, params=[Param(k, v) for k, v in params], tags=[RunTag(k, v) for k, v in tags]
        )
    data = object.__new__(RunData)
    data.__dict__.update(
        _metric_objs=objs,
        _metrics={m.key: m.value for m in objs},
        _params=dict(params),
        _tags=dict(tags),
    )
    return data


class _Batch:
    """Runs of one search whose data (metrics, params, tags) is read in bulk on first use."""

    def __init__(self, reader: Database, runs: list[Any], light: bool = False) -> None:
        self.reader = reader
        self.runs = runs
        self.light = light
        self.lock = threading.Lock()
        self.loaded = False

    def load(self) -> None:
        with self.lock:
            if self.loaded:
                return
            ids = [run._info.run_id for run in self.runs]
            wanted = set(ids)
            selectors = _selectors(self.reader, ids)
            metrics = _children(self.reader, _METRIC_SELECT, selectors, wanted)
            params = _children(self.reader, _PARAM_SELECT, selectors, wanted)
            tags = _children(self.reader, _TAG_SELECT, selectors, wanted)
            empty: list[tuple[Any, ...]] = []
            for run, run_id in zip(self.runs, ids, strict=True):
                run._data = _run_data(
                    metrics.get(run_id, empty), params.get(run_id, empty), tags.get(run_id, empty), self.light
                )
                run._batch = None
            self.loaded = True


@functools.lru_cache(maxsize=1)
def _lazy_run_class() -> Any:
    from mlflow.entities import Run

    class LazyRun(Run):
        """An ``mlflow.entities.Run`` whose ``data`` is read (for its whole search) on first use."""

        _batch: _Batch | None = None

        @property
        def data(self) -> Any:
            batch = self._batch
            if batch is not None:
                batch.load()
            return self._data

        @classmethod
        def _properties(cls) -> list[str]:
            return Run._properties()

        def __reduce__(self) -> Any:  # pickles (and deep-copies) as a plain Run
            return (Run, (self.info, self.data, self.inputs, self.outputs))

    LazyRun.__name__ = LazyRun.__qualname__ = "Run"
    return LazyRun


# ---------------------------------------------------------------------------------- public API
def search_runs(
    store: Store,
    experiment_ids: Any,
    filter_string: str = "",
    run_view_type: int = ACTIVE_ONLY,
    max_results: int | None = None,
    order_by: Sequence[str] | None = None,
    *,
    lazy: bool = True,
    light: bool = False,
) -> list[Any] | None:
    """What ``query.search_runs`` returns -- every matching run, or the first ``max_results``,
    in MLflow's order -- read with plain SQL. None when the fast path cannot answer exactly:
    then use MLflow's API.

    With ``lazy`` (the default) each run's ``data`` is read when first touched, for all runs
    of the search at once, so listing recorders does not pay for metrics, params and tags.
    The data is then as of that moment (MLflow's API reads it with the runs).

    With ``light`` the runs are :class:`.entities.LightRun` (MLflow is not imported).
    """
    found = _select_runs(store, experiment_ids, filter_string, run_view_type, max_results, order_by)
    if found is None:
        return None
    reader, rows = found
    if not rows:
        return []
    ids = [row[0] for row in rows]
    try:
        if _has_inputs(reader, ids):
            return None  # MLflow's Run would carry dataset inputs / model outputs: use the API
        if not lazy:
            return _build_runs(reader, rows, ids, for_search=True, light=light)
        # Runs without a name column need their tags for info.run_name: read those eagerly.
        nameless = {row[0] for row in rows if not row[1]}
        name_tags = (
            _children(reader, _TAG_SELECT, _selectors(reader, sorted(nameless)), nameless) if nameless else {}
        )
    except Exception as exc:  # noqa: BLE001
        logger.debug("qrecorder: fast search failed, using MLflow's API: %s", exc)
        return None
    empty: list[tuple[Any, ...]] = []
    if light:
        light_runs: list[Any] = [LightRun(_run_info(row, name_tags.get(row[0], empty), True)) for row in rows]
        light_batch = _Batch(reader, light_runs, light=True)
        for run in light_runs:
            run._batch = light_batch
        return light_runs
    from mlflow.entities import RunInputs, RunOutputs

    cls = _lazy_run_class()
    with_outputs = _search_outputs()
    runs: list[Any] = [
        cls(
            _run_info(row, name_tags.get(row[0], empty)),
            None,
            RunInputs([]),
            RunOutputs([]) if with_outputs else None,
        )
        for row in rows
    ]
    batch = _Batch(reader, runs)
    for run in runs:
        run._batch = batch
    return runs


def _search_outputs() -> bool:
    """Whether MLflow's search_runs sets run.outputs (3.6 on; the schema guard knows)."""
    from .guard import behaviour

    return behaviour().search_runs_outputs


def _build_runs(
    reader: Database, rows: list[tuple[Any, ...]], ids: list[str], for_search: bool = False, light: bool = False
) -> list[Any]:
    """Runs as MLflow builds them: ``get_run``'s always carry outputs, ``search_runs``' from 3.6."""
    wanted = set(ids)
    selectors = _selectors(reader, ids)
    metrics = _children(reader, _METRIC_SELECT, selectors, wanted)
    params = _children(reader, _PARAM_SELECT, selectors, wanted)
    tags = _children(reader, _TAG_SELECT, selectors, wanted)
    empty: list[tuple[Any, ...]] = []
    out: list[Any] = []
    if light:
        for row in rows:
            run_tags = tags.get(row[0], empty)
            data = _run_data(metrics.get(row[0], empty), params.get(row[0], empty), run_tags, True)
            out.append(LightRun(_run_info(row, run_tags, True), data))
        return out
    from mlflow.entities import Run, RunInputs, RunOutputs

    outputs = RunOutputs([]) if not for_search or _search_outputs() else None
    for row in rows:
        run_id = row[0]
        run_tags = tags.get(run_id, empty)
        info = _run_info(row, run_tags)
        data = _run_data(metrics.get(run_id, empty), params.get(run_id, empty), run_tags)
        out.append(Run(info, data, RunInputs([]), outputs))
    return out


def get_run(store: Store, run_id: str, *, light: bool = False) -> Any | None:
    """``MlflowClient.get_run`` by SQL (deleted runs included, as there); None when the fast
    path does not apply or the run does not exist (the API then raises its error). With
    ``light``, a :class:`.entities.LightRun`."""
    reader = reader_for(store)
    if reader is None or not enabled():
        return None
    try:
        rows = reader.rows(f"SELECT {_RUN_COLS} FROM runs r WHERE r.run_uuid = ?", [str(run_id)])
        if len(rows) != 1 or _has_inputs(reader, [str(run_id)]):
            return None
        return _build_runs(reader, rows, [str(run_id)], light=light)[0]
    except Exception as exc:  # noqa: BLE001
        logger.debug("qrecorder: fast get_run failed, using MLflow's API: %s", exc)
        return None


def search_frame(
    store: Store,
    experiment_ids: Any,
    filter_string: str = "",
    run_view_type: int = ACTIVE_ONLY,
    max_results: int | None = None,
    order_by: Sequence[str] | None = None,
) -> pd.DataFrame | None:
    """``query.runs_to_dataframe(query.search_runs(...))`` built column-wise from SQL rows;
    None when the fast path cannot answer exactly (use the API)."""
    found = _select_runs(store, experiment_ids, filter_string, run_view_type, max_results, order_by)
    if found is None:
        return None
    reader, runs = found
    ids = [r[0] for r in runs]
    try:
        if ids and _has_inputs(reader, ids):
            return None
        index = {run_id: i for i, run_id in enumerate(ids)}
        selectors = _selectors(reader, ids) if ids else []
        nan = float("nan")  # what np.nan is
        metrics = _columns(reader, _METRIC_SELECT_SHORT, selectors, index, nan, True)
        params = _columns(reader, _PARAM_SELECT, selectors, index, None, False)
        tags = _columns(reader, _TAG_SELECT, selectors, index, None, False)
    except Exception as exc:  # noqa: BLE001
        logger.debug("qrecorder: fast search failed, using MLflow's API: %s", exc)
        return None
    import pandas as pd

    data: dict[str, Any] = {
        "run_id": ids,
        "experiment_id": [str(r[2]) for r in runs],
        "status": [r[4] for r in runs],
        "artifact_uri": [r[8] for r in runs],
        "start_time": [r[5] for r in runs],
        "end_time": [r[6] for r in runs],
    }
    for prefix, cols in (("metrics.", metrics), ("params.", params), ("tags.", tags)):
        for key in sorted(cols):
            data[prefix + key] = cols[key]
    frame = pd.DataFrame(data)
    from ..frames import ms_to_datetime  # not pd.to_datetime: pandas < 3's float path (see there)

    for col in ("start_time", "end_time"):
        frame[col] = ms_to_datetime(frame[col])
    return frame


def list_experiments(store: Store) -> list[tuple[str, str]] | None:
    """(id, name) of the active experiments, in ``search_experiments``' order; or None."""
    reader = reader_for(store)
    if reader is None or not enabled():
        return None
    try:
        rows = reader.rows(
            "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = ? "
            "ORDER BY creation_time DESC, experiment_id ASC",
            ["active"],
        )
    except Exception as exc:  # noqa: BLE001
        logger.debug("qrecorder: fast list_experiments failed: %s", exc)
        return None
    return [(str(e), name) for e, name in rows]



@dataclass(frozen=True)
class ExperimentRow:
    """An experiment as ``get_experiment`` / ``get_experiment_by_name`` describe it."""

    experiment_id: str
    name: str
    lifecycle_stage: str
    artifact_location: str | None


def lookup_experiment(
    store: Store, *, experiment_id: str | None = None, name: str | None = None
) -> tuple[bool, ExperimentRow | None]:
    """(answered, row): by id, else by name, deleted ones included (as MLflow's getters).
    ``answered`` False: the fast path does not apply, use MLflow's API."""
    reader = reader_for(store)
    if reader is None or not enabled():
        return False, None
    cols = "experiment_id, name, lifecycle_stage, artifact_location"
    try:
        if experiment_id is not None:
            text = str(experiment_id)
            if not text.isdigit() or len(text) > 18:
                return False, None  # MLflow gives its own error for these
            rows = reader.rows(f"SELECT {cols} FROM experiments WHERE experiment_id = ?", [int(text)])
        elif name is not None:
            rows = reader.rows(f"SELECT {cols} FROM experiments WHERE name = ?", [name])
        else:
            return False, None
    except Exception as exc:  # noqa: BLE001
        logger.debug("qrecorder: fast experiment lookup failed: %s", exc)
        return False, None
    if not rows:
        return True, None
    e, n, stage, location = rows[0]
    return True, ExperimentRow(str(e), n, stage, location)
