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

from qrecorder.runner.cells import T_BATCH, Cell, finished_keys, make_cells, pending
from qrecorder.runner.discovery import discover
from qrecorder.runner.executors import LocalExecutor, RayExecutor, RunnerError
from qrecorder.runner.progress import ProgressDisplay


@dataclass
class BatchResult:
    batch: str
    experiment_name: str
    cells: list[Cell]
    skipped: int
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    wall_seconds: float = 0.0
    summary: Any = None
    paths: dict[str, Path] = field(default_factory=dict)
    summary_recorder_id: str | None = None


def _mark_leftovers(experiment_id: str, batch: str, status: str) -> list[str]:
    """Runs of this batch still RUNNING once every worker is gone can only be dead: end them."""
    from qrecorder import R

    runs = R.search_records([experiment_id])
    col = f"tags.{T_BATCH}"
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


def _schedule(executor: Any, tasks: deque, by_id: dict[str, dict[str, Any]], retries: int,
              progress: ProgressDisplay, result: BatchResult) -> None:
    while tasks or executor.busy():
        while tasks and executor.capacity() > 0:
            task = tasks.popleft()
            executor.submit(task)
            progress.started(task["cell_obj"], task["attempt"])
        for ev in executor.poll(0.2):
            if ev.get("event") != "done":
                continue
            task = by_id[ev["task_id"]]
            _finish(ev, task, tasks, by_id, retries, progress, result)


def _finish(ev: dict[str, Any], task: dict[str, Any], tasks: deque, by_id: dict[str, dict[str, Any]], retries: int,
            progress: ProgressDisplay, result: BatchResult) -> None:
    cell: Cell = task["cell_obj"]
    retry = not ev.get("ok") and not ev.get("killed") and task["attempt"] < retries and not result.interrupted
    progress.finished(cell, ev, retry)
    if ev.get("ok"):
        result.results.append({**ev, "model": cell.model, "seed": cell.seed})
    elif retry:
        new = {**task, "attempt": task["attempt"] + 1, "task_id": uuid.uuid4().hex}
        by_id[new["task_id"]] = new
        tasks.append(new)
    elif not ev.get("killed"):
        result.failures.append({"model": cell.model, "seed": cell.seed, "recorder_id": ev.get("recorder_id"),
                                "summary": ev.get("summary") or str(ev.get("error", "")).strip().splitlines()[-1:],
                                "error": ev.get("error"), "attempts": task["attempt"] + 1})


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
    ex: Any
    if executor == "ray":
        # a tracking server's login goes with the cells: a node's workers have the env of its `ray start`
        login = {k: os.environ[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD") if k in os.environ}
        ex = RayExecutor(workers, address=ray_address, env={"QRECORDER_URI": uri, **login})
    else:
        ex = LocalExecutor(workers, log_dir, env={"QRECORDER_URI": uri})
        if env == "none":
            ex.prestart(len(cells))
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

    tasks: deque = deque()
    by_id: dict[str, dict[str, Any]] = {}
    for c in todo:
        t: dict[str, Any] = {"task_id": uuid.uuid4().hex, "cell": c.to_dict(), "cell_obj": c, "attempt": 0, "batch": batch,
             "experiment_name": experiment_name, "uri": uri, "python": pythons.get(c.requirements, sys.executable)}
        by_id[t["task_id"]] = t
        tasks.append(t)
    # the executor gets JSON-able tasks; keep the Cell object on our side only
    _submit = ex.submit
    ex.submit = lambda task: _submit({k: v for k, v in task.items() if k != "cell_obj"})  # type: ignore[method-assign]

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
                for ev in ex.interrupt(grace):
                    if ev.get("event") == "done" and ev["task_id"] in by_id:
                        _finish(ev, by_id[ev["task_id"]], tasks, by_id, 0, disp, result)
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

