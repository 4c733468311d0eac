"""``qrecorder.admin``: the one gateway of ``qrec`` to MLflow's client and the direct SQL readers.

The commands' behaviour is pinned by test_cli_store.py / test_cli_habits.py / test_housekeeping.py;
here the module is used as a library, and the command modules are checked to stay off MLflow's
client, private store members and the direct SQL readers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qrecorder import admin
from qrecorder.errors import RecorderNotFoundError
from qrecorder.uri import resolve_uri

CLI = Path(admin.__file__).parent / "cli"


@pytest.fixture
def runs(R, sqlite_uri: str) -> dict:  # noqa: N803 - conftest's R fixture
    ids = []
    for i in range(2):
        with R.start(experiment_name="adm", recorder_name=f"r{i}"):
            R.log_params(seed=str(i))
            R.log_metrics(ic=0.1 * (i + 1))
            R.save_objects(pred={"i": i}, artifact_path="out")
            ids.append(R.get_recorder().id)
    from qrecorder.mlflow.manager import MLflowExpManager

    return {"uri": sqlite_uri, "ids": ids, "manager": MLflowExpManager(sqlite_uri)}


def test_quick_and_api_listings_agree(runs):
    mgr, loc = runs["manager"], resolve_uri(runs["uri"])
    quick = admin.quick_experiments(loc, include_deleted=False)
    slow = admin.list_experiments(mgr, include_deleted=False)
    assert quick is not None and {e["name"] for e in quick} == {e["name"] for e in slow} >= {"adm"}
    assert next(e for e in quick if e["name"] == "adm")["runs"] == 2
    exp = mgr.get_exp(experiment_name="adm", create=False)
    fast = admin.quick_runs(loc, "adm", None, None)
    core = admin.search_runs(mgr, exp, None, None, [], None)
    assert fast is not None and fast["total"] == 2 and core["total"] is None
    assert [r["run_id"] for r in fast["runs"]] == [r["run_id"] for r in core["runs"]] == runs["ids"][::-1]
    assert [r["metrics"] for r in fast["runs"]] == [r["metrics"] for r in core["runs"]]
    assert admin.quick_runs(loc, "no_such", None, None) is None  # the core path then gives MLflow's error
    assert admin.quick_runs(resolve_uri("http://127.0.0.1:1"), "adm", None, None) is None
    assert admin.search_runs(mgr, exp, "FAILED", None, [], None)["runs"] == []
    ordered = admin.search_runs(mgr, exp, "FINISHED", "params.seed = '1' ", ["metrics.ic ASC"], 5)
    assert [r["run_id"] for r in ordered["runs"]] == runs["ids"][1:]
    ordered = admin.search_runs(mgr, exp, "FINISHED", None, ["metrics.ic ASC"], 5)
    assert [r["run_id"] for r in ordered["runs"]] == runs["ids"]


def test_run_details_artifacts_and_delete(runs):
    mgr = runs["manager"]
    first, second = runs["ids"]
    assert admin.artifact_files(mgr, first) == [{"path": "out/pred", "size": admin.artifact_files(mgr, first)[0]["size"]}]
    assert admin.artifact_files(mgr, first)[0]["size"] > 0
    assert admin.artifact_files(mgr, first, "nothing_here") == []
    with pytest.raises(RecorderNotFoundError):
        admin.delete_runs(mgr, [first, "0" * 32])
    assert admin.run_details(mgr, first)["lifecycle_stage"] == "active"  # nothing deleted: one id was unknown
    assert admin.delete_runs(mgr, [first]) == [{"run_id": first, "name": "r0"}]
    info = admin.run_details(mgr, first)  # a deleted run is still shown
    assert info["lifecycle_stage"] == "deleted" and info["experiment_name"] == "adm"
    assert info["params"]["seed"] == "0" and info["metrics"] == {"ic": pytest.approx(0.1)}
    assert info["artifacts"][0]["path"] == "out/pred"
    assert admin.deleted_run_ids(mgr) == [first]
    with pytest.raises(RecorderNotFoundError, match="No run with id 'nope'"):
        admin.run_details(mgr, "nope")
    assert admin.live_runs(mgr, run_ids=[second]) == []  # FINISHED: not live
    assert admin.can_purge(mgr) and admin.store_uri(mgr).startswith("sqlite:///")


def test_describe_failure():
    from mlflow.exceptions import MlflowException

    assert admin.describe_failure(ValueError("x")) is None
    assert admin.describe_failure(ConnectionRefusedError("refused")) == (True, "The tracking store is unreachable: refused")
    unreachable, message = admin.describe_failure(MlflowException("no such run\nmore"))  # type: ignore[misc]
    assert not unreachable and message == "no such run"


def test_commands_reach_the_store_only_through_the_model_or_admin():
    """No command module calls MLflow's client, a private store member or the direct SQL readers."""
    forbidden = re.compile(
        r"\.client\b|_tracking_client|\bstore\._|\._get_exp\b|_open_report|\b_quick\b|fastread|fastwrite|"
        r"\bimport sqlite3\b|from mlflow\b|import mlflow\b|\.mlflow\.(?!manager import MLflowExpManager)"
    )
    offenders = []
    for path in sorted(CLI.glob("*.py")):
        if path.name == "_quick.py":  # the readers themselves (moving below qrecorder.mlflow)
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if forbidden.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []
