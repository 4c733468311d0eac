"""The two R rules Qlib's own tests rely on, for qrecorder's R (no Qlib needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrecorder import NoActiveRecorderError


def test_get_recorder_without_active_run_is_the_latest_default_named_one(R) -> None:  # noqa: N803
    with pytest.raises(NoActiveRecorderError):  # nothing yet: a clear error
        R.get_recorder()
    ids = []
    for _ in range(2):
        with R.start():  # default experiment, default recorder name
            ids.append(R.get_recorder().id)
    with R.start(recorder_name="named"):
        pass
    rec = R.get_recorder()
    assert rec.id == ids[-1] and rec.name == "mlflow_recorder" and rec.status == "FINISHED"
    assert R.get_recorder(experiment_name="Experiment").id == ids[-1]


def test_get_uri_inside_start_is_the_uri_as_given(R, store_dir: Path) -> None:  # noqa: N803
    default = R.get_uri()
    with R.start(experiment_name="e", uri="sqlite:///sub/other.db"):
        assert R.get_uri() == "sqlite:///sub/other.db"
        assert R.get_resolved_uri() == f"sqlite:///{store_dir / 'sub' / 'other.db'}"
        R.log_metrics(a=1.0)
    assert R.get_uri() == default == R.get_resolved_uri()
    with R.uri_context(f"sqlite:///{store_dir / 'sub' / 'other.db'}"):
        assert R.get_recorder(experiment_name="e").list_metrics() == {"a": 1.0}
