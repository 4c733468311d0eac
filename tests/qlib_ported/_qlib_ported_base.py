"""Data-free stand-ins for ``qlib.tests.TestAutoData`` (which downloads Qlib's market data).

- ``TestAutoData``: for the copies that use qrecorder's own ``R``.
- ``TestAutoDataQlibR``: for the copies that use Qlib's ``R``; ``qlib.init`` with an empty
  data folder and qrecorder's ``QlibExpManager`` on a SQLite store in a temporary folder.

Both run each test in an empty working folder with ``MLFLOW_ALLOW_FILE_STORE=true``: Qlib's
tests write relative paths (``./.mlruns_tmp``, ``file:./temp-test-exp-mag``) and MLflow 3
refuses ``file:`` stores otherwise. So the ported test bodies stay as Qlib wrote them.
(No conftest.py here: a second ``conftest`` module would shadow tests/conftest.py for the
test modules that import helpers from it.)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from pathlib import Path

import pytest

pytest.importorskip("qlib", reason="the ported Qlib tests need the optional extra `qlib` (pyqlib)")

_ENV = {"MLFLOW_ALLOW_FILE_STORE": "true", "QRECORDER_URI": None, "MLFLOW_TRACKING_URI": None}


class TestAutoData(unittest.TestCase):
    def setUp(self) -> None:
        folder = tempfile.mkdtemp(prefix="qrec-ported-")
        previous_cwd = os.getcwd()
        previous_env = {k: os.environ.get(k) for k in _ENV}
        os.chdir(folder)
        for key, value in _ENV.items():
            _set_env(key, value)

        def restore() -> None:
            _end_open_runs()
            os.chdir(previous_cwd)
            for key, value in previous_env.items():
                _set_env(key, value)
            shutil.rmtree(folder, ignore_errors=True)

        self.addCleanup(restore)  # cleanups run even when a test overrides tearDown


class TestAutoDataQlibR(TestAutoData):
    _tmp: Path

    @classmethod
    def setUpClass(cls) -> None:
        import qlib
        from qlib.constant import REG_CN

        cls._tmp = Path(tempfile.mkdtemp(prefix="qrec-qlib-"))
        (cls._tmp / "qlib_data").mkdir()
        qlib.init(
            provider_uri=str(cls._tmp / "qlib_data"),
            region=REG_CN,
            expression_cache=None,
            dataset_cache=None,
            exp_manager={
                "class": "QlibExpManager",
                "module_path": "qrecorder.qlib",
                "kwargs": {"uri": f"sqlite:///{cls._tmp / 'mlflow.db'}", "default_exp_name": "Experiment"},
            },
        )

    @classmethod
    def tearDownClass(cls) -> None:
        from qlib.workflow import R

        from qrecorder.qlib import QlibExpManager

        assert isinstance(R.exp_manager, QlibExpManager)  # the tests really ran on qrecorder
        shutil.rmtree(cls._tmp, ignore_errors=True)


def _set_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _end_open_runs() -> None:
    """End runs a failed test left open (in qrecorder's R and in Qlib's), so the next test starts clean."""
    from qrecorder import R

    managers = [R.exp_manager]
    try:
        from qlib.workflow import R as qlib_r

        managers.append(qlib_r.exp_manager)
    except Exception:  # noqa: BLE001 - Qlib not initialised: nothing of it to clean
        pass
    for manager in managers:
        active = getattr(manager, "_active", None)
        if active is None:
            continue
        for exp in reversed(active.all()):
            if exp.active_recorder is not None:
                try:
                    exp.active_recorder.end_run("FAILED")
                except Exception:  # noqa: BLE001 - cleanup only
                    pass
        active.clear()
    R.set_uri(None)
