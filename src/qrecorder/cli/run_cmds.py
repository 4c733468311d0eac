"""``qrec run``, ``qrec run-all`` and ``qrec compare``: workflows and the batch runner.

Heavy imports (pandas, MLflow, models) happen inside the commands so ``qrec --help`` is fast.
"""

from __future__ import annotations

import sys

import click


def _fail(exc: BaseException) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(2)


@click.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--experiment-name", "-e", default=None, help="Default: the config's experiment_name, else 'workflow'.")
@click.option("--recorder-name", default=None)
@click.option("--seed", type=int, default=None, help="Default: the config's seed, else 0.")
@click.option("--uri", default=None, help="Tracking URI (default: QRECORDER_URI, MLFLOW_TRACKING_URI, ./mlflow.db).")
def run_cmd(config: str, experiment_name: str | None, recorder_name: str | None, seed: int | None,
            uri: str | None) -> None:
    """Run one workflow CONFIG (Qlib's qrun): fit the model, run the records, inside R.start.

    CONFIG may be qrecorder's (synthetic or file data) or Qlib's own (qlib.contrib classes,
    qlib_init): the latter runs with Qlib (pip install 'qrecorder[qlib]') and records to this
    store. Config errors (module, class, arguments, segments, benchmark, missing data) exit 2
    before any run is created.
    """
    from qrecorder.data.errors import DataError
    from qrecorder.workflow.errors import ConfigError
    from qrecorder.workflow.run import run_task

    try:
        res = run_task(config, experiment_name=experiment_name, recorder_name=recorder_name, seed=seed, uri=uri)
    except (ConfigError, DataError) as exc:
        _fail(exc)
        return
    fit = f" (fit {res['fit_seconds']:.1f}s)" if res.get("fit_seconds") is not None else ""
    click.echo(f"recorder {res['recorder_id']} (experiment {res['experiment_id']}) FINISHED "
               f"in {res['seconds']:.1f}s{fit}")
    for k, v in sorted(res["metrics"].items()):
        click.echo(f"  {k:55s} {v: .6f}")


@click.command("run-all")
@click.argument("bench_dir", type=click.Path(file_okay=False), default="examples/benchmarks")
@click.option("--times", "-n", type=int, default=1, show_default=True, help="Repeats per model (one seed each).")
@click.option("--models", "-m", multiple=True, help="Model folder names (repeat or comma-separate).")
@click.option("--dataset", default="synthetic", show_default=True)
@click.option("--universe", default="", help="Config suffix after the dataset, e.g. csi300.")
@click.option("--exclude", is_flag=True, help="Run every model except --models.")
@click.option("--workers", "-w", type=int, default=None, help="Parallel processes (default: CPU cores).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Existing Ray cluster (default: start a local one).")
@click.option("--env", "env", type=click.Choice(["none", "venv"]), default="none", show_default=True,
              help="venv: run each model in a venv built from its requirements.txt (cached).")
@click.option("--retries", type=int, default=0, show_default=True, help="Extra attempts for a failing cell.")
@click.option("--seed", "base_seed", type=int, default=0, show_default=True, help="Seed of repeat 0; repeat i uses seed+i.")
@click.option("--experiment-name", "-e", default="run_all_model", show_default=True)
@click.option("--baseline", default=None, help="Model the others are tested against (default: first by name).")
@click.option("--out", "out_dir", default="run_all_results", show_default=True, type=click.Path(file_okay=False))
@click.option("--no-resume", is_flag=True, help="Run every cell even if a FINISHED run exists.")
@click.option("--no-progress", is_flag=True)
@click.option("--uri", default=None, help="Tracking URI (default: QRECORDER_URI, MLFLOW_TRACKING_URI, ./mlflow.db).")
def run_all_cmd(bench_dir: str, times: int, models: tuple[str, ...], dataset: str, universe: str, exclude: bool,
                workers: int | None, executor: str, ray_address: str | None, env: str, retries: int, base_seed: int,
                experiment_name: str, baseline: str | None, out_dir: str, no_resume: bool, no_progress: bool,
                uri: str | None) -> None:
    """Run every model config in BENCH_DIR (<Model>/workflow_config_<model>_<dataset>.yaml) N times.

    Cells (model x seed) already FINISHED in the experiment are skipped; Ctrl-C marks unfinished
    runs KILLED and a rerun of the same command resumes. Prints the results table at the end.
    """
    from qrecorder.data.errors import DataError
    from qrecorder.runner.batch import run_all
    from qrecorder.runner.executors import RunnerError
    from qrecorder.workflow.errors import ConfigError

    try:
        res = run_all(bench_dir, times=times, models=list(models) or None, dataset=dataset, universe=universe,
                      exclude=exclude, workers=workers, executor=executor, env=env, retries=retries,
                      base_seed=base_seed, experiment_name=experiment_name, uri=uri, out_dir=out_dir,
                      baseline=baseline, resume=not no_resume, progress=not no_progress, ray_address=ray_address)
    except (ConfigError, DataError, RunnerError, ValueError) as exc:
        _fail(exc)
        return
    ran = len(res.cells) - res.skipped
    if res.interrupted:
        click.echo(f"Interrupted after {res.wall_seconds:.1f}s: {len(res.results)} of {ran} cells finished; "
                   "unfinished runs are KILLED. Run the same command again to resume.", err=True)
        sys.exit(130)
    click.echo(f"\n{len(res.results)} cells run, {res.skipped} resumed, {len(res.failures)} failed, "
               f"in {res.wall_seconds:.1f}s (batch {res.batch})\n")
    click.echo((res.paths.get("table.md") or "").read_text() if res.paths else "")
    for f in res.failures:
        click.echo(f"FAILED {f['model']} seed={f['seed']} (recorder {f['recorder_id']}): {f['summary']}", err=True)
    if res.paths:
        click.echo(f"Reports in {res.paths['table.md'].parent}/ (table.md, table.csv, table.tex, chart.png, "
                   f"report.html); summary recorder {res.summary_recorder_id}")
    if res.failures:
        sys.exit(1)


@click.command("compare")
@click.option("--experiment-name", "-e", "experiments", multiple=True, required=True,
              help="Experiment(s) to read (repeat). Models come from the qrecorder.model tag, else the experiment name.")
@click.option("--models", "-m", multiple=True, help="Only these models.")
@click.option("--baseline", default=None)
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False), help="Also write the report files here.")
@click.option("--save", is_flag=True, help="Keep the reports as a summary recorder in the first experiment.")
@click.option("--uri", default=None)
def compare_cmd(experiments: tuple[str, ...], models: tuple[str, ...], baseline: str | None, out_dir: str | None,
                save: bool, uri: str | None) -> None:
    """Rebuild the results table from FINISHED runs already in a store."""
    from qrecorder import R
    from qrecorder.runner.report import markdown
    from qrecorder.runner.summary import compare_experiments

    if uri:
        R.set_uri(uri)
    try:
        summary, paths = compare_experiments(list(experiments), baseline=baseline, models=list(models) or None,
                                             out_dir=out_dir, save=save)
    except ValueError as exc:
        _fail(exc)
        return
    except Exception as exc:  # noqa: BLE001 - e.g. an unknown experiment
        _fail(exc)
        return
    if summary.table.empty:
        _fail(ValueError(f"no FINISHED runs in {list(experiments)}"))
    click.echo(markdown(summary))
    if paths:
        click.echo(f"Reports in {out_dir}/")


def register(main: click.Group) -> None:
    """Add run, run-all and compare to the ``qrec`` group."""
    main.add_command(run_cmd)
    main.add_command(run_all_cmd)
    main.add_command(compare_cmd)
