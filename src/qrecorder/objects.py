"""Python objects as artifacts: pickle protocol 5 with a SHA-256 computed alongside.

Why: Qlib pickled into a temp folder, then MLflow copied the file into the artifact store,
and loading downloaded it into yet another temp folder. For local stores qrecorder writes
the pickle once, in place, and reads it in place; the checksum (kept as a run tag) catches a
truncated or corrupted file before a wrong object reaches the caller.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import queue
import threading
from pathlib import Path
from typing import Any, BinaryIO

from .errors import LoadObjectError, SaveObjectError

PICKLE_PROTOCOL = 5
CHECKSUM_TAG_PREFIX = "qrecorder.sha256."

# Modules whose classes the restricted unpickler admits (prefix match on the module path).
DEFAULT_ALLOWED_MODULES = (
    "numpy",
    "pandas",
    "pyarrow",
    "datetime",
    "decimal",
    "fractions",
    "collections",
    "uuid",
    "pathlib",
    "zoneinfo",
    "pytz",
    "dateutil",
    "copyreg",
    "_codecs",
)
SAFE_BUILTINS = frozenset(
    {
        "dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float",
        "complex", "bool", "slice", "range", "object", "type", "NoneType", "Ellipsis",
    }
)


class _HashingWriter(io.RawIOBase):
    """File wrapper that hashes what the pickler writes, in a second thread.

    hashlib and file writes both release the GIL, so on two cores the SHA-256 costs little
    beyond the write itself. Chunks are hashed in order; at most ``_MAX_QUEUED`` wait.
    """

    _MAX_QUEUED = 256

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()
        self._queue: queue.Queue[Any] = queue.Queue(self._MAX_QUEUED)
        self._thread = threading.Thread(target=self._hash_loop, name="qrecorder-sha256", daemon=True)
        self._thread.start()

    def _hash_loop(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._digest.update(chunk)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._queue.put(data)  # the pickler does not reuse a buffer it has handed to write()
        return self._raw.write(data)

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self._digest.hexdigest()

    def abandon(self) -> None:
        self._queue.put(None)
        self._thread.join()


def _sha256_of_file(path: Path, out: list[str]) -> None:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    out.append(digest.hexdigest())


def _replace_releasing_old_in_background(tmp: Path, path: Path) -> None:
    """``os.replace(tmp, path)``, but a replaced large file is freed by a background thread.

    Freeing a 200 MB file's blocks takes tens of milliseconds inside the rename; a second hard
    link keeps the old file alive through the rename, and a daemon thread unlinks it after.
    Readers see the old or the new file, never none.
    """
    trash = None
    try:
        if path.stat().st_size >= 16 << 20:
            trash = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.old")
            os.link(path, trash)
    except OSError:
        trash = None
    os.replace(tmp, path)
    if trash is not None:
        threading.Thread(target=trash.unlink, kwargs={"missing_ok": True}, daemon=True).start()


def dump_to_file(obj: Any, path: Path, name: str) -> str:
    """Pickle ``obj`` to ``path`` atomically (temp name, then rename); return its SHA-256."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb", buffering=1 << 20) as raw:
            writer = _HashingWriter(raw)
            try:
                pickle.dump(obj, writer, protocol=PICKLE_PROTOCOL)
            except BaseException:
                writer.abandon()
                raise
            digest = writer.hexdigest()
        _replace_releasing_old_in_background(tmp, path)
    except BaseException as exc:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        if isinstance(exc, (pickle.PicklingError, TypeError, AttributeError, RecursionError)):
            raise SaveObjectError(
                f"Object {name!r} ({type(obj).__name__}) cannot be pickled: {exc}. Save something "
                "picklable (e.g. the model's state) or write a file and pass local_path=."
            ) from exc
        if isinstance(exc, OSError):
            raise SaveObjectError(
                f"Object {name!r} could not be written to {path}: {exc.strerror or exc}. Check the disk "
                "space and the permissions of the artifact folder."
            ) from exc
        raise
    return digest


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only admits classes from an allow-list of modules.

    Use it for artifacts you did not write yourself: a pickle can run any code on load.
    """

    def __init__(self, file: Any, allowed_modules: tuple[str, ...] = DEFAULT_ALLOWED_MODULES) -> None:
        super().__init__(file)
        self._allowed = allowed_modules

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins":
            if name in SAFE_BUILTINS:
                return super().find_class(module, name)
        elif any(module == m or module.startswith(m + ".") for m in self._allowed):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"restricted mode refuses {module}.{name}; pass allowed_modules=(..., {module.split('.')[0]!r}) "
            "if you trust this artifact"
        )


def load_from_file(
    path: Path,
    name: str,
    expected_sha256: str | None,
    unpickler: Any = None,
    restricted: bool = False,
    allowed_modules: tuple[str, ...] | None = None,
) -> Any:
    """Unpickle ``path``, verifying the SHA-256 recorded at save time when there is one."""
    if not path.is_file():
        raise LoadObjectError(f"No artifact named {name!r} in this recorder ({path} does not exist).")
    # The checksum is computed by a second thread reading the same (cached) file while this
    # one unpickles; the object is only returned once both agree.
    digests: list[str] = []
    hasher = None
    if expected_sha256 is not None:
        hasher = threading.Thread(target=_sha256_of_file, args=(path, digests), name="qrecorder-sha256", daemon=True)
        hasher.start()
    try:
        with open(path, "rb", buffering=1 << 20) as raw:
            if restricted:
                obj = RestrictedUnpickler(raw, allowed_modules or DEFAULT_ALLOWED_MODULES).load()
            else:
                obj = (unpickler or pickle.Unpickler)(raw).load()
    except Exception as exc:
        raise LoadObjectError(f"Artifact {name!r} could not be unpickled: {type(exc).__name__}: {exc}") from exc
    finally:
        if hasher is not None:
            hasher.join()
    digest = digests[0] if digests else None
    if expected_sha256 is not None and digest != expected_sha256:
        raise LoadObjectError(
            f"Artifact {name!r} is corrupt: its SHA-256 is {(digest or 'unreadable')[:16]}..., but {expected_sha256[:16]}... "
            "was recorded when it was saved. Save it again."
        )
    return obj


def checksum_tag(name: str) -> str:
    """The run tag holding an object's SHA-256. Names MLflow refuses as tag keys (spaces are
    fine, parentheses are not) get a key derived from a hash of the name instead."""
    from .validation import _KEY_RE, MAX_KEY_LENGTH

    key = CHECKSUM_TAG_PREFIX + name
    if len(key) <= MAX_KEY_LENGTH and _KEY_RE.match(key) and ".." not in key and "//" not in key:
        return key
    return CHECKSUM_TAG_PREFIX + "name-sha1-" + hashlib.sha1(name.encode("utf-8")).hexdigest()
