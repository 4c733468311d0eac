"""Loading objects never runs untrusted code: checksum first, exact allow-list, paths inside the run.

Every attack here is a hand-built pickle or a hand-edited artifact folder; the payloads are real
(``os.system`` creating a marker file), so a failed defence shows as a file on disk.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qrecorder import LoadObjectError
from qrecorder.errors import ConfigurationError
from qrecorder.objects import ALLOW_LIGHTGBM, ALLOW_SKLEARN, legacy_checksum_tag


def _str(op_text: str) -> bytes:
    data = op_text.encode()
    return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE


def stack_global_payload(module: str, name: str, command: str) -> bytes:
    """Protocol 4: STACK_GLOBAL(module, name)(command) — the opcode pickle itself emits."""
    return b"\x80\x04" + _str(module) + _str(name) + b"\x93" + _str(command) + b"\x85R."


def global_payload(module: str, name: str, command: str) -> bytes:
    """GLOBAL opcode (text 'c module\\n name\\n') inside a protocol-4 stream, so dotted names resolve."""
    return b"\x80\x04c" + module.encode() + b"\n" + name.encode() + b"\n" + _str(command) + b"\x85R."


def proto0_payload(module: str, name: str, command: str) -> bytes:
    return f"c{module}\n{name}\n(S'{command}'\ntR.".encode()


ROUTES = [
    ("os", "system"),
    ("posix", "system"),
    ("uuid", "os.system"),
    ("pathlib", "os.system"),
    ("pandas.io.common", "os.system"),
    ("numpy", "os.system"),
    ("builtins", "eval"),
    ("collections", "os.system"),
    ("datetime", "sys.modules"),
]


def _run_with_artifact(R, name: str, data: bytes) -> object:
    with R.start(experiment_name="attack"):
        rec = R.get_recorder()
        R.save_objects(placeholder=1)
    target = Path(rec.get_local_dir()) / "artifacts" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return rec


@pytest.mark.parametrize("build", [stack_global_payload, global_payload, proto0_payload])
@pytest.mark.parametrize("module,name", ROUTES)
def test_restricted_refuses_every_route_to_os_system(R, tmp_path: Path, build, module, name):
    marker = tmp_path / f"pwned-{module}-{name}"
    payload = build(module, name, f"touch {marker}")
    rec = _run_with_artifact(R, "evil.pkl", payload)
    with pytest.raises(LoadObjectError, match="restricted mode refuses"):
        rec.load_object("evil.pkl", restricted=True)
    assert not marker.exists()


def test_replaced_pickle_is_refused_before_it_runs(R, tmp_path: Path):
    marker = tmp_path / "pwned"
    with R.start(experiment_name="attack"):
        R.save_objects(**{"pred.pkl": pd.Series([1.0, 2.0])})
        rec = R.get_recorder()
    path = Path(rec.get_local_dir()) / "artifacts" / "pred.pkl"
    path.write_bytes(stack_global_payload("os", "system", f"touch {marker}"))
    with pytest.raises(LoadObjectError, match="was not unpickled"):
        rec.load_object("pred.pkl")  # unrestricted: only the checksum stands between
    assert not marker.exists()
    with pytest.raises(LoadObjectError, match="was not unpickled"):
        rec.load_object("pred.pkl", restricted=True)
    assert not marker.exists()


def test_replaced_pickle_refused_in_a_fresh_process(R, tmp_path: Path):
    """The same attack seen by another process that opens the store cold."""
    marker = tmp_path / "pwned2"
    with R.start(experiment_name="attack"):
        R.save_objects(model={"w": [1, 2]})
        rec = R.get_recorder()
    (Path(rec.get_local_dir()) / "artifacts" / "model").write_bytes(
        global_payload("uuid", "os.system", f"touch {marker}")
    )
    code = (
        "from qrecorder import R\n"
        f"R.set_uri({R.get_uri()!r})\n"
        f"rec = R.get_recorder(recorder_id={rec.id!r}, experiment_name='attack')\n"
        "try:\n    rec.load_object('model')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LoadObjectError" in out.stdout and "not unpickled" in out.stdout, out.stdout + out.stderr
    assert not marker.exists()


def test_legacy_sha256_tags_still_verify(R):
    with R.start(experiment_name="legacy"):
        rec = R.get_recorder()
        R.save_objects(placeholder=1)
    data = pickle.dumps({"a": np.arange(4)}, protocol=4)
    (Path(rec.get_local_dir()) / "artifacts" / "old.pkl").write_bytes(data)
    client = rec.client
    client.set_tag(rec.id, legacy_checksum_tag("old.pkl"), hashlib.sha256(data).hexdigest())
    np.testing.assert_array_equal(rec.load_object("old.pkl")["a"], np.arange(4))
    client.set_tag(rec.id, legacy_checksum_tag("old.pkl"), hashlib.sha256(b"other").hexdigest())
    with pytest.raises(LoadObjectError, match="sha256 checksum"):
        rec.load_object("old.pkl")


def test_require_checksum_refuses_untagged_pickles(R, monkeypatch):
    rec = _run_with_artifact(R, "uploaded.pkl", pickle.dumps([1, 2]))
    assert rec.load_object("uploaded.pkl") == [1, 2]  # Qlib-era and uploaded files load by default
    with pytest.raises(LoadObjectError, match="no recorded checksum"):
        rec.load_object("uploaded.pkl", require_checksum=True)
    monkeypatch.setenv("QRECORDER_REQUIRE_CHECKSUM", "1")
    with pytest.raises(LoadObjectError, match="no recorded checksum"):
        rec.load_object("uploaded.pkl")


def _qlib_like_objects() -> dict[str, object]:
    idx = pd.MultiIndex.from_product(
        [pd.date_range("2021-01-01", periods=4), ["SH600000", "SZ000001"]], names=["datetime", "instrument"]
    )
    return {
        "pred.pkl": pd.DataFrame({"score": np.linspace(-1, 1, 8)}, index=idx),
        "label.pkl": pd.DataFrame(np.ones((8, 1)), index=idx, columns=pd.MultiIndex.from_tuples([("label", "LABEL0")])),
        "ic.pkl": pd.Series(np.arange(4.0), index=pd.date_range("2021-01-01", periods=4, name="datetime")),
        "misc": {
            "ts": pd.Timestamp("2021-01-01", tz="Asia/Shanghai"), "td": pd.Timedelta("1D"), "nat": pd.NaT,
            "cat": pd.Categorical(["a", "b"]), "nullable": pd.Series([1, None], dtype="Int64"),
            "strings": pd.Series(["x", None], dtype="string"), "period": pd.period_range("2020-01", periods=2, freq="M"),
            "rng": np.random.default_rng(0), "arr": np.arange(6).reshape(2, 3), "rec": np.zeros(2, dtype=[("a", "i4")]),
            "ordered": __import__("collections").OrderedDict(a=1), "set": {1, 2}, "bytes": b"x",
            "date": __import__("datetime").date(2020, 1, 1), "path": Path("/tmp/x"),
        },
    }


def test_restricted_loads_what_quant_runs_save(R):
    objs = _qlib_like_objects()
    with R.start(experiment_name="safe"):
        R.save_objects(**objs)
        rec = R.get_recorder()
    for name, obj in objs.items():
        loaded = rec.load_object(name, restricted=True)
        if isinstance(obj, (pd.DataFrame, pd.Series)):
            assert loaded.equals(obj), name
    assert rec.load_object("misc", restricted=True)["ts"] == objs["misc"]["ts"]


def test_models_need_their_named_allow_list(R):
    lgb = pytest.importorskip("lightgbm")
    from sklearn.linear_model import Ridge

    x, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40.0)
    booster = lgb.train({"verbose": -1, "objective": "regression"}, lgb.Dataset(x, y), 2)
    with R.start(experiment_name="models"):
        R.save_objects(booster=booster, ridge=Ridge().fit(x, y))
        rec = R.get_recorder()
    with pytest.raises(LoadObjectError, match="lightgbm.basic.Booster"):
        rec.load_object("booster", restricted=True)
    np.testing.assert_allclose(rec.load_object("booster", restricted=True, allow=ALLOW_LIGHTGBM).predict(x), booster.predict(x))
    np.testing.assert_allclose(
        rec.load_object("ridge", restricted=True, allow=ALLOW_SKLEARN).predict(x), Ridge().fit(x, y).predict(x)
    )
    with pytest.raises(ConfigurationError, match="whole module"):
        rec.load_object("ridge", restricted=True, allow=("sklearn",))
    with pytest.raises(ConfigurationError, match="whole module"):
        rec.load_object("ridge", restricted=True, allowed_modules=("pandas",))  # the old keyword


def test_allow_entries_cannot_be_reached_by_another_split(R, tmp_path: Path):
    """Allowing pandas.DataFrame must not admit ('pandas', 'core.frame.os.system')-style paths."""
    marker = tmp_path / "split"
    rec = _run_with_artifact(R, "evil", stack_global_payload("pandas", "core.frame.os.system", f"touch {marker}"))
    with pytest.raises(LoadObjectError, match="refuses"):
        rec.load_object("evil", restricted=True)
    assert not marker.exists()


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../../../../etc/passwd", "a/../../outside", "..", "sub/../../x", "a\\..\\..\\x", "x\x00y"]
)
def test_load_object_stays_inside_the_run(R, name: str):
    with R.start(experiment_name="paths"):
        R.save_objects(ok=1)
        rec = R.get_recorder()
    with pytest.raises(LoadObjectError, match="leaves the run|NUL or a backslash"):
        rec.load_object(name)


def test_symlink_out_of_the_run_is_refused(R, tmp_path: Path):
    secret = tmp_path / "secret.pkl"
    secret.write_bytes(pickle.dumps("secret"))
    with R.start(experiment_name="paths"):
        R.save_objects(ok=1)
        rec = R.get_recorder()
    os.symlink(secret, Path(rec.get_local_dir()) / "artifacts" / "link.pkl")
    with pytest.raises(LoadObjectError, match="outside the run"):
        rec.load_object("link.pkl")


def test_long_value_marker_cannot_read_outside_the_run(R, tmp_path: Path):
    from qrecorder.mlflow.recorder import LONG_VALUE_MARKER

    outside = tmp_path / "outside.txt"
    outside.write_text("SECRET CONTENT")
    forged = {
        "p1": f"x{LONG_VALUE_MARKER}../../../../../../../../{outside}]",
        "p2": f"x{LONG_VALUE_MARKER}{outside}]",
        "p3": f"x{LONG_VALUE_MARKER}qrecorder/long_values/params/p1.txt]",  # another key's file
    }
    long_value = "L" * 10_000
    with R.start(experiment_name="params"):
        R.log_params(real=long_value)
        rec = R.get_recorder()
    # qrecorder refuses such values at the call; forge them straight into the store instead.
    from mlflow.entities import Param, RunTag

    rec.client.log_batch(rec.id, params=[Param(k, v) for k, v in forged.items()],
                         tags=[RunTag("t1", f"x{LONG_VALUE_MARKER}../../../../{outside}]")])
    params = rec.list_params()
    for key, value in forged.items():
        assert params[key] == value
    assert params["real"] == long_value  # a genuine pointer still expands
    assert rec.list_tags()["t1"].endswith(f"{outside}]")
    assert "SECRET" not in repr(params) + repr(rec.list_tags())


def test_same_name_from_threads_and_processes(R, tmp_path: Path):
    with R.start(experiment_name="race"):
        rec = R.get_recorder()
        errors: list[BaseException] = []

        def save(i: int) -> None:
            try:
                for j in range(20):
                    rec.save_objects(**{"shared.pkl": np.full(50_000, i * 100 + j)})
            except BaseException as exc:  # noqa: BLE001 - collected for the assert
                errors.append(exc)

        threads = [threading.Thread(target=save, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        # A second process saving the same name into the same run at the same time.
        code = (
            "import numpy as np\nfrom qrecorder import R\n"
            f"R.set_uri({R.get_uri()!r})\n"
            f"rec = R.get_recorder(recorder_id={rec.id!r}, experiment_name='race')\n"
            "for j in range(20):\n    rec.save_objects(**{'shared.pkl': np.full(50_000, 9000 + j)})\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        for t in threads:
            t.join()
        assert proc.returncode == 0, proc.stderr
        assert not errors, errors
        loaded = rec.load_object("shared.pkl")  # file and checksum tag belong to the same save
        assert len(set(loaded.tolist())) == 1
    run_dir = Path(rec.get_local_dir())
    assert rec.list_artifacts() == ["shared.pkl"]
    leftovers = [p for p in (run_dir / "artifacts").rglob("*") if p.name != "shared.pkl"]
    assert not leftovers, leftovers
    staging = run_dir / ".qrecorder-staging"
    assert not [p for p in staging.glob("*") if p.suffix in (".tmp", ".old")]


def test_corrupt_checksum_tag_value_is_a_clear_error(R):
    with R.start(experiment_name="tags"):
        R.save_objects(obj=[1])
        rec = R.get_recorder()
    rec.client.set_tag(rec.id, "qrecorder.checksum.obj", "nonsense")
    with pytest.raises(LoadObjectError, match="Malformed checksum"):
        rec.load_object("obj")



def test_getattr_is_only_the_zoneinfo_case(R, tmp_path: Path):
    """ZoneInfo pickles through builtins.getattr; no other attribute is reachable that way."""
    marker = tmp_path / "getattr"
    # getattr(pathlib.PosixPath(marker), "touch")() — a method of an admitted class
    payload = (
        b"\x80\x04" + _str("builtins") + _str("getattr") + b"\x93"
        + _str("pathlib") + _str("PosixPath") + b"\x93" + _str(str(marker)) + b"\x85R"
        + _str("touch") + b"\x86R)R."
    )
    rec = _run_with_artifact(R, "evil", payload)
    with pytest.raises(LoadObjectError, match="refuses getattr"):
        rec.load_object("evil", restricted=True)
    assert not marker.exists()


# --- cases found by an outside attack on the first version -----------------------------------


@pytest.mark.parametrize("spelling", ["./pred.pkl", "sub//pred.pkl", "sub/./pred.pkl", "sub/x/../pred.pkl"])
def test_unnormalised_names_are_checked_like_any_other(R, tmp_path: Path, spelling: str):
    marker = tmp_path / "pwned"
    with R.start(experiment_name="names"):
        R.save_objects(**{spelling: [1, 2]})
        rec = R.get_recorder()
    clean = os.path.normpath(spelling)
    assert f"qrecorder.checksum.{clean}" in rec.list_tags()
    assert rec.load_object(spelling, require_checksum=True) == [1, 2]
    (Path(rec.get_local_dir()) / "artifacts" / clean).write_bytes(stack_global_payload("os", "system", f"touch {marker}"))
    with pytest.raises(LoadObjectError, match="was not unpickled"):
        rec.load_object(spelling)
    assert not marker.exists()


def test_pyarrow_arrays_are_validated_before_use():
    """_restore_array builds an array from the pickle's buffers as given: offsets past the data
    buffer would read process memory (or crash); restricted mode validates it first."""
    import pyarrow.lib

    from qrecorder.safe_unpickle import restricted_loads

    class G:
        def __init__(self, name: str, args: tuple) -> None:
            self.name, self.args = name, args

        def __reduce__(self):
            return (getattr(pyarrow.lib, self.name), self.args)

    offsets = (0).to_bytes(4, "little") + (4096).to_bytes(4, "little")
    payload = pickle.dumps(G("_restore_array", ((G("type_for_alias", ("binary",)), 1, 0, 0,
                           [None, G("py_buffer", (offsets,)), G("py_buffer", (b"ABCDEFGH",))], [], None),)), protocol=5)
    with pytest.raises(pickle.UnpicklingError, match="inconsistent pyarrow array"):
        restricted_loads(payload)
    good = pd.Series(["a", None, "ccc"], dtype="string[pyarrow]")
    pd.testing.assert_series_equal(restricted_loads(pickle.dumps(good, protocol=5)), good)


def test_build_cannot_monkeypatch_an_admitted_class():
    from qrecorder.safe_unpickle import restricted_loads

    payload = (b"\x80\x02cpandas\nIndex\nN}X\x03\x00\x00\x00maxcbuiltins\nint\ns\x86b0}X\x02\x00\x00\x00okK\x01s.")
    with pytest.raises(pickle.UnpicklingError, match="refuses to set state on Index"):
        restricted_loads(payload)
    assert pd.Index([1, 5, 3]).max() == 5


def test_extension_registry_and_persistent_ids_are_refused():
    import copyreg

    from qrecorder.safe_unpickle import restricted_loads

    copyreg.add_extension("os", "system", 0x7ABC)
    try:
        with pytest.raises(pickle.UnpicklingError, match="extension registry"):
            restricted_loads(b"\x80\x02\x82\xbc\x7aX\x04\x00\x00\x00true\x85R.")
    finally:
        copyreg.remove_extension("os", "system", 0x7ABC)
    with pytest.raises(pickle.UnpicklingError, match="persistent ids"):
        restricted_loads(b"\x80\x02X\x01\x00\x00\x00xQ.")


def test_tag_keys_of_odd_names_never_collide(R):
    from qrecorder.objects import checksum_tag

    tricky = "a..b.pkl"
    impostor = checksum_tag(tricky)[len("qrecorder.checksum."):]  # a name spelled like tricky's hashed key
    assert checksum_tag(impostor) != checksum_tag(tricky)
    with R.start(experiment_name="keys"):
        R.save_objects(**{tricky: "first", impostor: "second", "my pred (v2).pkl": "third", "a+b.pkl": "fourth"})
        rec = R.get_recorder()
    assert rec.load_object(tricky) == "first" and rec.load_object(impostor) == "second"
    assert rec.load_object("my pred (v2).pkl", require_checksum=True) == "third"
    assert all(k.startswith("qrecorder.checksum.name-sha1-") for k in rec.list_tags()
               if k.startswith("qrecorder.checksum.") and ("(" in k or "+" in k))


def test_values_that_look_like_pointers_are_refused_and_never_break_reads(R):
    from qrecorder.errors import InvalidValueError
    from qrecorder.mlflow.recorder import LONG_VALUE_MARKER

    with R.start(experiment_name="markers"):
        with pytest.raises(InvalidValueError, match="reserved"):
            R.log_params(b=f"x{LONG_VALUE_MARKER}qrecorder/long_values/params/b.txt]")
        R.log_params(ok=1)
        rec = R.get_recorder()
    # A pointer whose file is gone (written by hand into the store) degrades to its stored text.
    rec.client.set_tag(rec.id, "t", f"x{LONG_VALUE_MARKER}qrecorder/long_values/tags/t.txt]")
    assert rec.list_tags()["t"].startswith("x") and rec.list_params()["ok"] == "1"
