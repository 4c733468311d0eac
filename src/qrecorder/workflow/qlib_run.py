"""Run a Qlib workflow config (``qlib.contrib`` classes, ``qlib_init``) the way ``qrun`` does, on our store.

``qrun`` does: ``qlib.init(**qlib_init)``, then ``task_train(task, experiment_name)`` (inside
``R.start``: log the task as params, build model and dataset, ``model.fit``, save
``params.pkl`` and ``dataset``, run each record's ``generate()``), then save the whole config
as the object ``config``. Here the same steps run with Qlib's own functions
(``qlib.model.trainer._log_task_info`` / ``_exe_task``), with two differences:

- ``qlib.init`` gets ``exp_manager=qrecorder.qlib.QlibExpManager`` on qrecorder's store, so
  the run lands in the same store as every other ``qrec`` run (``qlib_init.exp_manager`` is
  replaced).
- Everything that can fail without training is done *before* the run is created: the static
  checks of :mod:`qrecorder.workflow.check`, the market-data check of ``provider_uri``, and
  building the dataset and the model (Qlib builds them inside the run; the work is the same,
  but a typo or missing data no longer leaves a FAILED run behind).
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from qrecorder import tags as tag_keys  # `tags` is a parameter below
from qrecorder.workflow.check import iter_specs
from qrecorder.workflow.errors import ConfigError

QLIB_EXTRA = "pip install 'qrecorder[qlib]'"
SYNTHETIC_HINT = "examples/benchmarks/*/workflow_config_*_synthetic.yaml"
_SYNTHETIC = {"lgbmodel": "LightGBM/workflow_config_lightgbm_synthetic.yaml",
              "linearmodel": "Linear/workflow_config_linear_synthetic.yaml",
              "dnnmodelpytorch": "MLP/workflow_config_mlp_synthetic.yaml"}
_last_init: str | None = None  # qlib.init's arguments last applied in this process


def qlib_missing(cfg: Mapping[str, Any]) -> ConfigError | None:
    """The one-line error for a Qlib config when pyqlib is not importable (None when it is)."""
    try:
        import qlib  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name not in ("qlib", None) and not str(exc.name).startswith("qlib."):
            raise
        model = str(cfg["task"]["model"].get("class", "")).rsplit(".", 1)[-1]
        example = f"examples/benchmarks/{_SYNTHETIC[model.lower()]}" if model.lower() in _SYNTHETIC else SYNTHETIC_HINT
        return ConfigError(f"this is a Qlib config (Qlib classes under task) but pyqlib is not installed: "
                           f"{QLIB_EXTRA}, or try the synthetic equivalent {example}", source=cfg.get("_source"))
    return None


def provider_dirs(qlib_init: Mapping[str, Any]) -> dict[str, Path]:
    """``provider_uri`` of qlib_init as {freq: folder} (Qlib's default is ~/.qlib/qlib_data/cn_data)."""
    uri = qlib_init.get("provider_uri", "~/.qlib/qlib_data/cn_data")
    items = uri.items() if isinstance(uri, Mapping) else [("day", uri)]
    return {str(f): Path(str(p)).expanduser() for f, p in items}


def _has_data(folder: Path) -> bool:
    """Qlib's layout: calendars/<freq>.txt, instruments/, features/<code>/ (a cheap check, no scan)."""
    cal = folder / "calendars"
    return cal.is_dir() and any(cal.glob("*.txt")) and (folder / "features").is_dir() and (folder / "instruments").is_dir()


def _no_data_message(qlib_init: Mapping[str, Any], why: str) -> str:
    dirs = ", ".join(str(p) for p in provider_dirs(qlib_init).values())
    region = qlib_init.get("region", "cn")
    return (f"no Qlib market data at provider_uri {dirs} ({why}); get it with `python -m qlib.run.get_data "
            f"qlib_data --target_dir {dirs} --region {region}`, or point qlib_init.provider_uri at your data")


def _uses_static_data(dataset_spec: Mapping[str, Any]) -> bool:
    """True when every data loader of the dataset is Qlib's StaticDataLoader (files or frames, no provider)."""
    from qlib.data.dataset.loader import StaticDataLoader

    from qrecorder.workflow.instance import get_class

    loaders = [s for _, key, s in iter_specs(dataset_spec.get("kwargs") or {}, "") if key == "data_loader"]
    if not loaders:
        return False
    for spec in loaders:
        try:
            cls = get_class(spec, default_module="qlib.data.dataset.loader")
        except ConfigError:
            return False
        if not (isinstance(cls, type) and issubclass(cls, StaticDataLoader)):
            return False
    return True


def check_market_data(cfg: Mapping[str, Any]) -> None:
    """Before any run: the data this Qlib config needs must exist under ``provider_uri``.

    Needed when a record backtests (Qlib's PortAnaRecord reads prices from the provider) or
    the dataset reads through the provider (any handler but a DataHandler(LP) over
    StaticDataLoader). A code benchmark (``SH000300``) must have its own features folder.
    """
    from qlib.workflow.record_temp import PortAnaRecord

    from qrecorder.workflow.instance import get_class

    source = cfg.get("_source")
    qinit = cfg.get("qlib_init") or {}
    if not isinstance(qinit, Mapping):
        raise ConfigError("must be a mapping of qlib.init's arguments", source=source, field="qlib_init")
    dirs = provider_dirs(qinit)
    missing = [f"{freq}: {p}" for freq, p in dirs.items() if not _has_data(p)]
    task = cfg["task"]
    backtests = []
    for i, rec in enumerate(task["record"]):
        cls = get_class(rec, default_module="qlib.workflow.record_temp", base_dir=cfg.get("_base_dir"),
                        source=source, field=f"task.record[{i}]")
        if isinstance(cls, type) and issubclass(cls, PortAnaRecord):
            backtests.append((i, rec))
    if missing and backtests:
        raise ConfigError(_no_data_message(qinit, f"task.record[{backtests[0][0]}] backtests on its prices"),
                          source=source, field="qlib_init.provider_uri")
    if missing and not _uses_static_data(task["dataset"]):
        raise ConfigError(_no_data_message(qinit, "task.dataset reads its features from it"),
                          source=source, field="qlib_init.provider_uri")
    day = dirs.get("day") or next(iter(dirs.values()))
    for i, rec in backtests:
        bench = (((rec.get("kwargs") or {}).get("config") or {}).get("backtest") or {}).get("benchmark")
        if isinstance(bench, str) and not (day / "features" / bench.lower()).is_dir():
            raise ConfigError(f"benchmark {bench!r} has no data: {day / 'features' / bench.lower()} not found",
                              source=source, field=f"task.record[{i}].kwargs.config.backtest.benchmark")


def init_qlib(cfg: Mapping[str, Any], uri: str) -> None:
    """``qlib.init(**qlib_init)`` with qrecorder's manager on ``uri`` (skipped if already done alike)."""
    global _last_init
    import qlib

    qinit = {k: v for k, v in dict(cfg.get("qlib_init") or {}).items() if k != "exp_manager"}
    exp_manager = {"class": "QlibExpManager", "module_path": "qrecorder.qlib",
                   "kwargs": {"uri": uri, "default_exp_name": "Experiment"}}
    key = json.dumps([qinit, exp_manager], sort_keys=True, default=str)
    if key == _last_init:
        return
    qlib.init(**qinit, exp_manager=exp_manager)
    _last_init = key


def _kwarg_field(spec: Mapping[str, Any], field: str, exc: BaseException) -> str:
    """For "X() got an unexpected keyword argument 'k'", the field of the spec whose kwargs hold k."""
    m = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
    if isinstance(exc, TypeError) and m:
        for f, _, s in iter_specs(spec, field):
            if isinstance(s.get("kwargs"), Mapping) and m.group(1) in s["kwargs"]:
                return f"{f}.kwargs"
    return field


def _build(spec: Any, accept: type, *, source: str | None, field: str, qinit: Mapping[str, Any]) -> Any:
    from qlib.utils import init_instance_by_config

    try:
        return init_instance_by_config(spec, accept_types=accept)
    except Exception as exc:  # noqa: BLE001 - any failure to build is reported with the field
        why = f"building it raised {type(exc).__name__}: {exc}"
        if isinstance(exc, TypeError):  # a constructor's arguments, not the data
            raise ConfigError(why, source=source, field=_kwarg_field(spec, field, exc)) from exc
        reads_provider = accept.__name__ == "Dataset" and not _uses_static_data(spec)
        if reads_provider and not all(_has_data(p) for p in provider_dirs(qinit).values()):
            raise ConfigError(_no_data_message(qinit, why), source=source, field="qlib_init.provider_uri") from exc
        raise ConfigError(why, source=source, field=field) from exc


def _save_traceback(recorder: Any, exc: BaseException) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "traceback.txt"
        path.write_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        recorder.save_objects(local_path=str(path))


def run_qlib_task(
    cfg: Mapping[str, Any], *, experiment_name: str, recorder_name: str | None, seed: int | None, model_name: str,
    uri: str, tags: Mapping[str, Any], params: Mapping[str, Any], on_start: Callable[[Any], None] | None,
    base_tags: Mapping[str, str], t0: float,
) -> dict[str, Any]:
    """The body of ``run_task`` for a Qlib config (checked by the caller). See the module docstring."""
    import copy

    from qlib.data.dataset import Dataset
    from qlib.model.base import Model
    from qlib.model.trainer import _exe_task, _log_task_info
    from qlib.workflow import R as QR

    from qrecorder.workflow.instance import accepts_kwarg, get_class
    from qrecorder.workflow.run import set_global_seed

    source = cfg.get("_source")
    qinit = cfg.get("qlib_init") or {}
    check_market_data(cfg)
    task = copy.deepcopy(dict(cfg["task"]))
    if seed is not None:
        set_global_seed(seed)
        model_cls = get_class(task["model"], base_dir=cfg.get("_base_dir"), source=source, field="task.model")
        if accepts_kwarg(model_cls, "seed"):
            task["model"] = {**task["model"], "kwargs": {**(task["model"].get("kwargs") or {}), "seed": seed}}
    init_qlib(cfg, uri)
    # built before the run exists: a data or constructor error leaves no FAILED run behind
    dataset = _build(task["dataset"], Dataset, source=source, field="task.dataset", qinit=qinit)
    model = _build(task["model"], Model, source=source, field="task.model", qinit=qinit)
    raw_config = {k: v for k, v in cfg.items() if not str(k).startswith("_")}

    with QR.start(experiment_name=experiment_name, recorder_name=recorder_name):
        recorder = QR.get_recorder()
        try:
            if on_start is not None:
                on_start(recorder)
            _log_task_info(task)  # Qlib's params (flattened task), object "task", tag hostname
            QR.log_params(model=model_name, **({"seed": seed} if seed is not None else {}), **params)
            QR.set_tags(**base_tags, **{k: str(v) for k, v in tags.items()})
            _exe_task({**task, "model": model, "dataset": dataset})
            QR.save_objects(config=raw_config)  # qrun saves the whole config as "config"
            seconds = time.perf_counter() - t0
            QR.log_metrics(**{"time.task_seconds": seconds})
        except BaseException as exc:
            _end_abnormally(QR, recorder, exc)
            raise
    metrics = dict(recorder.list_metrics())  # after the end: Qlib's recorders may log asynchronously
    return {"recorder_id": recorder.id, "experiment_id": recorder.experiment_id, "metrics": metrics,
            "fit_seconds": None, "seconds": seconds, "model": model_name, "seed": seed}


def _end_abnormally(QR: Any, recorder: Any, exc: BaseException) -> None:
    """Qlib's R.start ends the run FAILED only for ``Exception``; Ctrl-C would leave it RUNNING."""
    try:
        QR.set_tags(**{tag_keys.EXCEPTION: f"{type(exc).__name__}: {exc}"[:5000]})
        _save_traceback(recorder, exc)
    except Exception:  # noqa: BLE001 - recording the failure must not hide it
        pass
    if not isinstance(exc, Exception):
        for status in ("KILLED", "FAILED"):
            try:
                QR.end_exp(recorder_status=status)
                return
            except Exception:  # noqa: BLE001,S112 - KILLED may be refused by a strict manager; FAILED then
                continue


__all__ = ["QLIB_EXTRA", "check_market_data", "init_qlib", "qlib_missing", "run_qlib_task"]
