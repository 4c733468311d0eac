"""The write-ahead journal: accepted values survive SIGKILL of the logging process.

Why: the batched writer keeps values in memory for up to ``flush_interval`` before they reach
the store; a SIGKILL (or the OOM killer) there lost everything still queued. Now every
``log_metrics``/``log_params``/``set_tags`` call appends its values to a per-process journal file
with one ``write(2)`` before it returns. The data then sits in the kernel's page cache, which
outlives the process (not a power loss: there is no fsync). The writer thread appends a
*settled* mark after each batch reaches the store.

A journal belongs to one process, which holds an exclusive ``flock`` on it for its life; the
kernel drops the lock when the process dies, however it dies. Whoever opens the store next
(its writer thread), ``qrec gc`` or ``qrec recover`` takes the lock of every journal whose
owner is gone and writes the records after the last settled mark again, in order. That replay
is exactly-once in effect: metrics are keyed by (key, timestamp, step, value) and inserted with
"do nothing on conflict", params accept their own value again, tags are set in the original
order. Then the journal file is removed, still under the lock, and a replayer that opened it
concurrently sees the inode gone and skips it.

Format: frames of ``<u32 length><u32 crc32><marshal payload>``. marshal, not pickle: replaying
a journal must never execute code, whatever the file holds. A torn or corrupt tail (only after
a power loss or a full disk) ends the replay of that file at the last good frame.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import marshal
import os
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import tags as tagnames

logger = logging.getLogger("qrecorder")

_HEADER = struct.Struct("<II")
_MAGIC = "qrecorder-journal-1"
_SUFFIX = ".jrnl"
ROTATE_BYTES = 64 << 20  # truncate a fully settled journal past this size
SETTLED = "S"


def journaling_enabled() -> bool:
    return os.environ.get("QRECORDER_JOURNAL", "1").strip().lower() not in ("0", "false", "no", "off")


def journal_dir_for(uri: str, kind: str, db_path: Path | None) -> Path:
    """Where journals of a store live: beside an SQLite file, else in the user's state folder.

    ``QRECORDER_JOURNAL_DIR`` overrides the base folder (one sub-folder per store).
    """
    key = hashlib.sha256(_redact(uri).encode("utf-8")).hexdigest()[:16]
    base = os.environ.get("QRECORDER_JOURNAL_DIR")
    if base:
        return Path(base) / key
    if kind == "sqlite" and db_path is not None:
        return db_path.parent / ".qrecorder-journal" / db_path.name
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "qrecorder" / "journal" / key


def has_journals(directory: Path) -> bool:
    """Whether ``directory`` holds any journal (cheap: one listdir; missing folder → False)."""
    try:
        return any(name.endswith(_SUFFIX) for name in os.listdir(directory))
    except OSError:
        return False


def _redact(uri: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", "@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _frame(record: Any) -> bytes:
    data = marshal.dumps(record)
    return _HEADER.pack(len(data), zlib.crc32(data)) + data


def read_frames(data: bytes) -> Iterator[Any]:
    """Records of a journal's bytes, up to the first torn or corrupt frame."""
    offset, size = 0, len(data)
    while offset + _HEADER.size <= size:
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + length
        if end > size:
            return
        chunk = data[start:end]
        if zlib.crc32(chunk) != crc:
            return
        try:
            yield marshal.loads(chunk)
        except (ValueError, EOFError, TypeError):
            return
        offset = end


class Journal:
    """This process's journal for one store. Appends are one ``write(2)`` each (O_APPEND)."""

    def __init__(self, directory: Path, uri: str) -> None:
        self.directory = directory
        self._uri = _redact(uri)
        self._fd: int | None = None
        self._pid = -1
        self.path: Path | None = None
        self._bytes = 0

    def _open(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}{_SUFFIX}"
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        header = _frame((_MAGIC, self._uri, os.getpid(), socket.gethostname()))
        os.write(fd, header)
        self._fd, self._pid, self.path, self._bytes = fd, os.getpid(), path, len(header)
        return fd

    def append(self, record: tuple[Any, ...]) -> None:
        """Make ``record`` survive this process: one write into the page cache."""
        try:
            data = _frame(record)
        except ValueError:  # a value marshal does not know (a str or float subclass)
            from .writer import plain_record

            data = _frame(plain_record(record))
        try:
            fd = self._fd
            if fd is None or self._pid != os.getpid():
                fd = self._open()
            written = os.write(fd, data)
        except OSError as exc:
            raise _journal_error(self.directory, exc) from exc
        if written != len(data):  # a short write: only a full disk does this to a regular file
            self._truncate_tail(fd, written)
            raise _journal_error(self.directory, OSError(28, "No space left on device (short write)"))
        self._bytes += len(data)

    def _truncate_tail(self, fd: int, written: int) -> None:
        """Cut a partly written frame off, so the file stays a sequence of whole frames."""
        try:
            os.ftruncate(fd, self._bytes)
        except OSError:
            pass  # the reader stops at a torn frame anyway

    def settle(self, count: int) -> None:
        """Mark the first ``count`` records of this file as written to the store."""
        if self._fd is not None and self._pid == os.getpid():
            data = _frame((SETTLED, count))
            try:
                written = os.write(self._fd, data)
            except OSError:
                written = 0  # a full disk: the values are in the store already, only the mark is lost
            if written != len(data):
                # Without the mark a replay writes these records again, which the store takes as
                # duplicates (same metric rows, same params, tags in order): safe, so not an error.
                self._truncate_tail(self._fd, written)
                return
            self._bytes += len(data)

    def should_rotate(self) -> bool:
        return self._bytes >= ROTATE_BYTES

    def rotate(self) -> None:
        """Empty a fully settled journal (the caller holds the writer's lock)."""
        if self._fd is not None and self._pid == os.getpid():
            os.ftruncate(self._fd, 0)
            header = _frame((_MAGIC, self._uri, os.getpid(), socket.gethostname()))
            os.write(self._fd, header)
            self._bytes = len(header)

    def close(self, remove: bool) -> None:
        """Close at exit; ``remove`` when every record is settled (nothing left to replay)."""
        fd, self._fd = self._fd, None
        if fd is None or self._pid != os.getpid():
            return
        if remove and self.path is not None:
            try:
                self.path.unlink()
            except OSError:
                pass
        os.close(fd)

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's file and lock are the parent's; open a new one lazily."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)  # the lock stays: the parent's descriptor still holds it
            except OSError:
                pass
        self.path, self._bytes = None, 0


