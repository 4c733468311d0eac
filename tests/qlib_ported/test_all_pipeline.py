# Copyright (c) Microsoft Corporation.
# Licensed under the MIT License.
#
# Ported from Qlib's tests/test_all_pipeline.py (microsoft/qlib v0.9.7) to run against qrecorder's R.
# Changed:
# - imports: `from qlib.workflow import R` -> `from qrecorder import R`; `from qlib.tests import
#   TestAutoData` (downloads market data) -> the data-free stand-in in _qlib_ported_base.py;
# - only the data-free part is kept: fake_experiment() and test_2_expmanager. train(),
#   backtest_analysis(), test_0_train, test_1_backtest (they need Qlib's CSI300 market data) and
#   tearDownClass (it removed test_0_train's store) are left out, with the imports only they used.
# The stand-in base class runs each test in an empty folder with MLFLOW_ALLOW_FILE_STORE=true (MLflow 3 refuses
# the `file:` store this test writes to otherwise).
# ruff: noqa: I001

import unittest
import pytest
from pathlib import Path
import shutil

from qlib.utils import flatten_dict
from qrecorder import R
from qlib.tests.config import CSI300_GBDT_TASK
from _qlib_ported_base import TestAutoData


def fake_experiment():
    """A fake experiment workflow to test uri

    Returns
    -------
        pass_or_not_for_default_uri: bool
        pass_or_not_for_current_uri: bool
        temporary_exp_dir: str
    """

    # start exp
    default_uri = R.get_uri()
    current_uri = "file:./temp-test-exp-mag"
    with R.start(experiment_name="fake_workflow_for_expm", uri=current_uri):
        R.log_params(**flatten_dict(CSI300_GBDT_TASK))

        current_uri_to_check = R.get_uri()
    default_uri_to_check = R.get_uri()
    return default_uri == default_uri_to_check, current_uri == current_uri_to_check, current_uri


class TestAllFlow(TestAutoData):
    @pytest.mark.slow
    def test_2_expmanager(self):
        pass_default, pass_current, uri_path = fake_experiment()
        self.assertTrue(pass_default, msg="default uri is incorrect")
        self.assertTrue(pass_current, msg="current uri is incorrect")
        shutil.rmtree(str(Path(uri_path.strip("file:")).resolve()))


def suite():
    _suite = unittest.TestSuite()
    _suite.addTest(TestAllFlow("test_2_expmanager"))
    return _suite


if __name__ == "__main__":
    runner = unittest.TextTestRunner()
    runner.run(suite())
