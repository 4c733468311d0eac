"""Check a whole workflow config before any run is created, without building anything heavy.

What is checked, each error naming the file and the field: every ``{class, module_path, kwargs}``
spec under ``task`` imports and names a class; its keyword arguments are ones the constructor
takes (``inspect.signature``; for the model, the dataset and the records also the required ones,
counting what the runner passes: ``recorder``, ``model``, ``dataset``); the dataset's segments
are ``[start, end]`` dates in order with a ``train`` and a ``test`` segment; qrecorder's own
records are constructed once without a recorder (they are cheap and check their backtest
config, e.g. an index benchmark that has no data here).

Qlib's own conventions for nested specs are followed: processors default to
``qlib.data.dataset.processor``, data loaders to ``qlib.data.dataset.loader`` and records of a
Qlib config to ``qlib.workflow.record_temp``.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from qrecorder.workflow.config import DEFAULT_MODULES
from qrecorder.workflow.errors import ConfigError
from qrecorder.workflow.instance import get_class

QLIB_DEFAULT_MODULES = {"model": None, "dataset": None, "record": "qlib.workflow.record_temp"}
# Qlib fills these in for nested specs (DataHandlerLP / check_transform_proc)
_NESTED_DEFAULTS = {"data_loader": "qlib.data.dataset.loader", "infer_processors": "qlib.data.dataset.processor",
                    "learn_processors": "qlib.data.dataset.processor", "processors": "qlib.data.dataset.processor"}
_POSITIONAL = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _module_of(spec: Mapping[str, Any]) -> str | None:
    cls = spec.get("class")
    if isinstance(cls, str) and "." in cls and spec.get("module_path") is None:
        return cls.rsplit(".", 1)[0]
    mp = spec.get("module_path")
    return mp if isinstance(mp, str) else None


def is_qlib_module(module: str | None) -> bool:
    return bool(module) and (module == "qlib" or module.startswith("qlib."))  # type: ignore[union-attr]


def iter_specs(value: Any, field: str, key: str | None = None) -> Iterator[tuple[str, str | None, Mapping[str, Any]]]:
    """Yield ``(field, key it sits under, spec)`` for every mapping with a string ``class`` inside ``value``."""
    if isinstance(value, Mapping):
        if isinstance(value.get("class"), str):
            yield field, key, value
        for k, v in value.items():
            yield from iter_specs(v, f"{field}.{k}", str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from iter_specs(v, f"{field}[{i}]", key)


def is_qlib_config(cfg: Mapping[str, Any]) -> bool:
    """True when the task uses Qlib's classes (a module path in the ``qlib`` package)."""
    return any(is_qlib_module(_module_of(spec)) for _, _, spec in iter_specs(cfg.get("task"), "task"))


def apply_sys_paths(cfg: Mapping[str, Any]) -> None:
    """Qlib's ``sys: {path: [...], rel_path: [...]}`` section: extend sys.path as qrun does."""
    section = cfg.get("sys") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("must be a mapping with 'path' and/or 'rel_path'", source=cfg.get("_source"), field="sys")
    base = Path(cfg.get("_base_dir") or ".").resolve()
    for key, root in (("path", None), ("rel_path", base)):
        paths = section.get(key, [])
        for p in [paths] if isinstance(paths, str) else list(paths):
            full = str(root / p) if root is not None else str(p)
            if full not in sys.path:
                sys.path.append(full)


