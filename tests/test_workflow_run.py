"""`qrec run` and run_task: a normal run, a user model, a failing config, seeds."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _runner_helpers import LINEAR, config
from click.testing import CliRunner

from qrecorder.cli import main
from qrecorder.workflow.run import run_task

REPO = Path(__file__).resolve().parents[1]


def test_qrec_run_user_model_example(R, sqlite_uri):
    cfg = REPO / "examples/user_model/workflow_config_reversal_synthetic.yaml"
    out = CliRunner().invoke(main, ["run", str(cfg), "--uri", sqlite_uri, "-e", "user"])
    assert out.exit_code == 0, out.output
    assert "FINISHED" in out.output and "Rank IC" in out.output
    recs = R.list_recorders(experiment_name="user")
    (rec,) = recs.values()
    assert rec.status == "FINISHED" and rec.list_params()["model"] == "ReversalModel"
    assert rec.list_metrics()["IC"] > 0  # the planted reversal signal


def test_config_that_raises_marks_failed_with_traceback(R, tmp_path):
    (tmp_path / "bad.py").write_text("class Bad:\n    def fit(self, ds):\n        raise ValueError('no luck')\n"
                                     "    def predict(self, ds, segment='test'):\n        pass\n")
    cfg = config({"class": "Bad", "module_path": "bad.py"})
    p = tmp_path / "wf.yaml"
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="no luck"):
        run_task(p, experiment_name="bad")
    (rec,) = R.list_recorders(experiment_name="bad").values()
    assert rec.status == "FAILED"
    assert "no luck" in rec.list_tags()["qrecorder.exception"]
    assert any("traceback" in a for a in rec.list_artifacts())


def test_cli_bad_config_exits_2_with_field(tmp_path, sqlite_uri):
    p = tmp_path / "wf.yaml"
    p.write_text(yaml.safe_dump(config({"class": "NoSuchModel", "module_path": "qrecorder.models"})))
    out = CliRunner().invoke(main, ["run", str(p), "--uri", sqlite_uri])
    assert out.exit_code == 2
    assert str(p) in out.output and "task.model.class" in out.output and "NoSuchModel" in out.output


def test_same_seed_same_numbers_and_seed_param(R):
    cfg = config({**LINEAR, "class": "MLPModel", "kwargs": {"hidden_sizes": [8], "max_iter": 5}})
    a = run_task(cfg, experiment_name="s", seed=7)
    b = run_task(cfg, experiment_name="s", seed=7)
    c = run_task(cfg, experiment_name="s", seed=8)
    assert a["metrics"]["IC"] == b["metrics"]["IC"] != c["metrics"]["IC"]
    assert R.get_recorder(recorder_id=c["recorder_id"], experiment_name="s").list_params()["seed"] == "8"


def test_qrec_help_is_fast_and_lists_commands():
    res = subprocess.run([str(Path(sys.executable).parent / "qrec"), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "run-all" in res.stdout and "compare" in res.stdout
    code = "import sys, qrecorder.cli.run_cmds; print(any(m.startswith(('mlflow', 'pandas')) for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
