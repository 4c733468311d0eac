"""`qrec run-all` takes the command lines of Qlib's examples/run_all_model.py (python-fire) unchanged.

Real `qrec` subprocesses on Qlib's folder layout (``benchmarks/<Model>/workflow_config_<model>_<dataset>
[_<universe>].yaml`` + ``requirements.txt``, run from the folder that holds ``benchmarks``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from _runner_helpers import LGB, LINEAR, config, write_bench
from test_qlib_configs import QLIB_LIGHTGBM_ALPHA158, qrec, run_statuses, static_qlib_config

from qrecorder.cli.run_cmds import fire_args


@pytest.mark.parametrize("given, expected", [
    (["run", "3", "mlp"], ["run", "3", "mlp"]),
    (["run", "3", "[mlp,tft,lstm]", "--exclude=True"], ["run", "3", "[mlp,tft,lstm]", "--exclude"]),
    (["run", "--models=[mlp,lightgbm]", "--exclude=False"], ["run", "--models=[mlp,lightgbm]"]),
    (["run", "--exclude", "True", "--noexclude"], ["run", "--exclude"]),
    (["run", "--exp_folder_name=recs", "--qlib_uri", "git+x"], ["run", "--exp-folder-name=recs", "--qlib-uri", "git+x"]),
    (["--wait_before_rm_env", "--wait_when_err=true"], ["--wait-before-rm-env", "--wait-when-err"]),
    (["bench", "--times", "2", "--no-resume"], ["bench", "--times", "2", "--no-resume"]),
])
def test_fire_spellings_become_click_options(given, expected):
    assert fire_args(given) == expected


def _qlib_layout(root: Path) -> Path:
    """Qlib's examples/ folder: benchmarks/<Model>/ with configs and requirements.txt."""
    bench = write_bench(root / "benchmarks", {"Linear": LINEAR, "LightGBM": LGB,
                                              "Boom": {"class": "Boom", "module_path": "user"}})
    for d in ("Linear", "LightGBM", "Boom"):
        (bench / d / "requirements.txt").write_text("# nothing to install\n")
    ridge = config({**LINEAR, "kwargs": {"estimator": "ridge", "alpha": 1.0}})
    (bench / "Linear" / "workflow_config_linear_synthetic_csi500.yaml").write_text(yaml.safe_dump(ridge))
    return bench


def _runs(db: Path, exp: str) -> list[dict]:
    from qrecorder import R

    with R.uri_context(f"sqlite:///{db}"):
        df = R.search_records([R.get_exp(experiment_name=exp, create=False).id])
    df = df[df["tags.qrecorder.kind"] == "run"]
    return df.to_dict("records")