def _journal_error(directory: Path, exc: OSError) -> Exception:
    from ..errors import JournalWriteError

    return JournalWriteError(
        f"The crash journal in {directory} could not be written ({exc.strerror or exc}): the values of this "
        "call were not accepted. Free disk space there, point QRECORDER_JOURNAL_DIR at another local disk, "
        "or set QRECORDER_JOURNAL=0 to log without the journal (values still queued in memory are then "
        "lost on SIGKILL)."
    )


@dataclass
class Unsettled:
    """What a dead process's journal holds that may not have reached the store."""

    path: Path
    records: list[tuple[Any, ...]]
    lock_fd: int

    def release(self, remove: bool) -> None:
        if remove:
            try:
                self.path.unlink()
            except OSError:
                pass
        os.close(self.lock_fd)


def claim_orphans(directory: Path, own: Path | None = None) -> Iterator[Unsettled]:
    """Journals of dead processes in ``directory``, each locked for the caller.

    A journal whose lock is held belongs to a live process and is skipped.
    """
    try:
        names = sorted(p for p in directory.iterdir() if p.name.endswith(_SUFFIX))
    except OSError:
        return
    for path in names:
        if own is not None and path == own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # removed by another replayer meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its process is alive (or another replayer has it)
        try:
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise FileNotFoundError(path)  # replayed and removed before we got the lock
            with os.fdopen(os.dup(fd), "rb") as fh:
                data = fh.read()
            records = unsettled_records(data)
        except Exception:  # noqa: BLE001 - one unreadable journal must not stop the others
            os.close(fd)
            continue
        yield Unsettled(path, records, fd)


def unsettled_records(data: bytes) -> list[tuple[Any, ...]]:
    """The data records after the last settled mark (in order)."""
    records: list[tuple[Any, ...]] = []
    settled = 0
    for record in read_frames(data):
        if not isinstance(record, tuple) or not record:
            break  # not written by qrecorder: stop here, as at a torn frame
        if record[0] == _MAGIC:
            records, settled = [], 0  # a rotation started the file again
        elif record[0] == SETTLED:
            if len(record) != 2 or record[1].__class__ is not int:
                break
            settled = max(settled, record[1])
        elif well_formed(record):
            records.append(record)
        else:
            break
    return records[settled:]


def well_formed(record: tuple[Any, ...]) -> bool:
    """A data record as qrecorder writes it: ("m", run, [(key, number)], step, ts) or
    ("p"|"t", run, [(key, text)]), with keys qrecorder would accept and no checksum tags (those
    are never journaled: a forged one would re-open the swapped-pickle attack)."""
    from ..validation import _KEY_RE, MAX_KEY_LENGTH
    from .recorder import LONG_VALUE_MARKER

    kind = record[0]
    if kind == "m":
        if len(record) != 5 or record[3].__class__ is not int or record[4].__class__ is not int:
            return False
    elif kind in ("p", "t"):
        if len(record) != 3:
            return False
    else:
        return False
    run_id, items = record[1], record[2]
    if run_id.__class__ is not str or not run_id.isalnum() or len(run_id) > 64 or not isinstance(items, list):
        return False
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            return False
        key, value = item
        if key.__class__ is not str or len(key) > MAX_KEY_LENGTH or not _KEY_RE.fullmatch(key):
            return False
        if key.startswith((tagnames.CHECKSUM_PREFIX, tagnames.LEGACY_CHECKSUM_PREFIX)):
            return False
        if kind == "m":
            if value.__class__ not in (float, int):
                return False
        elif value.__class__ is not str or len(value) > 8000 or ("\x00" in value) or (
            LONG_VALUE_MARKER in value and not value.endswith(f"{key}.txt]")
        ):
            return False
    return True
