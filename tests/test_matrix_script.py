"""The MLflow matrix (``./run test-mlflow``): what it tests is what pyproject.toml declares and
docs/mlflow-versions.md says, and it skips (never fails) only when PyPI is out of reach."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "run"


def _run_var(name: str) -> str:
    found = re.search(rf"^{name}=(\S+)$", RUN.read_text(), re.M)
    assert found, f"{name} not set in ./run"
    return found.group(1)


def _mlflow_range() -> tuple[tuple[int, ...], tuple[int, ...]]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if re.match(r"mlflow\s*[<>=]", d))
    found = re.fullmatch(r"mlflow>=([\d.]+),<([\d.]+)", spec.replace(" ", ""))
    assert found, f"pyproject's mlflow requirement is not 'mlflow>=A,<B': {spec}"
    low, high = (tuple(int(x) for x in g.split(".")) for g in found.groups())
    return low, high


def _v(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_oldest_and_newest_are_the_declared_range() -> None:
    low, high = _mlflow_range()
    oldest, newest = _v(_run_var("MATRIX_OLDEST")), _v(_run_var("MATRIX_NEWEST"))
    assert len(oldest) == 3 and len(newest) == 3, "the matrix pins exact releases"
    # the lower bound is the oldest tested release line, from its first release
    assert oldest[:2] == low[:2] and low[2:] in ((), (0,)) and oldest <= newest
    # the upper bound excludes exactly what comes after the newest tested line
    assert high == (newest[0], newest[1] + 1), (high, newest)


def test_docs_state_the_range_and_the_matrix() -> None:
    doc = (ROOT / "docs" / "mlflow-versions.md").read_text()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("mlflow"))
    assert f"`{spec}`" in doc
    assert _run_var("MATRIX_OLDEST") in doc and _run_var("MATRIX_NEWEST") in doc
    assert "./run test-mlflow" in doc


def test_matrix_test_files_exist() -> None:
    body = re.search(r"^MATRIX_TESTS=\((.*?)\)", RUN.read_text(), re.M | re.S)
    assert body
    files = body.group(1).split()
    assert "tests/test_schema_guard.py" in files and "tests/test_query_frames.py" in files
    for name in files:
        assert (ROOT / name).is_file(), name


def test_not_a_version_is_refused() -> None:
    done = subprocess.run([str(RUN), "test-mlflow", "banana"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "not a version: banana" in done.stderr and "banana: FAILED (2)" in done.stderr


@pytest.mark.skipif(shutil.which("python3") is None, reason="./run uses python3 to make venvs")
def test_unreachable_pypi_skips_with_a_clear_message(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        QRECORDER_MLFLOW_VENVS=str(tmp_path),
        PIP_INDEX_URL="http://127.0.0.1:9/simple",  # nothing listens on the discard port
        PIP_EXTRA_INDEX_URL="",
        PIP_FIND_LINKS="",
        PIP_CONFIG_FILE=os.devnull,
        PIP_RETRIES="0",
        PIP_TIMEOUT="3",
    )
    done = subprocess.run(
        [str(RUN), "test-mlflow", "3.17.2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "SKIPPED, pip cannot reach PyPI" in done.stderr
    assert "3.17.2: SKIPPED (PyPI unreachable)" in done.stderr
    assert not (tmp_path / ".venv-mlflow-3.17.2").exists()
