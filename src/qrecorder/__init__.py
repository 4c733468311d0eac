"""qrecorder: Qlib's experiment management (``R``) on MLflow, fast and crash-safe.

``from qrecorder import R`` is all a Qlib script needs. Importing qrecorder does not import
MLflow; the first call that touches a store does.
"""

from __future__ import annotations

from .api import QlibRecorder
from .errors import (
    AccessDeniedError,
    AmbiguousActiveRunError,
    ConfigurationError,
    ExpAlreadyExistError,
    ExperimentDeletedError,
    ExperimentNotFoundError,
    FileStoreNotAllowedError,
    InvalidKeyError,
    InvalidValueError,
    JournalWriteError,
    LoadObjectError,
    LoggingFailedError,
    NoActiveRecorderError,
    ParamConflictError,
    QRecorderError,
    RecorderNotFoundError,
    RecorderStateError,
    SaveObjectError,
    StoreError,
    StoreReadOnlyError,
    StoreUnavailableError,
    TerminatedBySignal,
    UnstorableValueError,
    UnsupportedURIError,
)
from .experiment import Experiment
from .manager import ExpManager
from .mlflow.manager import MLflowExpManager
from .qlib.swap import QlibAwareExpManager
from .recorder import Recorder

__version__ = "0.1.0"

# MLflow's classes; Qlib-compatible ones once Qlib is imported (see qrecorder.qlib.swap)
R = QlibRecorder(QlibAwareExpManager())

__all__ = [
    "R",
    "QlibRecorder",
    "ExpManager",
    "Experiment",
    "Recorder",
    "MLflowExpManager",
    "AccessDeniedError",
    "AmbiguousActiveRunError",
    "ConfigurationError",
    "ExpAlreadyExistError",
    "ExperimentDeletedError",
    "ExperimentNotFoundError",
    "FileStoreNotAllowedError",
    "InvalidKeyError",
    "InvalidValueError",
    "JournalWriteError",
    "LoadObjectError",
    "LoggingFailedError",
    "NoActiveRecorderError",
    "ParamConflictError",
    "QRecorderError",
    "RecorderNotFoundError",
    "RecorderStateError",
    "SaveObjectError",
    "StoreError",
    "StoreReadOnlyError",
    "StoreUnavailableError",
    "TerminatedBySignal",
    "UnstorableValueError",
    "UnsupportedURIError",
]
