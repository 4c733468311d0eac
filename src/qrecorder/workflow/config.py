"""Load and validate a workflow YAML in Qlib's shape (``task: {model, dataset, record}``).

Why validate up front: a typo in ``task.record[2].class`` should fail in a millisecond with
the file and field named, not after the model has trained for ten minutes.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from qrecorder.workflow.errors import ConfigError

DEFAULT_MODULES = {"model": "qrecorder.models", "dataset": "qrecorder.data", "record": "qrecorder.records"}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a workflow file; the result carries ``_source`` and ``_base_dir``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config file not found", source=str(p))
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"malformed YAML{where}: {problem}", source=str(p)) from exc
    if isinstance(raw, Mapping) and raw.get("BASE_CONFIG_PATH"):
        raw = _with_base(raw, p)
    return validate_config(raw, source=str(p), base_dir=p.parent)


def _merge(base: Mapping[str, Any], ext: Mapping[str, Any]) -> dict[str, Any]:
    """Qlib's update_config: mappings merge recursively, anything else in ``ext`` replaces."""
    out = copy.deepcopy(dict(base))
    for k, v in ext.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), Mapping) and isinstance(v, Mapping) else v
    return out


def _with_base(raw: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """qrun's ``BASE_CONFIG_PATH``: load that file (as given, else relative to this config) under this one."""
    ref = Path(str(raw["BASE_CONFIG_PATH"]))
    base_path = ref if ref.exists() else path.parent / ref
    if not base_path.is_file():
        raise ConfigError(f"base config {str(ref)!r} not found (tried it and {str(path.parent / ref)!r})",
                          source=str(path), field="BASE_CONFIG_PATH")
    try:
        base = yaml.safe_load(base_path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", source=str(base_path)) from exc
    if not isinstance(base, Mapping):
        raise ConfigError("top level must be a mapping", source=str(base_path))
    return _merge(base, raw)


def _check_spec(spec: Any, field: str, source: str) -> None:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"must be a mapping with 'class' (and optional 'module_path', 'kwargs'), "
                          f"got {type(spec).__name__}", source=source, field=field)
    if "class" not in spec:
        raise ConfigError("missing 'class'", source=source, field=field)
    if not isinstance(spec["class"], str) or not spec["class"].strip():
        raise ConfigError("must be a class name string", source=source, field=f"{field}.class")
    if "module_path" in spec and not isinstance(spec["module_path"], str):
        raise ConfigError("must be a module path string", source=source, field=f"{field}.module_path")
    if spec.get("kwargs") is not None and not isinstance(spec["kwargs"], Mapping):
        raise ConfigError("must be a mapping", source=source, field=f"{field}.kwargs")
    unknown = set(spec) - {"class", "module_path", "kwargs", "model_path"}
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)}; allowed: class, module_path, kwargs",
                          source=source, field=field)


def validate_config(raw: Any, *, source: str = "<dict>", base_dir: str | Path | None = None) -> dict[str, Any]:
    """Check the structure of a config dict; return a deep copy with the records as a list."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"top level must be a mapping, got {type(raw).__name__}", source=source)
    cfg = copy.deepcopy(dict(raw))
    task = cfg.get("task")
    if task is None:
        raise ConfigError("missing 'task' (with model, dataset and record)", source=source, field="task")
    if not isinstance(task, Mapping):
        raise ConfigError("must be a mapping", source=source, field="task")
    for key in ("model", "dataset"):
        if key not in task:
            raise ConfigError(f"missing 'task.{key}'", source=source, field=f"task.{key}")
        _check_spec(task[key], f"task.{key}", source)
    records = task.get("record", [])
    if isinstance(records, Mapping):
        records = [records]
    if not isinstance(records, list):
        raise ConfigError("must be a list of record specs", source=source, field="task.record")
    for i, rec in enumerate(records):
        _check_spec(rec, f"task.record[{i}]", source)
    cfg["task"]["record"] = records  # the same object as task (cfg is our deep copy)
    if "seed" in cfg and not (isinstance(cfg["seed"], int) and not isinstance(cfg["seed"], bool)):
        raise ConfigError(f"must be an integer, got {cfg['seed']!r}", source=source, field="seed")
    if "experiment_name" in cfg and not isinstance(cfg["experiment_name"], str):
        raise ConfigError("must be a string", source=source, field="experiment_name")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if "requirements" in cfg:
        req = cfg["requirements"]
        if not isinstance(req, str):
            raise ConfigError("must be a path string", source=source, field="requirements")
        if not (base / req).is_file():
            raise ConfigError(f"requirements file {str(base / req)!r} not found", source=source, field="requirements")
    cfg["_source"], cfg["_base_dir"] = source, str(base)
    return cfg


def config_hash(cfg: Mapping[str, Any]) -> str:
    """A short stable hash of the task (what is run), used to decide whether a cell can resume."""
    body = json.dumps(cfg.get("task"), sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys (lists are kept as their string form)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
