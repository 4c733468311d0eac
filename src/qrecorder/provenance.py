"""What produced a run: uncommitted code, the git commit, the command line, the environment,
and which process on which machine runs it.

Artifact and param names are Qlib's (``code_diff.txt``, ``code_status.txt``,
``code_cached.txt``, ``cmd-sys.argv``). Outside a git repository nothing is run, printed or
slowed down: the repository is found by looking for ``.git`` before any subprocess starts.

Secrets stay out of the store: in the command line and the captured environment, values of
options and variables whose names contain PASSWORD, PASSWD, PASS, SECRET, TOKEN, KEY or
CREDENTIAL (any case) become ``***``, and so do passwords in URIs (``scheme://user:***@host``)
and secret-named ``name=value`` pairs inside any argument (URI query strings, DSNs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import tags

ENV_PREFIXES = ("QRECORDER_", "_QLIB_")
# A name is secret when it contains one of these (case-insensitive). PASS covers PASSWORD,
# PASSWD and PASSPHRASE; KEY covers API_KEY, ACCESS_KEY, PRIVATE_KEY. Over-redacting a
# harmless value (``--sort-key date``) is the accepted price of never storing a secret.
SECRET_WORDS = ("PASSWORD", "PASSWD", "PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL")
REDACTED = "***"
PROCESS_TAG = tags.PROCESS  # kept under this name: mlflow/recorder.py and mlflow/stale.py use it
_SECRET_RE = "(?:" + "|".join(SECRET_WORDS) + ")"
# user:password@ in the authority of any URI.
_URI_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^/?#@\s:]*:)[^/?#@\s]*@")
# name=value with a secret name inside a longer text: query strings, DSNs, key=value lists.
_EMBEDDED_PAIR = re.compile(r"([A-Za-z0-9_.\-]*" + _SECRET_RE + r"[A-Za-z0-9_.\-]*)=([^&\s;,]*)", re.IGNORECASE)
# A whole argument that is an option with a value (--name=value, -name=value) or NAME=value.
_OPTION_WITH_VALUE = re.compile(r"^(-{0,2}[A-Za-z0-9_.\-]+)=(.*)$", re.DOTALL)
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


def is_secret_name(name: str) -> bool:
    """True when ``name`` (an option or variable name) contains a secret word, any case."""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def redact_text(text: str) -> str:
    """Hide URI passwords (``://user:***@``) and secret ``name=***`` pairs inside ``text``."""
    text = _URI_PASSWORD.sub(r"\1" + REDACTED + "@", text)
    return _EMBEDDED_PAIR.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with secret values replaced by ``***``.

    ``--password X`` (the next argument, unless it is another ``--option``), ``--api-key=X``,
    ``-token X`` (named single-dash options; one-letter ones like ``-p`` are left alone),
    ``MY_TOKEN=X``, and passwords or secret pairs inside URIs anywhere
    (``postgresql://u:***@h/db``, ``http://h/x?token=***``).
    """
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            hide_next = False
            if not arg.startswith("--"):
                out.append(REDACTED)
                continue
        whole = _OPTION_WITH_VALUE.match(arg)
        if whole is not None and is_secret_name(whole.group(1)):
            out.append(f"{whole.group(1)}={REDACTED}")
            continue
        name = arg.lstrip("-")
        if arg.startswith("-") and len(name) > 1 and "=" not in arg and is_secret_name(name):
            hide_next = True
        out.append(redact_text(arg))
    return out


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command line (``sys.argv`` joined by spaces) with secrets hidden: param ``cmd-sys.argv``."""
    return " ".join(redact_argv(sys.argv if argv is None else argv))


def env_params(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """QRECORDER_* and _QLIB_* variables; secret-named ones are ``***``, URI passwords hidden."""
    out = {}
    for key, value in (os.environ if environ is None else environ).items():
        if not key.startswith(ENV_PREFIXES):
            continue
        out[key] = REDACTED if is_secret_name(key) else redact_text(value)
    return out


# ------------------------------------------------------------------ which process runs it
def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def boot_id() -> str | None:
    """This kernel's boot id (Linux), or None."""
    text = _read("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def pid_namespace(pid: int | str = "self") -> str | None:
    """The PID namespace of a process (``pid:[4026531836]`` -> ``4026531836``), or None."""
    try:
        link = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
    return link[link.find("[") + 1 : link.rfind("]")] or None


def process_stat(pid: int | str = "self") -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of a process, or None if not found."""
    text = _read(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]


def process_identity() -> str:
    """``linux:<boot id>:<pid namespace>:<pid>:<start ticks>`` of this process; '' off Linux.

    Stored as the tag ``qrecorder.process``: with it, ``qrec gc`` on the same machine can tell
    that a run's process is gone (pid absent, or reused by another process) - and that it
    cannot tell, when the run's process lives in another PID namespace (a container).
    """
    boot, ns, stat = boot_id(), pid_namespace(), process_stat()
    if not boot or not ns or stat is None:
        return ""
    return f"linux:{boot}:{ns}:{os.getpid()}:{stat[1]}"


def capture_git(cwd: Path | None = None) -> Provenance:
    """Run git for the diff/status/cached texts and the HEAD commit; no git outside a repository.

    The tags also carry ``qrecorder.process`` (see :func:`process_identity`), everywhere: this
    is called once per run start in the run's own process.
    """
    result = Provenance()
    identity = process_identity()
    if identity:
        result.tags[PROCESS_TAG] = identity
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
        result.tags[tags.MLFLOW_GIT_COMMIT] = head.strip()
    branch = _git(("git", "rev-parse", "--abbrev-ref", "HEAD"), run_dir)
    if branch:
        result.tags[tags.MLFLOW_GIT_BRANCH] = branch.strip()
    result.tags[tags.GIT_ROOT] = str(root)
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
