"""The direct-SQL cold path attacked from outside: each test is a case where it once differed
from MLflow's API (rows, answers, errors), fixed to agree."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from qrecorder.mlflow.sql import reads, writes
from qrecorder.mlflow.store import get_store


def test_listed_light_runs_pickle_and_deepcopy(tmp_path: Path) -> None:
    """MLflow's Run pickles; a listed LightRun (whose data is read lazily for its batch, through
    the store's connections) must too, with its data."""
    store = get_store(f"sqlite:///{tmp_path / 'm.db'}")
    db = reads.reader_for(store)
    assert db is not None
    exp = writes.create_experiment(db, "e", (tmp_path / "e").as_uri(), {})
    made = writes.create_run(db, exp, "r", {"k": "v"}, 1)
    runs = reads.search_runs(store, [exp], light=True)
    assert runs is not None and runs[0]._batch is not None  # data not read yet
    for copied in (pickle.loads(pickle.dumps(runs[0])), copy.deepcopy(runs[0])):
        assert type(copied).__name__ == "LightRun"
        assert copied.info == made.info
        assert copied.data.tags == {"k": "v", "mlflow.runName": "r"}


def test_too_long_artifact_location_refused_as_mlflow_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's create_experiment refuses an artifact location longer than
    MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH (2048 by default; a root with non-ASCII folders is
    percent-encoded, 9 characters per CJK letter): the direct path wrote it anyway."""
    from mlflow.exceptions import MlflowException

    from qrecorder.mlflow.manager import MLflowExpManager

    monkeypatch.setenv("MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH", "40")
    monkeypatch.setenv("QRECORDER_ARTIFACT_ROOT", str(tmp_path / ("实" * 10)))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    manager = MLflowExpManager(uri)
    with pytest.raises(MlflowException, match="artifact path length"):
        manager.create_exp("e")
    assert get_store(uri).client.get_experiment_by_name("e") is None
    monkeypatch.setenv("MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH", "2048")
    assert manager.create_exp("e").name == "e"
