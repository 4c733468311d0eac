"""What produced a run: uncommitted code, the git commit, the command line, the environment.

Artifact and param names are Qlib's (``code_diff.txt``, ``code_status.txt``,
``code_cached.txt``, ``cmd-sys.argv``). Outside a git repository nothing is run, printed or
slowed down: the repository is found by looking for ``.git`` before any subprocess starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIXES = ("QRECORDER_", "_QLIB_")
_SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "CREDENTIAL", "API_KEY")
GIT_COMMANDS = (
    (("git", "diff"), "code_diff.txt"),
    (("git", "status"), "code_status.txt"),
    (("git", "diff", "--cached"), "code_cached.txt"),
)
GIT_TIMEOUT_S = 20.0


@dataclass
class Provenance:
    texts: dict[str, str] = field(default_factory=dict)  # artifact name -> content
    tags: dict[str, str] = field(default_factory=dict)


def find_git_root(start: Path | None = None) -> Path | None:
    """The enclosing git work tree of ``start`` (default: cwd), found without running git."""
    path = (start or Path.cwd()).resolve()
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def command_line() -> str:
    return " ".join(sys.argv)


def env_params() -> dict[str, str]:
    """QRECORDER_* and _QLIB_* variables, with secrets and URI passwords hidden."""
    out = {}
    for key, value in os.environ.items():
        if not key.startswith(ENV_PREFIXES):
            continue
        if any(word in key.upper() for word in _SECRET_WORDS):
            value = "***"
        out[key] = re.sub(r"(://[^:/@]+:)[^@/]+@", r"\1***@", value)
    return out


def capture_git(cwd: Path | None = None) -> Provenance:
    """Run git for the diff/status/cached texts and the HEAD commit; empty outside git."""
    result = Provenance()
    root = find_git_root(cwd)
    if root is None:
        return result
    run_dir = str(cwd or Path.cwd())
    for cmd, name in GIT_COMMANDS:
        out = _git(cmd, run_dir)
        if out is not None:
            result.texts[name] = out
    head = _git(("git", "rev-parse", "HEAD"), run_dir)
    if head:
        result.tags["mlflow.source.git.commit"] = head.strip()
    branch = _git(("git", "rev-parse", "--abbrev-ref", "HEAD"), run_dir)
    if branch:
        result.tags["mlflow.source.git.branch"] = branch.strip()
    result.tags["qrecorder.git.root"] = str(root)
    return result


def _git(cmd: tuple[str, ...], cwd: str) -> str | None:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", errors="replace")