def check_kwargs(cls: Any, kwargs: Mapping[str, Any], *, provided: tuple[str, ...] = (), required: bool = True,
                 source: str | None, field: str) -> None:
    """Unknown keyword arguments (and, with ``required``, missing required ones) are a ConfigError."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # builtins and C types: nothing to check
        return
    name = getattr(cls, "__name__", str(cls))
    names = [n for n, p in params.items() if p.kind in _POSITIONAL]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            hints = [f"{k!r} -> {m[0]!r}" for k in unknown if (m := difflib.get_close_matches(str(k), names, n=1))]
            hint = f"; did you mean {', '.join(hints)}?" if hints else ""
            raise ConfigError(f"{name}() takes no argument(s) {', '.join(map(repr, unknown))}{hint} "
                              f"(it takes: {', '.join(names) or 'none'})", source=source, field=f"{field}.kwargs")
    if required:
        missing = [n for n, p in params.items() if p.kind in _POSITIONAL and p.default is inspect.Parameter.empty
                   and n not in kwargs and n not in provided]
        if missing:
            raise ConfigError(f"{name}() needs argument(s) {', '.join(map(repr, missing))}",
                              source=source, field=f"{field}.kwargs")


def check_segments(segments: Any, *, source: str | None, field: str) -> None:
    """``{name: [start, end]}`` with parseable dates in order, including ``train`` and ``test``."""
    import pandas as pd

    if not isinstance(segments, Mapping) or not segments:
        raise ConfigError("must be a mapping like {train: [start, end], valid: [...], test: [...]}",
                          source=source, field=field)
    for name in ("train", "test"):
        if name not in segments:
            raise ConfigError(f"missing the {name!r} segment (has {', '.join(map(str, segments))})",
                              source=source, field=field)
    for name, span in segments.items():
        if not isinstance(span, (list, tuple)) or len(span) != 2:
            raise ConfigError(f"must be [start, end], got {span!r}", source=source, field=f"{field}.{name}")
        try:
            lo, hi = (pd.Timestamp(s) if s is not None else None for s in span)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"bad date: {exc}", source=source, field=f"{field}.{name}") from exc
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"start {lo.date()} is after end {hi.date()}", source=source, field=f"{field}.{name}")


def check_task(cfg: Mapping[str, Any], *, qlib: bool | None = None) -> None:
    """Every check that needs no data and builds nothing heavy; raises ConfigError."""
    source, base = cfg.get("_source"), cfg.get("_base_dir")
    qlib = is_qlib_config(cfg) if qlib is None else qlib
    defaults = QLIB_DEFAULT_MODULES if qlib else DEFAULT_MODULES
    apply_sys_paths(cfg)
    task = cfg["task"]
    top: list[tuple[str, str, Any, tuple[str, ...]]] = [("task.model", "model", task["model"], ()), ("task.dataset", "dataset", task["dataset"], ())]
    top += [(f"task.record[{i}]", "record", r, ("recorder", "model", "dataset")) for i, r in enumerate(task["record"])]
    top_ids = {id(spec) for _, _, spec, _ in top}
    for field, kind, spec, provided in top:
        cls = get_class(spec, default_module=defaults[kind], base_dir=base, source=source, field=field)
        if kind == "model":
            provided = ("seed",)  # run_task passes the seed when the constructor takes one
        check_kwargs(cls, spec.get("kwargs") or {}, provided=provided, source=source, field=field)
        if kind == "model":
            for method in ("fit", "predict"):
                if not callable(getattr(cls, method, None)):
                    raise ConfigError(f"{cls.__name__} has no {method}() method", source=source,
                                      field=f"{field}.class")
        if kind == "record" and getattr(cls, "__module__", "").startswith("qrecorder.records"):
            _dry_construct(cls, spec, source=source, field=field)
        for nfield, key, nspec in _nested(spec, field, qlib=qlib, kind=kind):
            if id(nspec) in top_ids:
                continue
            default = _NESTED_DEFAULTS.get(key or "") if qlib else DEFAULT_MODULES["dataset"]
            if _module_of(nspec) is None and default is None:
                continue  # resolved by the class that receives it (e.g. a Qlib strategy); nothing to check
            ncls = get_class(nspec, default_module=default, base_dir=base, source=source, field=nfield)
            check_kwargs(ncls, nspec.get("kwargs") or {}, required=False, source=source, field=nfield)
    dkw = task["dataset"].get("kwargs") or {}
    if "segments" in dkw:
        check_segments(dkw["segments"], source=source, field="task.dataset.kwargs.segments")


def _nested(spec: Mapping[str, Any], field: str, *, qlib: bool,
            kind: str) -> Iterator[tuple[str, str | None, Mapping[str, Any]]]:
    """Nested specs whose constructor we can check: all of a Qlib config's (Qlib builds them all with
    init_instance_by_config); in qrecorder's configs only the dataset's ``source``/``handler``
    (qrecorder's records read their strategy spec themselves and check it when dry-constructed)."""
    kwargs = spec.get("kwargs") or {}
    if qlib:
        yield from iter_specs(kwargs, f"{field}.kwargs")
    elif kind == "dataset":
        for key in ("source", "handler"):
            if isinstance(kwargs, Mapping) and isinstance(kwargs.get(key), Mapping) and "class" in kwargs[key]:
                yield f"{field}.kwargs.{key}", key, kwargs[key]


def _dry_construct(cls: type, spec: Mapping[str, Any], *, source: str | None, field: str) -> None:
    """qrecorder's records check their config in the constructor and touch nothing: build one now."""
    kwargs = {k: v for k, v in (spec.get("kwargs") or {}).items() if k not in ("model", "dataset", "recorder")}
    try:
        cls(recorder=None, **kwargs)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(str(exc), source=source, field=f"{field}.kwargs") from exc
