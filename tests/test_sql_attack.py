"""The direct-SQL cold path attacked from outside: each test is a case where it once differed
from MLflow's API (rows, answers, errors), fixed to agree."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

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
