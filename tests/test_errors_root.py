"""One error root: every exception class qrecorder defines derives from QRecorderError."""

import importlib
import inspect
import pkgutil

import qrecorder
from qrecorder.data import DataError
from qrecorder.errors import QRecorderError, RunnerError, TerminatedBySignal, WorkerProtocolError
from qrecorder.workflow import ConfigError

# Outside the root on purpose: TerminatedBySignal is a SystemExit (``except Exception`` must not
# catch it). Not yet joined (their modules are being reworked elsewhere; see issue 9): the CLI's
# click exception and two internal control-flow signals of the MLflow backend.
OUTSIDE = {
    "qrecorder.errors.TerminatedBySignal",
    "qrecorder.mlflow.sql.reads.Unsupported",
    "qrecorder.mlflow.stale._LockTimeout",
    # Stands for MLflow's RestException inside the light REST calls (retried like it, so not a
    # QRecorderError, which is never transient); callers get MLflow's exception (rest.caller_error).
    "qrecorder.mlflow.rest.RestError",
    # Likewise for a request that could not be sent (invalid URL or header): callers get MLflow's
    # MlflowException / InvalidUrlException (rest.caller_error).
    "qrecorder.mlflow.rest.RequestFailed",
}
OPTIONAL = ("qrecorder.qlib",)  # needs pyqlib


def _exception_classes():
    for info in pkgutil.walk_packages(qrecorder.__path__, "qrecorder."):
        if info.name.startswith(OPTIONAL) or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and issubclass(cls, BaseException) and not issubclass(cls, Warning):
                yield f"{cls.__module__}.{cls.__qualname__}", cls


def test_every_qrecorder_exception_derives_from_the_root():
    found = dict(_exception_classes())
    assert "qrecorder.runner.batch._Interrupt" in found and "qrecorder.errors.RunnerError" in found  # the walk works
    stray = sorted(name for name, cls in found.items()
                   if not issubclass(cls, QRecorderError) and name not in OUTSIDE
                   and not issubclass(cls, KeyboardInterrupt))  # batch's SIGTERM-as-Ctrl-C signal
    assert stray == [], f"exception classes outside QRecorderError: {stray}"


def test_the_root_keeps_the_builtin_bases_callers_catch():
    assert issubclass(ConfigError, QRecorderError) and issubclass(ConfigError, ValueError)
    assert issubclass(DataError, QRecorderError) and issubclass(DataError, ValueError)
    assert issubclass(RunnerError, QRecorderError) and issubclass(RunnerError, RuntimeError)
    assert issubclass(WorkerProtocolError, RunnerError)
    assert not issubclass(TerminatedBySignal, Exception) and issubclass(TerminatedBySignal, SystemExit)
    from qrecorder.runner.executors import RunnerError as from_executors  # the old import path still works

    assert from_executors is RunnerError
    err = ConfigError("bad", source="a.yaml", field="task.model")
    assert str(err) == "a.yaml: task.model: bad" and err.field == "task.model"
