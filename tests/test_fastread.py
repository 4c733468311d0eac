"""The SQL fast read path gives exactly what MLflow's API gives, or steps aside.

A few hundred runs with varied params, metrics (several steps, NaN, +-inf), tags, statuses,
deleted runs, equal start times and several experiments are searched with every supported
filter and order, on SQLite and on the real PostgreSQL; the fast path's runs (info and data)
and DataFrames must equal the API path's, in the same order. Unsupported filters, orders,
schema revisions (refused by qrecorder.mlflow.sql.guard) and stores must make the fast path
return None.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pandas.testing as pdt
import pytest

from qrecorder.mlflow import query
from qrecorder.mlflow.sql import guard as schema
from qrecorder.mlflow.sql import reads as fastread
from qrecorder.mlflow.store import Store, get_store

N_RUNS = 240
PG_DSN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test", "connect_timeout": 3}


# ------------------------------------------------------------------------------ data
def populate(store: Store, artifacts: str, seed: int = 7) -> dict[str, Any]:
    """Three experiments (one later deleted), N_RUNS runs with varied content."""
    from mlflow.entities import Metric, Param, RunTag

    client = store.client
    rng = random.Random(seed)
    exps = [client.create_experiment(f"fast-{k}", artifact_location=f"{artifacts}/e{k}") for k in range(3)]
    base = 1_700_000_000_000
    ids: list[str] = []
    special = [float("nan"), float("inf"), float("-inf"), 0.0, -1.5, 1e308, 2.5]
    param_values = ["0", "1", "10", "2", "A", "a", "b", "B", "_x", "é", "Z"]
    for i in range(N_RUNS):
        exp = exps[i % 3]
        name = f"name-{i % 17}" if i % 11 else None
        start = base + (i // 3) * 1000  # equal start times: the run_uuid tie-break matters
        run = client.create_run(exp, start_time=start, run_name=name, tags={"mlflow.user": f"user{i % 4}"})
        rid = run.info.run_id
        ids.append(rid)
        metrics = []
        for k in range(5):
            if rng.random() < 0.15:
                continue  # some runs lack some metrics
            for step in range(rng.randint(1, 3)):
                value = rng.choice(special) if rng.random() < 0.25 else round(rng.uniform(-2, 2), 6)
                metrics.append(Metric(f"m{k}", value, start + step * 10 + rng.randint(0, 3), step))
        if i % 13 == 0:  # same step, later timestamp wins
            metrics.append(Metric("m0", 42.0, start + 100_000, 50))
            metrics.append(Metric("m0", -42.0, start + 100_001, 50))
        params = [Param(f"p{k}", rng.choice(param_values)) for k in range(5) if not (k == 1 and i % 5 == 0)]
        tags = [RunTag("t k", f"v{i % 3}"), RunTag("grp", rng.choice(["a", "b", "c", "B"]))]
        if i % 7 == 0:
            tags.append(RunTag("only_some", "yes"))
        client.log_batch(rid, metrics=metrics, params=params, tags=tags)
        status = ["FINISHED", "FAILED", "KILLED", "RUNNING", "FINISHED", "SCHEDULED"][i % 6]
        if status in ("FINISHED", "FAILED", "KILLED"):
            client.set_terminated(rid, status, end_time=start + rng.choice([500, 500, 900, 30]))
        elif status == "SCHEDULED":
            client.update_run(rid, status="SCHEDULED")
        if i % 19 == 5:
            client.delete_run(rid)
    # An old-style run whose name lives only in the mlflow.runName tag.
    engine = store.engine
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE runs SET name = NULL WHERE run_uuid = '{ids[4]}'")
    client.delete_experiment(exps[2])
    return {"exps": exps, "ids": ids, "base": base}


# ------------------------------------------------------------------------------ stores
@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("fastread")
    store = get_store(f"sqlite:///{root / 'mlflow.db'}")
    info = populate(store, (root / "art").as_uri())
    yield store, info


def _pg_connect() -> Any:
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        conn = psycopg2.connect(**PG_DSN)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable: {exc}")
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def pg_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, dict[str, Any]]]:
    admin = _pg_connect()
    name = f"qrec_fast_{uuid.uuid4().hex[:10]}"
    cur = admin.cursor()
    # A linguistic (ICU) collation where the server has one, so that ordering by params and
    # tags differs from byte order ('a' < 'B'): the fast path must order as the database does.
    cur.execute("SELECT 1 FROM pg_collation WHERE collname = 'en-x-icu'")
    if cur.fetchone():
        cur.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu "
            "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    else:
        cur.execute(f"CREATE DATABASE {name}")
    uri = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        store = get_store(uri)
        info = populate(store, tmp_path_factory.mktemp("pgart").as_uri())
        yield store, info
    finally:
        from qrecorder.mlflow import store as store_mod

        cached = store_mod._stores.pop(uri, None)
        if cached is not None:
            cached.engine.dispose()
        fastread.forget(uri)
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def populated(request: pytest.FixtureRequest) -> tuple[Store, dict[str, Any]]:
    return request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")


# ------------------------------------------------------------------------------ helpers
def _norm(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def run_key(run: Any) -> tuple[Any, ...]:
    info = dict(run.info)
    data = run.data
    metric_objs = sorted(
        (m.key, _norm(m.value), m.timestamp, m.step, m.model_id, m.dataset_name, m.dataset_digest, m.run_id)
        for m in data._metric_objs
    )
    return (
        tuple(sorted(info.items())),
        tuple(sorted((k, _norm(v)) for k, v in data.metrics.items())),
        tuple(sorted(data.params.items())),
        tuple(sorted(data.tags.items())),
        tuple(metric_objs),
        len(run.inputs.dataset_inputs),
        None if run.outputs is None else len(run.outputs.model_outputs),  # None: MLflow < 3.6's search
    )


def _mlflow_parses(flt: str) -> bool:
    """Whether the installed MLflow accepts the filter (older releases lack some comparators)."""
    from mlflow.utils.search_utils import SearchUtils

    try:
        SearchUtils.parse_search_filter(flt)
    except Exception:  # noqa: BLE001
        return False
    return True


def _times_as_text(flt: str) -> bool:
    """Whether the installed MLflow's parser keeps start_time/end_time numbers as text (older
    releases): SQLite then compares numbers, PostgreSQL raises; the fast path steps aside."""
    from mlflow.utils.search_utils import SearchUtils

    return any(
        c.get("type") == "attribute" and c.get("key") in ("start_time", "end_time") and isinstance(c.get("value"), str)
        for c in SearchUtils.parse_search_filter(flt)
    )


def api_runs(store: Store, *args: Any, **kwargs: Any) -> list[Any]:
    os.environ["QRECORDER_FAST_READS"] = "0"
    try:
        return query.search_runs(store, *args, **kwargs)
    finally:
        del os.environ["QRECORDER_FAST_READS"]


def api_frame(store: Store, *args: Any, **kwargs: Any) -> pd.DataFrame:
    return query.runs_to_dataframe(api_runs(store, *args, **kwargs))


FILTERS = [
    "",
    "attributes.status = 'FINISHED'",
    "attributes.status != 'RUNNING'",
    "status = 'KILLED'",
    "attributes.run_name = 'name-3'",
    "attributes.run_name != 'name-3'",
    "run_name = 'name-4'",
    "tags.\"t k\" = 'v1'",
    "tags.`t k` != 'v1'",
    "tags.grp = 'B'",
    "tags.only_some IS NOT NULL",
    "tags.only_some IS NULL",
    "params.p0 = 'a'",
    "params.p1 != '0'",
    "params.p1 IS NULL",
    "metrics.m0 > 0.5",
    "metrics.m0 >= 1e308",
    "metrics.m1 < 0",
    "metrics.m2 <= -1e308",
    "metrics.m3 = 0",
    "metrics.m4 != 2.5",
    "metrics.m0 = 42",
    "attributes.start_time > 1700000030000",
    "attributes.end_time <= 1700000040500",
    "params.p0 = 'a' and metrics.m1 > -1 and attributes.status = 'FINISHED'",
    "tags.grp = 'a' and params.p2 != 'Z' and metrics.m4 < 1.5 and attributes.run_name != 'name-1'",
]

ORDERS: list[list[str] | None] = [
    None,
    ["attributes.start_time ASC"],
    ["start_time DESC"],
    ["attributes.end_time DESC"],
    ["attributes.end_time"],
    ["metrics.m0 ASC"],
    ["metrics.m0 DESC"],
    ["metrics.`m1` DESC", "attributes.start_time ASC"],
    ["params.p0 ASC"],
    ["params.p0 DESC", "metrics.m2 ASC"],
    ["tags.grp DESC"],
    ["attributes.run_name"],
    ["attributes.status DESC", "params.p1"],
]


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("flt", FILTERS)
def test_filters_match_api(populated: tuple[Store, dict[str, Any]], flt: str) -> None:
    store, info = populated
    exps = info["exps"]
    if not _mlflow_parses(flt):  # e.g. IS NULL before MLflow 3.x adds it: the API's error stands
        assert fastread.search_runs(store, exps, filter_string=flt) is None
        with pytest.raises(Exception):  # noqa: B017 - whatever MLflow raises for it
            api_runs(store, exps, filter_string=flt)
        return
    if _times_as_text(flt):
        assert fastread.search_runs(store, exps, filter_string=flt) is None
        return
    for view in (1, 2, 3):
        fast = fastread.search_runs(store, exps, filter_string=flt, run_view_type=view, lazy=False)
        assert fast is not None, flt
        slow = api_runs(store, exps, filter_string=flt, run_view_type=view)
        assert [run_key(r) for r in fast] == [run_key(r) for r in slow], (flt, view)
    lazy = fastread.search_runs(store, exps[:2], filter_string=flt)
    assert [run_key(r) for r in lazy] == [run_key(r) for r in api_runs(store, exps[:2], filter_string=flt)]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: ",".join(o or ["default"]))
def test_orders_match_api(populated: tuple[Store, dict[str, Any]], order: list[str] | None) -> None:
    store, info = populated
    exps = info["exps"]
    for flt in ("", "params.p0 != 'a'", "metrics.m3 > -10"):
        for max_results in (None, 1, 7):
            fast = fastread.search_runs(
                store, exps, filter_string=flt, order_by=order, max_results=max_results
            )
            assert fast is not None
            slow = api_runs(store, exps, filter_string=flt, order_by=order, max_results=max_results)
            assert [r.info.run_id for r in fast] == [r.info.run_id for r in slow], (order, flt, max_results)
            assert [run_key(r) for r in fast] == [run_key(r) for r in slow]


@pytest.mark.parametrize(
    ("flt", "order"),
    [("", None), ("attributes.status = 'FINISHED'", ["metrics.m0 DESC"]), ("params.p0 = 'zzz'", None)]
    + [(f, None) for f in FILTERS[5:12]]
    + [("", o) for o in ORDERS[5:9]],
)
def test_frames_match_api(populated: tuple[Store, dict[str, Any]], flt: str, order: list[str] | None) -> None:
    store, info = populated
    if not _mlflow_parses(flt):
        assert fastread.search_frame(store, info["exps"], filter_string=flt, order_by=order) is None
        return
    for exps in (info["exps"], info["exps"][:1]):
        for view in (1, 3):
            fast = fastread.search_frame(store, exps, filter_string=flt, run_view_type=view, order_by=order)
            assert fast is not None
            slow = api_frame(store, exps, filter_string=flt, run_view_type=view, order_by=order)
            pdt.assert_frame_equal(fast, slow)


def test_run_id_filters_match_api(populated: tuple[Store, dict[str, Any]]) -> None:
    store, info = populated
    some = info["ids"][:30:3]
    quoted = ", ".join(f"'{i}'" for i in some)
    for flt in (
        f"attributes.run_id IN ({quoted})",
        f"attributes.run_id NOT IN ({quoted})",
        f"attributes.run_id = '{some[1]}'",
        f"attributes.run_id != '{some[1]}' and metrics.m0 > 0",
    ):
        for view in (1, 3):
            fast = fastread.search_runs(store, info["exps"], filter_string=flt, run_view_type=view)
            assert fast is not None
            slow = api_runs(store, info["exps"], filter_string=flt, run_view_type=view)
            assert [run_key(r) for r in fast] == [run_key(r) for r in slow], flt


def test_get_run_matches_api(populated: tuple[Store, dict[str, Any]]) -> None:
    store, info = populated
    for rid in info["ids"][:40]:  # includes deleted runs and the nameless one
        fast = fastread.get_run(store, rid)
        assert fast is not None
        assert run_key(fast) == run_key(store.client.get_run(rid))
    assert fastread.get_run(store, uuid.uuid4().hex) is None  # the API raises its own error


def test_list_experiments_matches_api(populated: tuple[Store, dict[str, Any]]) -> None:
    store, _ = populated
    fast = fastread.list_experiments(store)
    api = store.client.search_experiments(view_type=1, max_results=50_000)
    assert fast == [(e.experiment_id, e.name) for e in api]


def test_paths_through_query_and_manager(populated: tuple[Store, dict[str, Any]]) -> None:
    """query.search_runs and search_records_frame use the fast path and agree with the API."""
    from qrecorder.mlflow.manager import search_records_frame

    store, info = populated
    runs = query.search_runs(store, info["exps"], order_by=["metrics.m1 DESC"])
    assert type(runs[0]).__module__ == fastread.__name__
    assert [run_key(r) for r in runs] == [
        run_key(r) for r in api_runs(store, info["exps"], order_by=["metrics.m1 DESC"])
    ]
    frame = search_records_frame(store, info["exps"], filter_string="tags.grp = 'a'", max_results=100_000)
    pdt.assert_frame_equal(frame, api_frame(store, info["exps"], filter_string="tags.grp = 'a'"))


@pytest.mark.parametrize(
    ("flt", "order"),
    [
        ("params.p0 LIKE 'a%'", None),
        ("tags.grp ILIKE 'b'", None),
        ("attributes.user_id = 'user1'", None),
        ("attributes.run_name LIKE 'name-1%'", None),
        ("datasets.name = 'x'", None),
        ("", ["attributes.run_id"]),
        ("", ["metrics.m0", "metrics.m0 DESC"]),  # MLflow refuses duplicates: its error must surface
        ("metrics.m0 >", None),  # malformed: MLflow's parser error must surface
        ("attributes.status IN ('FAILED', 'KILLED')", None),  # MLflow refuses IN on status
        ("metrics.m1 IS NULL", None),  # MLflow refuses IS NULL on metrics
    ],
)
def test_unsupported_falls_back(
    sqlite_store: tuple[Store, dict[str, Any]],
    flt: str,
    order: list[str] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, info = sqlite_store
    assert fastread.search_runs(store, info["exps"], filter_string=flt, order_by=order) is None
    assert fastread.search_frame(store, info["exps"], filter_string=flt, order_by=order) is None
    # MLflow raises a plain MlflowException (INTERNAL_ERROR) for some of these, which
    # qrecorder's retry currently treats as transient: keep the retry budget short here.
    monkeypatch.setenv("QRECORDER_RETRY_SECONDS", "0.2")
    try:
        expected = [run_key(r) for r in api_runs(store, info["exps"], filter_string=flt, order_by=order)]
    except Exception as exc:  # noqa: BLE001
        with pytest.raises(type(exc)):
            query.search_runs(store, info["exps"], filter_string=flt, order_by=order)
        return
    got = [run_key(r) for r in query.search_runs(store, info["exps"], filter_string=flt, order_by=order)]
    assert got == expected


def test_non_numeric_experiment_id_falls_back(sqlite_store: tuple[Store, dict[str, Any]]) -> None:
    store, _ = sqlite_store
    assert fastread.search_runs(store, ["abc"]) is None
    assert fastread.search_runs(store, []) == []


def test_unknown_schema_revision_falls_back(
    sqlite_store: tuple[Store, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, info = sqlite_store
    monkeypatch.setattr(schema, "VERIFIED", {"not-a-revision": next(iter(schema.VERIFIED.values()))})
    fastread.forget(store.uri)
    try:
        assert fastread.reader_for(store) is None
        assert fastread.search_runs(store, info["exps"]) is None
        assert fastread.get_run(store, info["ids"][0]) is None
        assert len(query.search_runs(store, info["exps"][:1])) > 0  # the API still answers
    finally:
        monkeypatch.undo()
        fastread.forget(store.uri)
    assert fastread.reader_for(store) is not None


def test_current_revision_is_verified(sqlite_store: tuple[Store, dict[str, Any]]) -> None:
    store, _ = sqlite_store
    with store.engine.connect() as conn:
        revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert revision in schema.VERIFIED
    assert schema.direct_sql_allowed(store.engine).allowed


def test_env_switch_disables(
    sqlite_store: tuple[Store, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, info = sqlite_store
    monkeypatch.setenv("QRECORDER_FAST_READS", "0")
    assert fastread.search_runs(store, info["exps"]) is None
    assert fastread.search_frame(store, info["exps"]) is None


def test_file_store_not_supported(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = get_store((tmp_path / "mlruns").as_uri())
    assert fastread.reader_for(store) is None
    assert fastread.search_runs(store, ["0"]) is None


def test_runs_with_dataset_inputs_fall_back(tmp_path: Any) -> None:
    from mlflow.entities import Dataset, DatasetInput

    store = get_store(f"sqlite:///{tmp_path / 'inputs.db'}")
    client = store.client
    exp = client.create_experiment("inputs", artifact_location=(tmp_path / "a").as_uri())
    plain = client.create_run(exp, run_name="plain").info.run_id
    assert fastread.search_runs(store, [exp]) is not None
    with_input = client.create_run(exp, run_name="with-input").info.run_id
    client.log_inputs(with_input, [DatasetInput(Dataset("ds", "digest1", "local", "{}"))])
    assert fastread.search_runs(store, [exp]) is None
    assert fastread.get_run(store, with_input) is None
    assert fastread.get_run(store, plain) is not None
    runs = query.search_runs(store, [exp])  # the API answers, inputs included
    assert {len(r.inputs.dataset_inputs) for r in runs} == {0, 1}


def test_lazy_runs_pickle_and_recorders(sqlite_store: tuple[Store, dict[str, Any]]) -> None:
    from mlflow.entities import Run

    from qrecorder.mlflow.recorder import MLflowRecorder

    store, info = sqlite_store
    runs = fastread.search_runs(store, info["exps"][:2])
    assert runs and all(isinstance(r, Run) for r in runs)
    assert runs[0]._batch is not None  # data not read yet
    copy = pickle.loads(pickle.dumps(runs[3]))
    assert type(copy) is Run and run_key(copy) == run_key(runs[3])
    assert runs[0]._batch is None  # the whole batch was read at once
    assert dict(runs[1]).keys() == dict(copy).keys()
    recorders = [MLflowRecorder(r.info.experiment_id, store.uri, mlflow_run=r, store=store) for r in runs]
    slow = [
        MLflowRecorder(r.info.experiment_id, store.uri, mlflow_run=r, store=store)
        for r in api_runs(store, info["exps"][:2])
    ]
    assert [r.info for r in recorders] == [r.info for r in slow]
    nameless = [r for r in recorders if r.id == info["ids"][4]]
    assert nameless and nameless[0].name == "name-4"


def test_frames_survive_uninitialised_memory(populated: tuple[Store, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """pandas < 3 rounds np.empty's leftovers for NaN end times (running runs) under
    errstate(over="raise"): leftovers of ±1.8e308 (MLflow's ±inf metrics) raised
    FloatingPointError (pandas issue 58419). Both paths must give the frame anyway."""
    import numpy as np

    store, info = populated
    real_empty = np.empty

    def empty(shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> Any:
        out = real_empty(shape, dtype, *args, **kwargs)
        if out.dtype.kind == "f":
            out.fill(1.7976931348623157e308)
        return out

    monkeypatch.setattr(np, "empty", empty)
    fast = fastread.search_frame(store, info["exps"], run_view_type=3)
    assert fast is not None and fast["end_time"].isna().any() and fast["end_time"].notna().any()
    pdt.assert_frame_equal(fast, api_frame(store, info["exps"], run_view_type=3))
