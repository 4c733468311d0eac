"""Exceptions raised by qrecorder.

Every error says what was wrong and what to do. Classes subclass the builtin that Qlib code
would have caught (``ValueError`` for lookups, ``RuntimeError`` for state) so existing
``except ValueError`` blocks keep working.
"""

from __future__ import annotations


class QRecorderError(Exception):
    """Base class of every qrecorder error."""


class ConfigurationError(QRecorderError, ValueError):
    """A URI, environment variable or option is invalid."""


class UnsupportedURIError(ConfigurationError):
    """The tracking URI uses a scheme qrecorder cannot store to."""


class FileStoreNotAllowedError(ConfigurationError):
    """A legacy ``file:`` (Qlib ``mlruns``) store was asked for but MLflow refuses it."""


class StoreError(QRecorderError, RuntimeError):
    """The tracking store failed in a way that retrying will not fix."""


class StoreUnavailableError(StoreError):
    """The tracking store could not be reached within the retry budget."""


class AccessDeniedError(StoreError, PermissionError):
    """The tracking server refused the credentials (anonymous or insufficient rights)."""


class StoreReadOnlyError(StoreError, PermissionError):
    """A local store (a SQLite file or its folder) is read-only: qrecorder cannot write to it."""


class ExperimentNotFoundError(QRecorderError, ValueError):
    """No (active) experiment has the given id or name."""


class ExperimentDeletedError(ExperimentNotFoundError):
    """The experiment exists but is deleted; MLflow keeps its name reserved."""


class ExpAlreadyExistError(QRecorderError, ValueError):
    """An experiment with this name exists already (Qlib's name for the error)."""


class RecorderNotFoundError(QRecorderError, ValueError):
    """No recorder has the given id or name in the experiment."""


class NoActiveRecorderError(QRecorderError, ValueError, RuntimeError):
    """An operation needs an active recorder but none is running in this thread.

    A ValueError too, as Qlib raised ValueError("No valid active recorder exists...")."""


class AmbiguousActiveRunError(QRecorderError, RuntimeError):
    """Several threads have active runs and this thread has none: R cannot tell which to log to."""


class RecorderStateError(QRecorderError, RuntimeError):
    """The recorder is in a state that does not allow the operation (e.g. logging after end)."""


class InvalidKeyError(QRecorderError, ValueError):
    """A metric, param or tag key is not accepted by MLflow."""


class InvalidValueError(QRecorderError, ValueError):
    """A metric value is not a real number, or a value cannot be stored."""


class UnstorableValueError(InvalidValueError):
    """The database would refuse this value or name: out of its range (a step beyond 64 bits, an
    integer too large for a float), text it cannot hold (NUL, lone surrogates), or longer than
    its column. Refused at the call, so the values logged around it are still written."""


class ParamConflictError(QRecorderError, ValueError):
    """A param was logged again with a different value; MLflow params are immutable."""


class SaveObjectError(QRecorderError, ValueError):
    """An object could not be serialized or saved as an artifact."""


class LoadObjectError(QRecorderError, ValueError):
    """An artifact could not be loaded as an object (missing, corrupt or refused)."""


class LoggingFailedError(QRecorderError, RuntimeError):
    """Values queued for the background writer could not be written.

    Raised at the next log call, flush or end of run of the recorder whose values failed.
    """


class JournalWriteError(LoggingFailedError, OSError):
    """The values of a call could not be appended to the crash journal (disk full, read-only).

    They were not accepted: nothing of that call is queued."""


class RunnerError(QRecorderError, RuntimeError):
    """The batch runner cannot go on (bad option, missing optional dependency, a broken worker)."""


class WorkerProtocolError(RunnerError):
    """A runner worker (or the parent) sent a message that does not follow the worker protocol.

    Raised on receipt, naming the message and, in the parent, the worker's log."""


class TerminatedBySignal(SystemExit):
    """Raised in the main thread when SIGTERM arrives while a run is active.

    The one qrecorder exception outside ``QRecorderError``: it must not be caught by
    ``except Exception``.

    It is a ``SystemExit`` so that the process still exits (code 128 + signal) after the run
    is marked KILLED and the buffered values are flushed.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
