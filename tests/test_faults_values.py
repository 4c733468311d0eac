"""One bad value never poisons a batch, on SQLite and PostgreSQL.

Values the database would refuse (a step beyond 64 bits, an int too large for a float, NUL
characters, lone surrogates, keys with control characters, names longer than MLflow's
columns) are refused at the call with a qrecorder error; the good values logged around them
are all written and the run ends FINISHED.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qrecorder.errors import InvalidKeyError, InvalidValueError, UnstorableValueError


@pytest.fixture(params=["sqlite", "postgresql"])
def R(request: pytest.FixtureRequest, store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:  # noqa: N802
    from qrecorder import R as global_r

    if request.param == "sqlite":
        uri = f"sqlite:///{store_dir / 'mlflow.db'}"
        cm = None
    else:
        from conftest import fresh_pg_database, pg_available

        if not pg_available():
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (.ci/run starts it)")
        monkeypatch.setenv("QRECORDER_ARTIFACT_ROOT", str(store_dir / "art"))
        cm = fresh_pg_database("postgresql://postgres@127.0.0.1:5432/postgres", "qrec_faults")
        uri = cm.__enter__()
    global_r.set_uri(uri)
    try:
        yield global_r
    finally:
        from conftest import reset_r

        reset_r(global_r)
        if cm is not None:
            from qrecorder.mlflow import store as store_mod

            store_mod._stores.pop(uri, None)
            cm.__exit__(None, None, None)


BAD: list[tuple[str, Callable[[Any], None], type[Exception]]] = [
    ("step 2**63", lambda R: R.log_metrics(step=2**63, x=1.0), UnstorableValueError),
    ("step -2**63-1", lambda R: R.log_metrics(step=-(2**63) - 1, x=1.0), UnstorableValueError),
    ("numpy-ish float step 1e19", lambda R: R.log_metrics(step=1e19, x=1.0), UnstorableValueError),
    ("metric int 10**400", lambda R: R.log_metrics(step=1, big=10**400), UnstorableValueError),
    ("metric int 10**309", lambda R: R.log_metrics(step=1, big=-(10**309)), UnstorableValueError),
    ("param NUL", lambda R: R.log_params(p="a\x00b"), UnstorableValueError),
    ("tag NUL", lambda R: R.set_tags(t="a\x00b"), UnstorableValueError),
    ("param lone surrogate", lambda R: R.log_params(s="x\ud800y"), UnstorableValueError),
    ("tag lone surrogate", lambda R: R.set_tags(s="\udcff"), UnstorableValueError),
    ("object with NUL in str()", lambda R: R.log_params(o=b"\x00"), None),  # str(b"\x00") is "b'\\x00'": fine
    ("metric key newline", lambda R: R.log_metrics(**{"loss\n": 1.0}), InvalidKeyError),
    ("param key tab", lambda R: R.log_params(**{"a\tb": 1}), InvalidKeyError),
    ("tag key NUL", lambda R: R.set_tags(**{"t\x00": 1}), InvalidKeyError),
    ("metric key DEL", lambda R: R.log_metrics(**{"loss\x7f": 1.0}), InvalidKeyError),
    ("key surrogate", lambda R: R.log_metrics(**{"l\ud800": 1.0}), InvalidKeyError),
    ("key 251 chars", lambda R: R.log_metrics(**{"k" * 251: 1.0}), InvalidKeyError),
]


def test_bad_values_are_refused_at_the_call_and_the_good_ones_are_written(R: Any) -> None:
    with R.start(experiment_name="poison", recorder_name="run"):
        rec = R.get_recorder()
        for i, (label, bad, error) in enumerate(BAD):
            R.log_metrics(step=i, good=float(i))
            R.log_params(**{f"p{i}": f"v{i}"})
            R.set_tags(**{f"t{i}": f"w{i}"})
            if error is None:
                bad(R)
                continue
            with pytest.raises(error) as info:
                bad(R)
            assert isinstance(info.value, (InvalidValueError, InvalidKeyError)), label
        # The edges of what the store keeps are accepted and kept exactly.
        R.log_metrics(step=2**63 - 1, edge=1.0)
        R.log_metrics(step=-(2**63), edge=2.0)
        R.log_metrics(step=0, huge=10**308)
        R.log_params(text="ünïcödé ✓ 𝄞")
    assert rec.status == "FINISHED"
    rec = R.get_recorder(recorder_id=rec.id)
    assert rec.status == "FINISHED"
    assert [(s, v) for s, v, _ in rec.get_metric_history("good")] == [(i, float(i)) for i in range(len(BAD))]
    assert [(s, v) for s, v, _ in rec.get_metric_history("edge")] == [(-(2**63), 2.0), (2**63 - 1, 1.0)]
    assert rec.list_metrics()["huge"] == 1e308
    params, tags = rec.list_params(), rec.list_tags()
    for i in range(len(BAD)):
        assert params[f"p{i}"] == f"v{i}" and tags[f"t{i}"] == f"w{i}"
    assert params["text"] == "ünïcödé ✓ 𝄞"
    assert params["o"] == "b'\\x00'"
    assert not {"p", "s", "x", "big"} & (set(params) | set(rec.list_metrics()))
    assert "t" not in tags and "s" not in tags


def test_error_messages_say_what_and_where(R: Any) -> None:
    with R.start(experiment_name="poison", recorder_name="messages"):
        with pytest.raises(UnstorableValueError, match=r"step 9223372036854775808 is outside the 64-bit range"):
            R.log_metrics(step=2**63, x=1.0)
        with pytest.raises(UnstorableValueError, match=r"Metric 'big' is too large for a float.*401 digits"):
            R.log_metrics(big=10**400)
        with pytest.raises(UnstorableValueError, match=r"NUL character .* at position 1"):
            R.log_params(p="a\x00b")
        with pytest.raises(UnstorableValueError, match=r"lone surrogate '\\ud800' at position 1"):
            R.set_tags(s="x\ud800y")
        with pytest.raises(InvalidKeyError, match=r"'loss\\n' has characters MLflow refuses"):
            R.log_metrics(**{"loss\n": 1.0})


def test_names_longer_than_the_store_keeps_are_refused_everywhere(R: Any) -> None:
    long_exp = "e" * 257
    with pytest.raises(UnstorableValueError, match=r"257 characters; the store keeps at most 256"):
        R.start_exp(experiment_name=long_exp)
    with pytest.raises(UnstorableValueError, match="at most 256"):
        R.get_exp(experiment_name=long_exp)
    with pytest.raises(UnstorableValueError, match=r"251 characters; the store keeps at most 250"):
        R.start_exp(experiment_name="names", recorder_name="r" * 251)
    with pytest.raises(UnstorableValueError, match="NUL"):
        R.start_exp(experiment_name="na\x00me")
    with pytest.raises(UnstorableValueError, match="surrogate"):
        R.start_exp(experiment_name="names", recorder_name="r\udc80")
    assert "e" * 256 not in R.list_experiments()
    # The longest names the store keeps work, on PostgreSQL too (artifact URIs fit their column).
    with R.start(experiment_name="E" * 256, recorder_name="R" * 250):
        R.log_metrics(x=1.0)
        rec = R.get_recorder()
    rec = R.get_recorder(recorder_id=rec.id)
    assert rec.status == "FINISHED" and rec.name == "R" * 250
    assert len(rec.artifact_uri) <= 200
    R.get_recorder(recorder_id=rec.id).save_objects(**{"o.pkl": [1, 2]})
    assert R.get_recorder(recorder_id=rec.id).load_object("o.pkl") == [1, 2]
    exps = R.list_experiments()
    assert "E" * 256 in exps and not any(len(n) > 256 for n in exps)
