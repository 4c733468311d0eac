"""Run one workflow task: check the config, build the dataset and model, then inside ``R.start``
fit and run the records.

This is what ``qrec run`` does and what every cell of ``qrec run-all`` does, so each run is an
ordinary recorder. Config, data and constructor errors are raised (ConfigError) before the run
is created. On a later failure ``R.start`` stores the traceback on the recorder (artifact
``traceback.txt``, tag ``qrecorder.exception``) and marks it FAILED; Ctrl-C marks it KILLED.
A config using Qlib's own classes is run by :mod:`qrecorder.workflow.qlib_run` (Qlib's qrun steps).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from qrecorder import tags as tag_keys  # `tags` is a parameter below
from qrecorder.workflow.config import DEFAULT_MODULES, config_hash, flatten, load_config, validate_config
from qrecorder.workflow.errors import ConfigError
from qrecorder.workflow.instance import accepts_kwarg, fill_placeholder, get_class, init_instance_by_config


def set_global_seed(seed: int) -> None:
    """Seed Python's and numpy's global generators (models get ``seed`` through their kwargs)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    os.environ["PYTHONHASHSEED"] = str(seed)


def _resolve_paths(kwargs: dict[str, Any], base_dir: str) -> None:
    """Relative data paths in the dataset spec are taken relative to the config's folder."""
    src = kwargs.get("source")
    if isinstance(src, str) and not os.path.isabs(src) and (Path(base_dir) / src).exists():
        kwargs["source"] = str(Path(base_dir) / src)
    elif isinstance(src, Mapping):
        inner = src.get("kwargs") or {}
        path = inner.get("path")
        if isinstance(path, str) and not os.path.isabs(path) and (Path(base_dir) / path).exists():
            kwargs["source"] = {**src, "kwargs": {**inner, "path": str(Path(base_dir) / path)}}


def build_dataset(cfg: Mapping[str, Any]) -> Any:
    """Instantiate ``task.dataset`` (and a nested ``source``/``handler`` spec in its kwargs)."""
    source, base = cfg.get("_source"), cfg.get("_base_dir")
    spec = dict(cfg["task"]["dataset"])
    kwargs = dict(spec.get("kwargs") or {})
    if base:
        _resolve_paths(kwargs, base)
    for key in ("source", "handler"):
        if isinstance(kwargs.get(key), Mapping) and "class" in kwargs[key]:
            kwargs[key] = init_instance_by_config(kwargs[key], DEFAULT_MODULES["dataset"], base_dir=base,
                                                  source=source, field=f"task.dataset.kwargs.{key}")
    spec["kwargs"] = kwargs
    return init_instance_by_config(spec, DEFAULT_MODULES["dataset"], base_dir=base, source=source,
                                   field="task.dataset")


def build_model(cfg: Mapping[str, Any], seed: int | None) -> Any:
    """Instantiate ``task.model``; ``seed`` overrides kwargs.seed when the class takes one."""
    source, base = cfg.get("_source"), cfg.get("_base_dir")
    spec = dict(cfg["task"]["model"])
    cls = get_class(spec, default_module=DEFAULT_MODULES["model"], base_dir=base, source=source, field="task.model")
    kwargs = dict(spec.get("kwargs") or {})
    if seed is not None and accepts_kwarg(cls, "seed"):
        kwargs["seed"] = seed
    spec["kwargs"] = kwargs
    model = init_instance_by_config(spec, DEFAULT_MODULES["model"], base_dir=base, source=source, field="task.model")
    for method in ("fit", "predict"):
        if not callable(getattr(model, method, None)):
            raise ConfigError(f"{type(model).__name__} has no {method}() method", source=source, field="task.model.class")
    return model


def check_config(cfg: Mapping[str, Any]) -> bool:
    """Every check that builds nothing: structure, classes, constructor arguments, segments, and for a
    Qlib config that pyqlib is importable. Returns True for a Qlib config. Raises ConfigError."""
    from qrecorder.workflow.check import check_task, is_qlib_config

    qlib = is_qlib_config(cfg)
    if qlib:
        from qrecorder.workflow.qlib_run import qlib_missing

        missing = qlib_missing(cfg)
        if missing is not None:
            raise missing
    check_task(cfg, qlib=qlib)
    return qlib


