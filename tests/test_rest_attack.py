"""Attacks on the light REST path (``qrecorder.mlflow.rest``): the caller must see what it
sees through MLflow's client (``QRECORDER_REST=0``) on the same store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PLAIN_ENV_DROPPED = ("QRECORDER_URI", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                     "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH", "QRECORDER_REST")

FAILING_START = """
import os
from qrecorder import R
R.set_uri({url!r})
try:
    with R.start(experiment_name="x"):
        pass
except Exception as exc:
    print(repr((type(exc).__module__ + "." + type(exc).__name__, str(exc))))
"""


def _both(code: str, tmp_path: Path, **extra: str) -> tuple[Any, Any]:
    import qrecorder

    src = str(Path(qrecorder.__file__).resolve().parents[1])
    out = []
    for rest in ("1", "0"):
        env = {k: v for k, v in os.environ.items() if k not in PLAIN_ENV_DROPPED}
        env.update(PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), QRECORDER_REST=rest,
                   QRECORDER_RETRY_SECONDS="2", HOME=str(tmp_path), **extra)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                              env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        out.append(eval(done.stdout.strip().splitlines()[-1]))  # noqa: S307 - our output
    return out[0], out[1]


@pytest.mark.parametrize(("url", "extra"), [
    ("http://127.0.0.1:99999", {}),  # an invalid port: InvalidUrlException
    ("http://exa mple.com", {}),  # an invalid host: InvalidUrlException
    ("http://127.0.0.1:1", {"MLFLOW_TRACKING_TOKEN": "abc\ndef"}),  # a header requests refuses
    ("http://127.0.0.1:1", {"MLFLOW_TRACKING_TOKEN": "t\u043eken"}),  # not latin-1
])
def test_request_that_cannot_be_sent_raises_mlflows_exception(url: str, extra: dict[str, str], tmp_path: Path) -> None:
    """MLflow's http_request turns any failure to send a request into MlflowException
    (InvalidUrlException for an invalid URL); the light path raised requests' or Python's own."""
    light, heavy = _both(FAILING_START.format(url=url), tmp_path, **extra)
    assert light == heavy
    assert light[0].startswith("mlflow.exceptions.")
