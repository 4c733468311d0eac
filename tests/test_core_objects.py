"""Objects: pickled in place with a checksum, loaded with verification and clear errors."""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qrecorder import LoadObjectError, SaveObjectError


class Unpicklable:
    def __reduce__(self):
        raise TypeError("this object refuses to be pickled")


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_roundtrip_in_place_without_temp_copies(R, tmp_path: Path):
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(1000, 4)), columns=list("abcd"))
    with R.start(experiment_name="objs"):
        R.save_objects(**{"pred.pkl": frame}, artifact_path="sub")
        R.save_objects(model={"w": np.arange(3)})
        rec = R.get_recorder()
        art = Path(rec.get_local_dir()) / "artifacts"
        assert (art / "sub" / "pred.pkl").is_file() and (art / "model").is_file()
        assert not list(art.rglob("*.tmp"))
        with open(art / "sub" / "pred.pkl", "rb") as fh:
            assert fh.read(2) == b"\x80\x05"  # pickle protocol 5
        assert rec.list_tags()["qrecorder.checksum.sub/pred.pkl"].startswith("blake3:")
    pd.testing.assert_frame_equal(rec.load_object("sub/pred.pkl"), frame)
    np.testing.assert_array_equal(rec.load_object("model")["w"], np.arange(3))


def test_checksum_mismatch_is_refused(R):
    with R.start(experiment_name="objs"):
        R.save_objects(data=list(range(100)))
        rec = R.get_recorder()
    path = Path(rec.get_local_dir()) / "artifacts" / "data"
    path.write_bytes(pickle.dumps(list(range(99)), protocol=5))  # a valid pickle, wrong content
    with pytest.raises(LoadObjectError, match="corrupt"):
        rec.load_object("data")


def test_missing_and_garbage_artifacts(R):
    with R.start(experiment_name="objs"):
        rec = R.get_recorder()
        R.save_objects(ok=1)
    with pytest.raises(LoadObjectError, match="No artifact named 'nope'"):
        rec.load_object("nope")
    garbage = Path(rec.get_local_dir()) / "artifacts" / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(LoadObjectError, match="could not be unpickled"):
        rec.load_object("garbage.pkl")


def test_unpicklable_object_leaves_run_intact(R):
    with R.start(experiment_name="objs"):
        R.log_metrics(a=1)
        with pytest.raises(SaveObjectError, match="cannot be pickled"):
            R.save_objects(bad=Unpicklable())
        R.save_objects(good=[1])
        rec = R.get_recorder()
        assert not (Path(rec.get_local_dir()) / "artifacts" / "bad").exists()
    assert rec.status == "FINISHED" and rec.load_object("good") == [1]


def test_local_path_file_and_folder(R, tmp_path: Path):
    file = tmp_path / "report.txt"
    file.write_text("hello")
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    with R.start(experiment_name="objs"):
        R.save_objects(local_path=file)
        R.save_objects(local_path=folder, artifact_path="figs")
        R.log_artifact(file, artifact_path="again")
        rec = R.get_recorder()
        with pytest.raises(SaveObjectError, match="not both"):
            R.save_objects(local_path=file, x=1)
        with pytest.raises(SaveObjectError, match="does not exist"):
            R.save_objects(local_path=tmp_path / "missing")
        with pytest.raises(SaveObjectError, match="inside the run"):
            R.save_objects(artifact_path="../escape", x=1)
    assert sorted(rec.list_artifacts()) == ["again", "figs", "report.txt"]
    assert rec.list_artifacts("figs") == ["figs/a.txt"]
    downloaded = rec.download_artifact("report.txt", str(tmp_path / "dl"))
    assert Path(downloaded).read_text() == "hello"


def test_custom_and_restricted_unpicklers(R, tmp_path: Path):
    with R.start(experiment_name="objs"):
        R.save_objects(frame=pd.DataFrame({"a": [1, 2]}), exploit=Exploit())
        rec = R.get_recorder()
    pd.testing.assert_frame_equal(rec.load_object("frame", restricted=True), pd.DataFrame({"a": [1, 2]}))
    with pytest.raises(LoadObjectError, match="restricted mode refuses the global (posix|os).system"):
        rec.load_object("exploit", restricted=True)
    seen = []

    class Spy(pickle.Unpickler):
        def find_class(self, module, name):
            seen.append(module)
            return super().find_class(module, name)

    rec.load_object("frame", unpickler=Spy)
    assert any(m.startswith("pandas") for m in seen)


def test_saves_from_threads_do_not_clash(R):
    with R.start(experiment_name="objs"):
        rec = R.get_recorder()
        threads = [threading.Thread(target=rec.save_objects, kwargs={f"o{i}": list(range(i))}) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [rec.load_object(f"o{i}") for i in range(8)] == [list(range(i)) for i in range(8)]


def test_unwritable_artifact_path_is_a_clear_error(R):
    with R.start(experiment_name="objs"):
        rec = R.get_recorder()
        art = Path(rec.get_local_dir()) / "artifacts"
        (art / "blocker").write_text("a file where a folder is needed")
        with pytest.raises(SaveObjectError, match="could not be written"):
            R.save_objects(**{"x": 1}, artifact_path="blocker")
        R.save_objects(ok=1)  # the run is intact
    assert rec.status == "FINISHED" and rec.load_object("ok") == 1
