"""--env venv: a model runs in a venv built from its requirements.txt, cached by hash; --executor ray."""

import subprocess
import sys
from pathlib import Path

import pytest
from _runner_helpers import LINEAR, write_bench

from qrecorder.runner.envs import VenvManager, requirements_hash
from qrecorder.runner.executors import RunnerError

QREC = str(Path(sys.executable).parent / "qrec")


def test_venv_manager_builds_once_and_layers_parent_packages(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# no extra packages: the layered parent env provides everything\n")
    vm = VenvManager(tmp_path / "cache")
    py = vm.python_for(req)
    assert py.startswith(str(tmp_path / "cache" / requirements_hash(req.read_text())))
    out = subprocess.run([py, "-c", "import sys, qrecorder, lightgbm; print(sys.prefix)"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(tmp_path / "cache"))
    assert len(vm.built) == 1
    assert VenvManager(tmp_path / "cache").python_for(req) == py  # cached: no rebuild
    assert vm.python_for(None) == sys.executable
    with pytest.raises(RunnerError, match="requirements file not found"):
        vm.python_for(tmp_path / "missing.txt")


@pytest.mark.slow
def test_run_all_env_venv_uses_the_model_venv(R, sqlite_uri, store_dir):
    bench = write_bench(store_dir / "bench", {"Linear": LINEAR})
    (bench / "Linear" / "requirements.txt").write_text("# pinned deps would go here\n")
    res = subprocess.run([QREC, "run-all", str(bench), "--env", "venv", "--uri", sqlite_uri, "--out", "out",
                          "--no-progress", "-w", "1"], cwd=store_dir, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    df = R.search_records([R.get_exp(experiment_name="run_all_model", create=False).id])
    run = df[df["tags.qrecorder.kind"] == "run"].iloc[0]
    assert run["status"] == "FINISHED"
    assert run["tags.qrecorder.python"].startswith(str(store_dir / "out" / ".venvs"))


def test_ray_missing_is_a_clear_error(monkeypatch):
    import builtins

    from qrecorder.runner.executors import RayExecutor

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(RunnerError, match=r"pip install 'qrecorder\[ray\]'"):
        RayExecutor(1)


@pytest.mark.slow
def test_run_all_on_local_ray(R, sqlite_uri, store_dir):
    pytest.importorskip("ray")
    from qrecorder.runner.batch import run_all

    bench = write_bench(store_dir / "bench", {"Linear": LINEAR})
    res = run_all(bench, times=2, workers=2, executor="ray", uri=sqlite_uri, out_dir=store_dir / "out", progress=False)
    assert len(res.results) == 2 and not res.failures
    df = R.search_records([R.get_exp(experiment_name="run_all_model", create=False).id])
    assert (df[df["tags.qrecorder.kind"] == "run"]["status"] == "FINISHED").sum() == 2
