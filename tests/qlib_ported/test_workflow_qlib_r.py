# Copyright (c) Microsoft Corporation.
# Licensed under the MIT License.
#
# Ported from Qlib's tests/test_workflow.py (microsoft/qlib v0.9.7) to run against Qlib's own R
# with qrecorder as its experiment manager (qlib.init(exp_manager={"class": "QlibExpManager", ...})).
# Changed: the TestAutoData import only: Qlib's downloads market data; TestAutoDataQlibR in
# _qlib_ported_base.py calls qlib.init on an empty data folder and runs each test in an empty folder
# with MLFLOW_ALLOW_FILE_STORE=true (MLflow 3 refuses the `file:` store this test writes to otherwise).
# ruff: noqa: I001
import unittest
from pathlib import Path
import shutil

from qlib.workflow import R
from _qlib_ported_base import TestAutoDataQlibR as TestAutoData


class WorkflowTest(TestAutoData):
    # Creating the directory manually doesn't work with mlflow,
    # so we add a subfolder named .trash when we create the directory.
    TMP_PATH = Path("./.mlruns_tmp/.trash")

    def tearDown(self) -> None:
        if self.TMP_PATH.exists():
            shutil.rmtree(self.TMP_PATH)

    def test_get_local_dir(self):
        """ """
        self.TMP_PATH.mkdir(parents=True, exist_ok=True)

        with R.start(uri=str(self.TMP_PATH)):
            pass

        with R.uri_context(uri=str(self.TMP_PATH)):
            resume_recorder = R.get_recorder()
            resume_recorder.get_local_dir()


if __name__ == "__main__":
    unittest.main()
