"""``run_all``: discover configs, skip finished cells, run the rest in parallel, summarise.

Failure isolation: a cell that raises is FAILED with its traceback on its recorder and, after
``retries`` more attempts, listed in the summary; the other cells go on. Ctrl-C (or SIGTERM):
one SIGINT is forwarded to each busy worker, whose ``R.start`` marks the run KILLED; any run of
this batch still RUNNING afterwards is marked KILLED by the parent; rerunning resumes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qrecorder import tags
from qrecorder.errors import RunnerError
from qrecorder.runner.cells import Cell, finished_keys, make_cells, pending
from qrecorder.runner.discovery import discover
from qrecorder.runner.executors import Executor, LocalExecutor, RayExecutor
from qrecorder.runner.messages import CellResult, CellTask, FailureRow, ResultRow
from qrecorder.runner.progress import ProgressDisplay


@dataclass
class BatchResult:
    batch: str
    experiment_name: str
    cells: list[Cell]
    skipped: int
    results: list[ResultRow] = field(default_factory=list)
    failures: list[FailureRow] = field(default_factory=list)
    interrupted: bool = False
    wall_seconds: float = 0.0
    summary: Any = None
    paths: dict[str, Path] = field(default_factory=dict)
    summary_recorder_id: str | None = None


def _mark_leftovers(experiment_id: str, batch: str, status: str) -> list[str]:
    """Runs of this batch still RUNNING once every worker is gone can only be dead: end them."""
    from qrecorder import R

    runs = R.search_records([experiment_id])
    col = f"tags.{tags.BATCH}"
    if len(runs) == 0 or col not in runs.columns:
        return []
    stale = runs[(runs[col] == batch) & (runs["status"] == "RUNNING")]
    ended = []
    for rid in stale["run_id"]:
        try:
            R.get_recorder(recorder_id=rid, experiment_id=experiment_id).end_run(status)
            ended.append(rid)
        except Exception:  # noqa: BLE001 - best effort; mark_stale_runs can finish the job later
            pass
    return ended


def _schedule(executor: Executor, tasks: deque[CellTask], by_id: dict[str, CellTask], retries: int,
              progress: ProgressDisplay, result: BatchResult) -> None:
    while tasks or executor.busy():
        while tasks and executor.capacity() > 0:
            task = tasks.popleft()
            executor.submit(task)
            progress.started(task.cell, task.attempt)
        for res in executor.poll(0.2):
            _finish(res, by_id.pop(res.task_id), tasks, by_id, retries, progress, result)


def _finish(res: CellResult, task: CellTask, tasks: deque[CellTask], by_id: dict[str, CellTask], retries: int,
            progress: ProgressDisplay, result: BatchResult) -> None:
    retry = not res.ok and not res.killed and task.attempt < retries and not result.interrupted
    progress.finished(task.cell, res, retry)
    if res.ok:
        result.results.append(res.result_row(task.cell))
    elif retry:
        new = task.retry()
        by_id[new.task_id] = new
        tasks.append(new)
    elif not res.killed:
        result.failures.append(res.failure_row(task.cell, attempts=task.attempt + 1))


def check_configs(configs: list[Any]) -> None:
    """Check every config in this process before any run exists (see ``run_all``)."""
    from qrecorder.workflow.config import load_config
    from qrecorder.workflow.run import check_config

    for mc in configs:
        cfg = load_config(mc.config_path)
        if check_config(cfg):
            from qrecorder.workflow.qlib_run import check_market_data

            check_market_data(cfg)


class _Interrupt(KeyboardInterrupt):
    pass


def run_all(
    bench_dir: str | Path,
    *,
    times: int = 1,
    models: Any = None,
    dataset: str = "synthetic",
    universe: str = "",
    exclude: bool = False,
    workers: int | None = None,
    executor: str = "local",
    env: str = "none",
    retries: int = 0,
    base_seed: int = 0,
    experiment_name: str = "run_all_model",
    uri: str | None = None,
    out_dir: str | Path = "run_all_results",
    baseline: str | None = None,
    resume: bool = True,
    progress: bool = True,
    ray_address: str | None = None,
    grace: float = 30.0,
    report: bool = True,
    extra_requirements: list[str] | None = None,
    ui_url: str | None = None,
) -> BatchResult:
    """Run models x repeats and write the results table; see docs/runner.md.

    Every config is checked before any run is created (classes, constructor arguments, segments,
    benchmark, Qlib's market data): a typo raises ConfigError and nothing runs. With
    ``env="venv"`` the classes may exist only in the model's venv, so the workers check them
    (still before their run starts). ``extra_requirements`` (e.g. Qlib from a git URI, as
    run_all_model.py's ``--qlib_uri``) are installed into every model venv. ``ui_url`` (else
    ``$QRECORDER_UI_URL``) is the MLflow UI that report.html links each run to.
    """
    from qrecorder import R

    t0 = time.perf_counter()
    if executor not in ("local", "ray"):
        raise RunnerError(f"--executor must be 'local' or 'ray', not {executor!r}")
    if env not in ("none", "venv"):
        raise RunnerError(f"--env must be 'none' or 'venv', not {env!r}")
    workers = workers or os.cpu_count() or 1
    with R.uri_context(uri) if uri else contextlib.nullcontext():
        return _run_all(
            bench_dir, times=times, models=models, dataset=dataset, universe=universe, exclude=exclude,
            workers=workers, executor=executor, env=env, retries=retries, base_seed=base_seed,
            experiment_name=experiment_name, out_dir=out_dir, baseline=baseline, resume=resume,
            progress=progress, ray_address=ray_address, grace=grace, report=report, t0=t0,
            extra_requirements=list(extra_requirements or []), ui_url=ui_url,
        )


def _run_all(bench_dir: str | Path, *, times: int, models: Any, dataset: str, universe: str, exclude: bool,
             workers: int, executor: str, env: str, retries: int, base_seed: int, experiment_name: str,
             out_dir: str | Path, baseline: str | None, resume: bool, progress: bool, ray_address: str | None,
             grace: float, report: bool, t0: float, extra_requirements: list[str],
             ui_url: str | None = None) -> BatchResult:
    """run_all's body, with R pointed at the batch's store (restored afterwards)."""
    from qrecorder import R

    uri = R.get_resolved_uri()  # workers get the store explicitly, through their environment
    configs = discover(bench_dir, models=models, dataset=dataset, universe=universe, exclude=exclude)
    cells = make_cells(configs, times, base_seed)
    if env == "none":
        check_configs(configs)
    batch = uuid.uuid4().hex[:10]
    out = Path(out_dir)
    log_dir = out / "logs" / batch
    ex: Executor
    if executor == "ray":
        # a tracking server's login goes with the cells: a node's workers have the env of its `ray start`
        login = {k: os.environ[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD") if k in os.environ}
        ex = RayExecutor(workers, address=ray_address, env={"QRECORDER_URI": uri, **login})
    else:
        ex = local = LocalExecutor(workers, log_dir, env={"QRECORDER_URI": uri})
        if env == "none":
            local.prestart(len(cells))
    try:
        exp = R.get_exp(experiment_name=experiment_name, create=True)  # create the store/experiment once, here
        done = finished_keys(R.search_records([exp.id])) if resume else set()
        todo = pending(cells, done)
        result = BatchResult(batch, experiment_name, cells, skipped=len(cells) - len(todo))

        pythons: dict[str | None, str] = {None: sys.executable}
        if env == "venv":
            from qrecorder.runner.envs import VenvManager

            venvs = VenvManager(Path(out_dir) / ".venvs", log_dir, extra_requirements=extra_requirements)
            for c in todo:
                if c.requirements not in pythons:
                    pythons[c.requirements] = venvs.python_for(c.requirements)
    except BaseException:
        ex.close()  # prestarted workers must not outlive a failed setup
        raise

    tasks = deque(CellTask(c, batch, experiment_name, uri, pythons.get(c.requirements, sys.executable)) for c in todo)
    by_id = {t.task_id: t for t in tasks}  # tasks without a result yet

    def on_term(signum: int, frame: Any) -> None:
        raise _Interrupt()

    old_term = signal.signal(signal.SIGTERM, on_term)
    disp = ProgressDisplay(todo, skipped=result.skipped, enabled=progress)
    try:
        with disp:
            try:
                _schedule(ex, tasks, by_id, retries, disp, result)
            except KeyboardInterrupt:
                result.interrupted = True
                disp.message("interrupted: stopping workers, marking unfinished runs KILLED ...")
                for res in ex.interrupt(grace):
                    if res.task_id in by_id:
                        _finish(res, by_id.pop(res.task_id), tasks, by_id, 0, disp, result)
    finally:
        ex.close()
        signal.signal(signal.SIGTERM, old_term)
        _mark_leftovers(exp.id, batch, "KILLED" if result.interrupted else "FAILED")
    result.wall_seconds = time.perf_counter() - t0
    if not result.interrupted and report:
        from qrecorder.runner.summary import summarize_batch

        summarize_batch(result, configs, baseline=baseline, out_dir=out, ui_url=ui_url)
    return result


__all__ = ["BatchResult", "RunnerError", "run_all"]

