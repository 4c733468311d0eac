"""Bad input fails at the call site with a specific error, and the run stays usable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qrecorder import InvalidKeyError, InvalidValueError, ParamConflictError


def test_invalid_keys(R):
    with R.start(experiment_name="v"):
        for bad in ("bad key!", "", "../up", "/abs", "a//b", "x" * 251):
            with pytest.raises(InvalidKeyError):
                R.log_metrics(**{bad: 1.0})
        with pytest.raises(InvalidKeyError):
            R.log_params(**{"semi;colon": 1})
        with pytest.raises(InvalidKeyError):
            R.set_tags(**{"tab\tkey": "v"})
        R.log_metrics(**{"ok/key-1.x y:z": 1.0})
        rec = R.get_recorder()
    assert rec.list_metrics() == {"ok/key-1.x y:z": 1.0} and rec.status == "FINISHED"


def test_metric_values(R, monkeypatch):
    with R.start(experiment_name="v"):
        for bad in ("1.0", None, [1.0], np.array([1.0, 2.0]), np.array("x"), {"a": 1}):
            with pytest.raises(InvalidValueError):
                R.log_metrics(m=bad)
        with pytest.raises(InvalidValueError, match="step"):
            R.log_metrics(step="3", m=1.0)
        R.log_metrics(i=np.int64(3), f=np.float32(0.5), z=np.array(2.0), nan=float("nan"), inf=math.inf, ninf=-math.inf)
        R.log_metrics(yes=True, no=False, np_yes=np.bool_(True))  # 1.0 / 0.0, as MLflow and Qlib's R store them
        rec = R.get_recorder()
    stored = rec.list_metrics()
    assert (stored["yes"], stored["no"], stored["np_yes"]) == (1.0, 0.0, 1.0)
    assert all(type(stored[k]) is float for k in ("yes", "no", "np_yes"))
    monkeypatch.setenv("QRECORDER_NONFINITE", "raise")  # read when a run starts
    with R.start(experiment_name="v", recorder_id=rec.id):
        with pytest.raises(InvalidValueError, match="NaN"):
            R.log_metrics(nan2=float("nan"))
        with pytest.raises(InvalidValueError, match="inf"):
            R.log_metrics(inf2=math.inf)
        R.log_metrics(fine=1.0)
    metrics = rec.list_metrics()
    assert metrics["i"] == 3.0 and metrics["f"] == 0.5 and metrics["z"] == 2.0
    assert math.isnan(metrics["nan"])
    assert metrics["inf"] >= 1.7976931348623157e308 and metrics["ninf"] <= -1.7976931348623157e308
    assert "nan2" not in metrics and "inf2" not in metrics and metrics["fine"] == 1.0


def test_params_are_immutable(R):
    with R.start(experiment_name="v"):
        R.log_params(lr=0.1)
        R.log_params(lr=0.1)
        with pytest.raises(ParamConflictError, match="lr"):
            R.log_params(lr=0.2)
        with pytest.raises(ParamConflictError):
            R.log_params(new=1, lr=0.3)
        R.log_params(new=1)
        rec = R.get_recorder()
    params = rec.list_params()
    assert params["lr"] == "0.1" and params["new"] == "1"


def test_long_values_are_kept_whole(R):
    long_param = "p" * 7000 + "END"
    long_tag = "t" * 9000 + "END"
    with R.start(experiment_name="v"):
        R.log_params(config=long_param)
        R.set_tags(note=long_tag)
        rec = R.get_recorder()
    assert rec.list_params()["config"] == long_param
    assert rec.list_tags()["note"] == long_tag
    raw = rec.client.get_run(rec.id).data.params["config"]
    assert len(raw) <= 6000 and "qrecorder/long_values/params/config.txt" in raw


def test_names_and_ids_must_be_text(R):
    for kwargs in ({"experiment_name": ""}, {"experiment_name": 123}, {"recorder_name": "  "}, {"recorder_id": 3.5}):
        with pytest.raises(InvalidValueError, match="non-empty str"):
            with R.start(**kwargs):
                pass
    with pytest.raises(InvalidValueError):
        R.get_exp(experiment_name=["x"])
    exp = R.get_exp(experiment_name="numbered")
    assert R.get_exp(experiment_id=int(exp.id), create=False).name == "numbered"  # int ids are fine


def test_values_the_database_would_refuse_are_refused_by_the_checks():
    from fractions import Fraction

    from qrecorder import validation
    from qrecorder.errors import UnstorableValueError

    for key in ("loss\n", "loss\r", "a\tb", "l\x00", "l\x7f", "l\x1b", "l\ud800", "\n"):
        with pytest.raises(InvalidKeyError):
            validation.check_key(key, "Metric")
    assert validation.check_key("ünï/código", "Metric") == "ünï/código"  # letters of any script
    assert validation.check_step(2**63 - 1) == 2**63 - 1 and validation.check_step(-(2**63)) == -(2**63)
    assert validation.check_step(np.int64(-5)) == -5
    for step in (2**63, -(2**63) - 1, 10**30, 1e19, -1e19):
        with pytest.raises(UnstorableValueError, match="64-bit range"):
            validation.check_step(step)
    for value in (10**400, -(10**309), Fraction(10**400)):
        with pytest.raises(UnstorableValueError, match="too large for a float"):
            validation.check_metric_value("m", value)
    assert validation.check_metric_value("m", 10**308) == 1e308
    for text in ("a\x00b", "\x00", "x\ud800", "\udfff"):
        with pytest.raises(UnstorableValueError):
            validation.stringify(text)
    with pytest.raises(UnstorableValueError, match="The value of 'k' contains a NUL"):
        validation.stringify("a\x00", "k")
    assert validation.stringify("ünïcödé ✓ 𝄞") == "ünïcödé ✓ 𝄞"
    assert validation.stringify(b"\x00") == "b'\\x00'"
    assert issubclass(UnstorableValueError, InvalidValueError)


def test_names_longer_than_mlflows_columns_are_refused():
    from qrecorder import validation
    from qrecorder.errors import UnstorableValueError

    validation.check_names(experiment_name="e" * 256, recorder_name="r" * 250)
    with pytest.raises(UnstorableValueError, match="257 characters; the store keeps at most 256"):
        validation.check_names(experiment_name="e" * 257)
    with pytest.raises(UnstorableValueError, match="251 characters; the store keeps at most 250"):
        validation.check_names(recorder_name="r" * 251)
    with pytest.raises(UnstorableValueError, match="NUL"):
        validation.check_names(recorder_name="a\x00")
