"""How qrecorder opens SQLite files for reading (standard library only).

A store copied to a read-only medium (an archive, a read-only mount, a folder without write
permission) has no ``-shm`` file after a clean close, and SQLite cannot create one there: a
plain read-only open of a WAL database then fails with "attempt to write a readonly
database". On such media the file is opened ``immutable`` (no locks, no shared memory): no
process can be writing it, since nobody can write there.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote


def writable(path: Path) -> bool:
    """Whether this process may write the database file and create files beside it."""
    try:
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    except OSError:
        return False


def read_uri(path: Path, *, read_only: bool = True) -> str:
    """A ``file:`` URI for :func:`sqlite3.connect(uri=True)`: ``mode=ro`` (``read_only``), plus
    ``immutable=1`` where the medium cannot be written and no ``-shm`` exists."""
    params = ["mode=ro"] if read_only else []
    if not writable(path) and not path.with_name(path.name + "-shm").exists():
        params.append("immutable=1")
    query = "?" + "&".join(params) if params else ""
    return f"file:{quote(str(path))}{query}"