def _base_tags(cfg: Mapping[str, Any], model_name: str, seed: int | None) -> dict[str, str]:
    tags = {tag_keys.MODEL: model_name, tag_keys.CONFIG: str(cfg.get("_source")),
            tag_keys.CONFIG_HASH: config_hash(cfg), tag_keys.KIND: tag_keys.KIND_RUN}
    if seed is not None:
        tags[tag_keys.SEED] = str(seed)
    return tags


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _param_text(value: Any) -> Any:
    """Dates as ISO 8601 (YAML reads ``2020-01-01`` as a date): a segment ``[2020-01-01, 2020-12-31]``
    is logged as that text, not as ``[datetime.date(2020, 1, 1), ...]``. Other values unchanged."""
    if isinstance(value, datetime.datetime):
        return value.date().isoformat() if value.time() == datetime.time() and value.tzinfo is None else value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, datetime.date) or (isinstance(v, str) and _ISO_DATE.match(v)) for v in value):
        return "[" + ", ".join(str(_param_text(v)) for v in value) + "]"  # the same for quoted dates
    return value


def _log_start(recorder: Any, cfg: Mapping[str, Any], model_name: str, seed: int, tags: Mapping[str, Any],
               params: Mapping[str, Any]) -> None:
    flat = {f"task.{k}": _param_text(v) for k, v in flatten(cfg["task"]).items() if k != "record"}
    flat = {k: v for k, v in flat.items() if len(str(v)) <= 500}
    recorder.log_params(model=model_name, seed=seed, **flat, **params)
    recorder.set_tags(**_base_tags(cfg, model_name, seed), **{k: str(v) for k, v in tags.items()})


def run_task(
    config: str | Path | Mapping[str, Any],
    *,
    experiment_name: str | None = None,
    recorder_name: str | None = None,
    seed: int | None = None,
    model_name: str | None = None,
    uri: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    on_start: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Run a workflow and return ``{recorder_id, experiment_id, metrics, fit_seconds, seconds}``.

    ``seed`` defaults to the config's ``seed`` (else 0; for a Qlib config, else no seeding, as
    qrun); ``experiment_name`` to the config's (else "workflow"); ``model_name`` to the model
    class name. ConfigError is raised before any run exists; other exceptions propagate after
    the recorder is marked FAILED (KILLED for Ctrl-C).
    """
    from qrecorder import R

    t0 = time.perf_counter()
    if isinstance(config, Mapping):
        cfg = config if "_source" in config else validate_config(config)
    else:
        cfg = load_config(config)
    qlib = check_config(cfg)
    exp = experiment_name or cfg.get("experiment_name") or "workflow"
    name = model_name or str(cfg["task"]["model"]["class"]).rsplit(".", 1)[-1]
    if qlib:  # Qlib's own classes and qrun's steps, on qrecorder's store
        from qrecorder.workflow.qlib_run import run_qlib_task

        qseed = seed if seed is not None else cfg.get("seed")  # like qrun, no seeding unless asked
        with R.uri_context(uri) if uri else contextlib.nullcontext():
            store = R.get_resolved_uri()
        return run_qlib_task(cfg, experiment_name=exp, recorder_name=recorder_name, seed=qseed, model_name=name,
                             uri=store, tags=tags or {}, params=params or {}, on_start=on_start,
                             base_tags=_base_tags(cfg, name, qseed), t0=t0)
    seed = int(seed if seed is not None else cfg.get("seed", 0))
    set_global_seed(seed)
    # built before the run exists: a data or constructor error leaves no FAILED run behind
    dataset = build_dataset(cfg)
    model = build_model(cfg, seed)
    with R.start(experiment_name=exp, recorder_name=recorder_name, uri=uri):
        recorder = R.get_recorder()
        if on_start is not None:
            on_start(recorder)
        _log_start(recorder, cfg, name, seed, tags or {}, params or {})
        t_fit = time.perf_counter()
        model.fit(dataset)
        fit_seconds = time.perf_counter() - t_fit
        holders = {"<MODEL>": model, "<DATASET>": dataset}
        for i, spec in enumerate(cfg["task"]["record"]):
            spec = fill_placeholder(dict(spec), holders)
            record = init_instance_by_config(
                spec, DEFAULT_MODULES["record"], base_dir=cfg.get("_base_dir"), source=cfg.get("_source"),
                field=f"task.record[{i}]", try_kwargs={"model": model, "dataset": dataset}, recorder=recorder,
            )
            record.generate()
        seconds = time.perf_counter() - t0
        timings: dict[str, Any] = {"time.fit_seconds": fit_seconds, "time.task_seconds": seconds}
        recorder.log_metrics(**timings)
        metrics = dict(recorder.list_metrics())
        return {"recorder_id": recorder.id, "experiment_id": recorder.experiment_id, "metrics": metrics,
                "fit_seconds": fit_seconds, "seconds": seconds, "model": name, "seed": seed}
