"""Runs never outlive their process while claiming RUNNING.

- SIGTERM (while a run is active, in the main thread, when no other handler is installed)
  raises TerminatedBySignal, so ``with R.start(...)`` ends the run KILLED and the process
  still exits with 128+15.
- At interpreter exit, runs still open are ended: KILLED after a signal or Ctrl-C, FAILED
  after an uncaught exception, FINISHED otherwise (as MLflow's fluent API does); then every
  background writer is flushed.
- SIGKILL cannot be caught: heartbeats let ``mark_stale_runs`` find those runs later.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from .errors import TerminatedBySignal

if TYPE_CHECKING:
    from .recorder import Recorder

logger = logging.getLogger("qrecorder")

_running: dict[int, Recorder] = {}
_lock = threading.Lock()
_exit_reason: dict[str, str] = {}
_installed = False
_signal_installed = False
_exit_hooks: list = []


def add_exit_hook(hook) -> None:  # type: ignore[no-untyped-def]
    """Run ``hook()`` at exit after open runs are ended (backends flush their writers here)."""
    _install()
    if hook not in _exit_hooks:
        _exit_hooks.append(hook)


def register(recorder: Recorder) -> None:
    """Remember a started recorder until it ends; install the exit/SIGTERM hooks once."""
    _install()
    _install_signal_handler()
    with _lock:
        _running[id(recorder)] = recorder


def unregister(recorder: Recorder) -> None:
    with _lock:
        _running.pop(id(recorder), None)


def running() -> list[Recorder]:
    with _lock:
        return list(_running.values())


_exit_failures: list[str] = []
EXIT_CODE_LOST_VALUES = 70  # EX_SOFTWARE: accepted values were not written and no call could raise it


def note_exit_failure(message: str) -> None:
    """Record a failure found while exiting that no caller can be told of any more."""
    _exit_failures.append(message)


def status_for_exception(exc: BaseException | None) -> str:
    """The status a run gets when its block is left with ``exc``."""
    from .recorder import Recorder

    if exc is None:
        return Recorder.STATUS_FI
    if isinstance(exc, (KeyboardInterrupt, TerminatedBySignal)):
        return Recorder.STATUS_K
    if isinstance(exc, SystemExit):
        return Recorder.STATUS_FI if exc.code in (None, 0) else Recorder.STATUS_FA
    return Recorder.STATUS_FA


def _install_signal_handler() -> None:
    """SIGTERM → TerminatedBySignal, installed when a run starts in the main thread and no
    other handler is set. With no run open it behaves as the default (after a flush)."""
    global _signal_installed
    if _signal_installed or threading.current_thread() is not threading.main_thread():
        return
    _signal_installed = True
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # pragma: no cover - e.g. embedded interpreters
        pass


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(_at_exit)
    previous_hook = sys.excepthook

    def _hook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        _exit_reason.setdefault("status", status_for_exception(exc))
        previous_hook(exc_type, exc, tb)

    sys.excepthook = _hook


def _on_sigterm(signum: int, _frame: object) -> None:
    from .recorder import Recorder

    if not running():
        # No run to mark KILLED: write what is queued, then die as the default action would.
        for hook in list(_exit_hooks):
            try:
                hook()
            except Exception:  # noqa: BLE001 - the process is being terminated
                pass
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _exit_reason["status"] = Recorder.STATUS_K
    raise TerminatedBySignal(signum)


def _at_exit() -> None:
    from .recorder import Recorder

    status = _exit_reason.get("status", Recorder.STATUS_FI)
    for recorder in running():
        try:
            recorder.end_run(status)
        except Exception as exc:  # noqa: BLE001 - the interpreter is exiting; report loudly
            logger.error("qrecorder: could not end run %s at exit: %s", recorder.id, exc)
            note_exit_failure(f"could not end run {recorder.id} at exit: {exc}")
    for hook in list(_exit_hooks):
        try:
            hook()
        except Exception as exc:  # noqa: BLE001
            print(f"qrecorder: exit hook failed: {exc}", file=sys.stderr)
    if _exit_failures and os.environ.get("QRECORDER_EXIT_ON_LOST_VALUES", "1") != "0":
        # A background failure that no later call could raise must not end in exit status 0.
        for message in _exit_failures:
            print(f"qrecorder: {message}", file=sys.stderr)
        print(f"qrecorder: exiting with status {EXIT_CODE_LOST_VALUES} because logged values were lost "
              "(the journal keeps them for `qrec recover`)", file=sys.stderr)
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - closed streams
                pass
        os._exit(EXIT_CODE_LOST_VALUES)


def _after_fork_in_child() -> None:
    """A forked child does not own its parent's runs: it must not end them at its exit."""
    global _lock
    _lock = threading.Lock()
    _running.clear()
    _exit_reason.clear()
    _exit_failures.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
