"""The tag vocabulary lives in qrecorder/tags.py: other modules use its names, not string literals."""

import re
from pathlib import Path

import qrecorder
from qrecorder import tags

SRC = Path(qrecorder.__file__).parent
# Not switched yet (their owners are reworking them; see issue 9 and the list in the branch notes).
NOT_YET: tuple[str, ...] = ()


def _keys() -> dict[str, str]:
    return {name: value for name, value in vars(tags).items()
            if name.isupper() and isinstance(value, str) and value.startswith(("qrecorder.", "mlflow."))}


def test_every_key_is_namespaced_and_spelled_once():
    keys = _keys()
    assert {"HOST", "PID", "HEARTBEAT", "CREATE_TOKEN", "CHECKSUM_PREFIX", "MODEL", "BATCH", "MLFLOW_RUN_NAME"} <= set(keys)
    values = [v for n, v in keys.items() if n not in ("PREFIX", "MLFLOW_PREFIX")]
    assert len(values) == len(set(values)), "two names for one key"
    src = (SRC / "tags.py").read_text()
    for name in keys:  # each constant has its one-line comment
        line = next(ln for ln in src.splitlines() if ln.startswith(f"{name} = "))
        assert "  # " in line, line


def test_modules_use_the_names_not_literals():
    literals = {v for n, v in _keys().items() if n not in ("PREFIX", "MLFLOW_PREFIX")}
    pattern = re.compile(r"""["']((?:qrecorder|mlflow)\.[A-Za-z_.]+)["']""")
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "tags.py" or rel.startswith(NOT_YET):
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            offenders += [f"{rel}:{no}: {m}" for m in pattern.findall(line) if m in literals]
    assert offenders == [], "use qrecorder.tags:\n" + "\n".join(offenders)