def test_run_all_model_positional_form_and_exp_folder_name(tmp_path):
    """`python run_all_model.py run 2 linear synthetic --exp_folder_name=...` from Qlib's examples/ folder."""
    _qlib_layout(tmp_path)
    db = tmp_path / "mlflow.db"
    res = qrec(["run-all", "run", "2", "linear", "synthetic", "--exp_folder_name=my_records", "--uri",
                f"sqlite:///{db}", "--no-progress", "--workers", "2"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = _runs(db, "my_records")
    assert sorted((r["tags.qrecorder.model"], r["tags.qrecorder.seed"], r["status"]) for r in runs) == [
        ("Linear", "0", "FINISHED"), ("Linear", "1", "FINISHED")]
    assert {r["params.task.model.kwargs.estimator"] for r in runs} == {"ols"}  # not the _csi500 config
    assert "| Linear" in res.stdout


def test_run_all_model_models_list_exclude_and_qlib_only_flags(tmp_path):
    """`run --models=[boom] --exclude=True` plus the flags that only make sense for Qlib's conda envs."""
    _qlib_layout(tmp_path)
    db = tmp_path / "mlflow.db"
    res = qrec(["run-all", "run", "--models=[boom]", "--exclude=True", "--dataset=synthetic", "--times=1",
                "--wait_before_rm_env", "--wait_when_err=True", "--qlib_uri=git+https://github.com/microsoft/qlib",
                "--uri", f"sqlite:///{db}", "--no-progress", "--workers", "2"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "--qlib-uri git+https://github.com/microsoft/qlib is used only with --env venv" in res.stderr
    assert "accepted and do nothing here" in res.stderr
    runs = _runs(db, "run_all_model")
    assert sorted(r["tags.qrecorder.model"] for r in runs) == ["LightGBM", "Linear"]


def test_run_all_model_universe_positional(tmp_path):
    """`run 1 linear synthetic csi500` picks workflow_config_linear_synthetic_csi500.yaml."""
    _qlib_layout(tmp_path)
    db = tmp_path / "mlflow.db"
    res = qrec(["run-all", "run", "1", "Linear", "synthetic", "csi500", "--uri", f"sqlite:///{db}",
                "--no-progress", "--workers", "1"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = _runs(db, "run_all_model")
    assert run["params.task.model.kwargs.estimator"] == "ridge"
    assert run["tags.qrecorder.config"].endswith("workflow_config_linear_synthetic_csi500.yaml")


@pytest.mark.parametrize("args, text", [
    (["run", "x"], "TIMES must be an integer"),
    (["run", "1", "linear", "synthetic", "", "extra"], "too many arguments after 'run'"),
    (["run", "1", "[linear,xgboost]", "synthetic"], "unknown model name(s) ['xgboost']"),
    (["run", "1", "linear"], "no config matches 'workflow_config_<model>_Alpha360.yaml'"),  # Qlib's default
    (["run", "2", "--times", "3"], "times given twice"),
    (["run", "--exclude=maybe"], "--exclude takes True or False"),
    (["a", "b"], "one BENCH_DIR expected"),
])
def test_run_all_model_bad_command_lines_exit_2(tmp_path, args, text):
    _qlib_layout(tmp_path)
    db = tmp_path / "mlflow.db"
    res = qrec(["run-all", *args, "--uri", f"sqlite:///{db}", "--no-progress"], cwd=tmp_path, timeout=120)
    assert res.returncode == 2, res.stderr
    assert text in res.stderr, res.stderr
    assert run_statuses(db) == []


def test_run_all_typo_in_one_config_runs_nothing(tmp_path):
    """A typo in one model's config is found before any cell of any model runs."""
    bench = _qlib_layout(tmp_path)
    bad = config({**LINEAR, "kwargs": {"estimater": "ols"}})
    (bench / "Linear" / "workflow_config_linear_synthetic.yaml").write_text(yaml.safe_dump(bad))
    db = tmp_path / "mlflow.db"
    res = qrec(["run-all", str(bench), "--uri", f"sqlite:///{db}", "--no-progress", "--times", "2"], cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "workflow_config_linear_synthetic.yaml: task.model.kwargs" in res.stderr
    assert "'estimater' -> 'estimator'" in res.stderr
    assert run_statuses(db) == []


def test_run_all_runs_qlib_configs_with_seeds(tmp_path):
    """A Qlib config (Qlib classes, qlib_init) as a benchmark: each repeat gets its seed; the no-data Qlib
    config of another folder stops the batch before anything runs."""
    bench = tmp_path / "benchmarks"
    (bench / "LightGBM").mkdir(parents=True)
    cfg = static_qlib_config(tmp_path, tmp_path / "provider")
    cfg["task"]["model"]["kwargs"].update(subsample=0.7, subsample_freq=1)
    (bench / "LightGBM" / "workflow_config_lightgbm_static.yaml").write_text(yaml.safe_dump(cfg))
    db = tmp_path / "mlflow.db"
    res = qrec(["run-all", "run", "2", "lightgbm", "static", "--uri", f"sqlite:///{db}", "--no-progress",
                "--workers", "2"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = sorted(_runs(db, "run_all_model"), key=lambda r: r["tags.qrecorder.seed"])
    assert [(r["tags.qrecorder.seed"], r["status"], r["params.model.kwargs.seed"]) for r in runs] == [
        ("0", "FINISHED", "0"), ("1", "FINISHED", "1")]
    assert runs[0]["metrics.IC"] != runs[1]["metrics.IC"]
    assert "| LightGBM" in res.stdout
    before = run_statuses(db)  # the two runs and the batch's summary recorder

    (bench / "Alpha").mkdir()
    nodata = copy.deepcopy(QLIB_LIGHTGBM_ALPHA158).replace("PROVIDER", str(tmp_path / "provider"))
    (bench / "Alpha" / "workflow_config_alpha_static.yaml").write_text(nodata)
    res = qrec(["run-all", "run", "1", "--dataset", "static", "--uri", f"sqlite:///{db}", "--no-progress",
                "--no-resume"], cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "workflow_config_alpha_static.yaml: qlib_init.provider_uri: no Qlib market data" in res.stderr
    assert run_statuses(db) == before
