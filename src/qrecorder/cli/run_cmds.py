"""``qrec run``, ``qrec run-all`` and ``qrec compare``: workflows and the batch runner.

Heavy imports (pandas, MLflow, models) happen inside the commands so ``qrec --help`` is fast.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .common import echo_json

# The experiment `qrec run-all` records to unless told otherwise (run_all_model.py's name), and
# the one `qrec compare` reads without arguments.
RUN_ALL_EXPERIMENT = "run_all_model"
URI_HELP = "Tracking store (default: QRECORDER_URI, MLFLOW_TRACKING_URI, else ./mlflow.db)."
UI_URL_HELP = ("MLflow UI address to link each run from report.html, e.g. http://127.0.0.1:5000 "
               "(`qrec ui`). [env: QRECORDER_UI_URL]")
JSON_HELP = "Print the result as JSON (run ids, experiment, metrics table) instead of text; progress goes to stderr."
REPORT_FILES = ("table.md", "table.csv", "table.tex", "chart.png", "excess_return.png", "ic.png", "monthly_ic.csv",
                "report.html")


def _fail(exc: BaseException) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(2)


def _records(frame: object) -> list[dict]:
    """A DataFrame as JSON-ready records (NaN -> null, numpy scalars -> Python)."""
    import json

    if frame is None or len(frame) == 0:  # type: ignore[arg-type]
        return []
    return json.loads(frame.to_json(orient="records", double_precision=15))  # type: ignore[attr-defined]


def _summary_json(summary: object, paths: dict | None) -> dict:
    """The parts of a runner Summary a script wants: the table, the runs behind it, the report files."""
    runs = _records(getattr(summary, "runs", None))
    for r in runs:
        if "recorder_id" in r:
            r["run_id"] = r["recorder_id"]
    return {
        "baseline": getattr(summary, "baseline", None),
        "run_ids": [r["run_id"] for r in runs if r.get("run_id")],
        "table": _records(getattr(summary, "table", None)),
        "runs": runs,
        "reports": {name: str(path) for name, path in (paths or {}).items()},
    }


def _reports_line(paths: dict) -> str:
    folder = next(iter(paths.values())).parent
    names = [n for n in REPORT_FILES if n in paths] + sorted(n for n in paths if n not in REPORT_FILES)
    return f"Reports in {folder}/ ({', '.join(names)})"


@click.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--experiment-name", "-e", default=None, help="Experiment of the run. Default: the config's "
              "experiment_name, else 'workflow'.")
@click.option("--recorder-name", default=None, help="Name of the run (recorder). Default: MLflow's generated name.")
@click.option("--seed", type=int, default=None, help="Default: the config's seed, else 0.")
@click.option("--uri", default=None, help=URI_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def run_cmd(config: str, experiment_name: str | None, recorder_name: str | None, seed: int | None,
            uri: str | None, as_json: bool) -> None:
    """Run one workflow CONFIG (Qlib's qrun): fit the model, run the records, inside R.start.

    CONFIG may be qrecorder's (synthetic or file data) or Qlib's own (qlib.contrib classes,
    qlib_init): the latter runs with Qlib (pip install 'qrecorder[qlib]') and records to this
    store. Config errors (module, class, arguments, segments, benchmark, missing data) exit 2
    before any run is created.

    \b
    Examples:
      qrec run examples/benchmarks/LightGBM/workflow_config_lightgbm_synthetic.yaml
      qrec run examples/benchmarks/Linear/workflow_config_linear_synthetic.yaml --seed 3 -e linear --json
    """
    from qrecorder.data.errors import DataError
    from qrecorder.workflow.errors import ConfigError
    from qrecorder.workflow.run import run_task

    try:
        res = run_task(config, experiment_name=experiment_name, recorder_name=recorder_name, seed=seed, uri=uri)
    except (ConfigError, DataError) as exc:
        _fail(exc)
        return
    exp_name = _experiment_name(res["experiment_id"], uri)
    if as_json:
        echo_json({"run_id": res["recorder_id"], "experiment_id": res["experiment_id"], "experiment_name": exp_name,
                    "status": "FINISHED", "model": res.get("model"), "seed": res.get("seed"),
                    "seconds": res.get("seconds"), "fit_seconds": res.get("fit_seconds"),
                    "metrics": dict(sorted(res["metrics"].items()))})
        return
    fit = f" (fit {res['fit_seconds']:.1f}s)" if res.get("fit_seconds") is not None else ""
    click.echo(f"recorder {res['recorder_id']} (experiment {exp_name!r}, id {res['experiment_id']}) FINISHED "
               f"in {res['seconds']:.1f}s{fit}")
    for k, v in sorted(res["metrics"].items()):
        click.echo(f"  {k:55s} {v: .6f}")
    click.echo(f"See it with: qrec show {res['recorder_id']}   (all runs: qrec runs {_shell_word(exp_name)})")


def _experiment_name(experiment_id: str, uri: str | None) -> str:
    """The name of an experiment of the store the run went to (the id itself if it cannot be read)."""
    import contextlib

    from qrecorder import R

    try:
        with R.uri_context(uri) if uri else contextlib.nullcontext():
            return R.get_exp(experiment_id=str(experiment_id), create=False).name
    except Exception:  # noqa: BLE001 - only for display
        return str(experiment_id)


def _shell_word(text: str) -> str:
    import shlex

    return shlex.quote(text)


# Options of Qlib's examples/run_all_model.py (python-fire) that take a boolean
_FIRE_BOOLS = ("exclude", "wait-before-rm-env", "wait-when-err")
_TRUE, _FALSE = {"true", "1", "yes", "y"}, {"false", "0", "no", "n", "none"}


def fire_args(args: list[str]) -> list[str]:
    """Rewrite python-fire spellings into click's: ``--exp_folder_name`` -> ``--exp-folder-name``,
    ``--exclude=True`` -> ``--exclude``, ``--exclude=False`` / ``--noexclude`` -> nothing."""
    out: list[str] = []
    i = 0
    while i < len(args):
        tok, i = args[i], i + 1
        if not tok.startswith("--") or tok == "--":
            out.append(tok)
            continue
        name, eq, value = tok[2:].partition("=")
        name = name.replace("_", "-")
        if name.startswith("no") and name[2:] in _FIRE_BOOLS:
            continue
        if name not in _FIRE_BOOLS:
            out.append(f"--{name}{eq}{value}")
            continue
        if not eq and i < len(args) and args[i].lower() in _TRUE | _FALSE:  # fire also reads "--exclude True"
            value, eq, i = args[i], "=", i + 1
        if eq and value.lower() not in _TRUE | _FALSE:
            raise click.UsageError(f"--{name} takes True or False, not {value!r}")
        if not eq or value.lower() in _TRUE:
            out.append(f"--{name}")
    return out


class _FireCompatCommand(click.Command):
    """Accepts the command lines of Qlib's run_all_model.py (see docs/cli.md, "From run_all_model.py")."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, fire_args(list(args)))


def default_bench_dir() -> str:
    """examples/benchmarks (qrecorder's or Qlib's repo root), else ./benchmarks (Qlib's examples/ folder)."""
    from pathlib import Path

    for cand in ("examples/benchmarks", "benchmarks"):
        if Path(cand).is_dir():
            return cand
    return "examples/benchmarks"


def _qlib_positionals(rest: tuple[str, ...], opts: dict[str, Any]) -> None:
    """``run [TIMES [MODELS [DATASET [UNIVERSE]]]]``: fire's positional order of ModelRunner.run."""
    names = ("times", "models", "dataset", "universe")
    if len(rest) > len(names):
        raise click.UsageError(f"too many arguments after 'run': {list(rest)} "
                               "(run_all_model.py's order is: run TIMES MODELS DATASET UNIVERSE)")
    for name, value in zip(names, rest, strict=False):
        given = opts[name]
        if given not in (None, ()):
            raise click.UsageError(f"{name} given twice: as argument {value!r} and as --{name}")
        if name == "times":
            try:
                opts[name] = int(value)
            except ValueError:
                raise click.UsageError(f"TIMES must be an integer, got {value!r}") from None
        else:
            opts[name] = (value,) if name == "models" else value


@click.command("run-all", cls=_FireCompatCommand)
@click.argument("args", nargs=-1, metavar="[BENCH_DIR] | run [TIMES [MODELS [DATASET [UNIVERSE]]]]")
@click.option("--bench-dir", default=None, type=click.Path(file_okay=False),
              help="Benchmarks folder (default: examples/benchmarks, else ./benchmarks).")
@click.option("--times", "-n", type=int, default=None, help="Repeats per model (one seed each). [default: 1]")
@click.option("--models", "-m", multiple=True, help="Model folder names (repeat or comma-separate; [a,b] works).")
@click.option("--dataset", default=None, help="Config suffix: workflow_config_<model>_<DATASET>.yaml "
              "[default: synthetic; Alpha360 in the 'run' form, as run_all_model.py]")
@click.option("--universe", default=None, help="Config suffix after the dataset, e.g. csi500.")
@click.option("--exclude", is_flag=True, help="Run every model except --models (--exclude=True works).")
@click.option("--workers", "-w", type=int, default=None, help="Parallel processes (default: CPU cores).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: Ray tasks (pip install 'qrecorder[ray]').")
@click.option("--ray-address", default=None, help="Existing Ray cluster (default: start a local one).")
@click.option("--env", "env", type=click.Choice(["none", "venv"]), default="none", show_default=True,
              help="venv: run each model in a venv built from its requirements.txt (cached).")
@click.option("--retries", type=int, default=0, show_default=True, help="Extra attempts for a failing cell.")
@click.option("--seed", "base_seed", type=int, default=0, show_default=True, help="Seed of repeat 0; repeat i uses seed+i.")
@click.option("--experiment-name", "-e", default=None,
              help=f"Experiment of the batch's runs (what `qrec compare` reads). [default: {RUN_ALL_EXPERIMENT}]")
@click.option("--exp-folder-name", default=None,
              help="run_all_model.py's --exp_folder_name: taken as --experiment-name (runs stay in this store).")
@click.option("--qlib-uri", default=None,
              help="run_all_model.py's --qlib_uri: with --env venv, pip-install Qlib from it into each model venv.")
@click.option("--wait-before-rm-env", is_flag=True, help="run_all_model.py's flag; accepted, nothing to wait for "
              "(venvs are cached, not removed).")
@click.option("--wait-when-err", is_flag=True, help="run_all_model.py's flag; accepted, failures never stop the "
              "batch (listed at the end and in report.html).")
@click.option("--baseline", default=None, help="Model the others are tested against (default: first by name).")
@click.option("--out", "out_dir", default="run_all_results", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the reports (table.md, report.html, ...), worker logs and cached venvs.")
@click.option("--no-resume", is_flag=True, help="Run every cell even if a FINISHED run exists.")
@click.option("--no-progress", is_flag=True, help="Do not show the live progress table (on stderr).")
@click.option("--ui-url", envvar="QRECORDER_UI_URL", default=None, metavar="URL", help=UI_URL_HELP)
@click.option("--uri", default=None, help=URI_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def run_all_cmd(args: tuple[str, ...], bench_dir: str | None, times: int | None, models: tuple[str, ...],
                dataset: str | None, universe: str | None, exclude: bool, workers: int | None, executor: str,
                ray_address: str | None, env: str, retries: int, base_seed: int, experiment_name: str | None,
                exp_folder_name: str | None, qlib_uri: str | None, wait_before_rm_env: bool, wait_when_err: bool,
                baseline: str | None, out_dir: str, no_resume: bool, no_progress: bool, ui_url: str | None,
                uri: str | None, as_json: bool) -> None:
    """Run every model config in BENCH_DIR (<Model>/workflow_config_<model>_<dataset>.yaml) N times.

    Cells (model x seed) already FINISHED in the experiment are skipped; Ctrl-C marks unfinished
    runs KILLED and a rerun of the same command resumes. Prints the results table at the end.

    \b
    Examples:
      qrec run-all examples/benchmarks --times 5 --workers 2
      qrec run-all examples/benchmarks -m Linear -m LightGBM --json > batch.json
      qrec compare run_all_model                       (the table again, later)

    \b
    Qlib's run_all_model.py command lines work unchanged after `qrec run-all`:
      qrec run-all run 3 lightgbm Alpha158 csi500
      qrec run-all run 3 [mlp,tft,lstm] --exclude=True
      qrec run-all run --models=[mlp,lightgbm] --dataset=Alpha158
    """
    from pathlib import Path

    from qrecorder.data.errors import DataError
    from qrecorder.runner.batch import run_all
    from qrecorder.runner.executors import RunnerError
    from qrecorder.workflow.errors import ConfigError

    opts: dict[str, Any] = {"times": times, "models": models, "dataset": dataset, "universe": universe}
    qlib_form = bool(args) and args[0] == "run" and not Path("run").is_dir()
    if qlib_form:
        _qlib_positionals(args[1:], opts)
    elif len(args) > 1:
        raise click.UsageError(f"one BENCH_DIR expected, got {list(args)} (Qlib's form starts with 'run')")
    elif args:
        if bench_dir is not None:
            raise click.UsageError("BENCH_DIR given twice: as argument and as --bench-dir")
        bench_dir = args[0]
    if experiment_name is not None and exp_folder_name is not None and experiment_name != exp_folder_name:
        raise click.UsageError("--exp-folder-name is --experiment-name: give one of them")
    if qlib_uri and env != "venv":
        click.echo(f"note: --qlib-uri {qlib_uri} is used only with --env venv; models run in this Python "
                   "and its installed pyqlib", err=True)
    if wait_before_rm_env or wait_when_err:
        click.echo("note: --wait_before_rm_env/--wait_when_err are accepted and do nothing here: venvs are cached "
                   "in <out>/.venvs, and failed cells never stop the batch (listed at the end, in report.html)",
                   err=True)
    try:
        res = run_all(bench_dir or default_bench_dir(), times=opts["times"] or 1, models=list(opts["models"]) or None,
                      dataset=opts["dataset"] or ("Alpha360" if qlib_form else "synthetic"),
                      universe=opts["universe"] or "", exclude=exclude, workers=workers, executor=executor, env=env,
                      retries=retries, base_seed=base_seed,
                      experiment_name=experiment_name or exp_folder_name or RUN_ALL_EXPERIMENT, uri=uri, ui_url=ui_url,
                      out_dir=out_dir, baseline=baseline, resume=not no_resume, progress=not no_progress,
                      ray_address=ray_address, extra_requirements=[qlib_uri] if qlib_uri else None)
    except (ConfigError, DataError, RunnerError, ValueError) as exc:
        _fail(exc)
        return
    ran = len(res.cells) - res.skipped
    if as_json:
        echo_json({"experiment_name": res.experiment_name, "batch": res.batch, "cells": len(res.cells),
                    "ran": ran, "resumed": res.skipped, "finished": len(res.results), "failed": len(res.failures),
                    "interrupted": res.interrupted, "wall_seconds": res.wall_seconds,
                    "new_run_ids": [r.get("recorder_id") for r in res.results],
                    "summary_recorder_id": res.summary_recorder_id,
                    "failures": [{k: f.get(k) for k in ("model", "seed", "recorder_id", "summary")}
                                 for f in res.failures],
                    **_summary_json(res.summary, res.paths)})
        sys.exit(130 if res.interrupted else 1 if res.failures else 0)
    if res.interrupted:
        click.echo(f"Interrupted after {res.wall_seconds:.1f}s: {len(res.results)} of {ran} cells finished; "
                   "unfinished runs are KILLED. Run the same command again to resume.", err=True)
        sys.exit(130)
    click.echo(f"\n{len(res.results)} cells run, {res.skipped} resumed, {len(res.failures)} failed, "
               f"in {res.wall_seconds:.1f}s (batch {res.batch})\n")
    table = res.paths.get("table.md")
    click.echo(table.read_text() if table is not None else "")
    for f in res.failures:
        click.echo(f"FAILED {f['model']} seed={f['seed']} (recorder {f['recorder_id']}): {f['summary']}", err=True)
    if res.paths:
        click.echo(f"{_reports_line(res.paths)}; summary recorder {res.summary_recorder_id}")
        click.echo(f"The table again, later: qrec compare {_shell_word(res.experiment_name)}")
    if res.failures:
        sys.exit(1)


@click.command("compare")
@click.argument("experiment_args", nargs=-1, metavar="[EXPERIMENT]...")
@click.option("--experiment-name", "-e", "experiments", multiple=True,
              help="Experiment to read (repeat; same as the EXPERIMENT arguments). Models come from the "
              f"qrecorder.model tag, else the experiment name. [default: {RUN_ALL_EXPERIMENT}, run-all's]")
@click.option("--models", "-m", multiple=True, help="Only these models (repeat).")
@click.option("--baseline", default=None, help="Model the others are tested against (default: first by name).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False), help="Also write the report files here.")
@click.option("--save", is_flag=True, help="Keep the reports as a summary recorder in the first experiment.")
@click.option("--ui-url", envvar="QRECORDER_UI_URL", default=None, metavar="URL", help=UI_URL_HELP)
@click.option("--uri", default=None, help=URI_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def compare_cmd(experiment_args: tuple[str, ...], experiments: tuple[str, ...], models: tuple[str, ...],
                baseline: str | None, out_dir: str | None, save: bool, ui_url: str | None, uri: str | None,
                as_json: bool) -> None:
    """Rebuild the results table from FINISHED runs already in a store.

    EXPERIMENT (or -e) names the experiment(s) to read; without any, the batch runner's
    default experiment run_all_model (where `qrec run-all` records unless -e is given).

    \b
    Examples:
      qrec compare                                   (= qrec compare run_all_model)
      qrec compare run_all_model --baseline Linear --out report/
      qrec compare exp_a exp_b -m LightGBM -m Linear --json
    """
    from qrecorder import R
    from qrecorder.runner.report import markdown
    from qrecorder.runner.summary import compare_experiments

    names = list(dict.fromkeys([*experiment_args, *experiments])) or [RUN_ALL_EXPERIMENT]
    if uri:
        R.set_uri(uri)
    try:
        summary, paths = compare_experiments(names, baseline=baseline, models=list(models) or None,
                                             out_dir=out_dir, save=save, ui_url=ui_url)
    except Exception as exc:  # noqa: BLE001 - e.g. an unknown experiment or baseline
        _fail(exc)
        return
    if summary.table.empty:
        _fail(ValueError(f"no FINISHED runs in {names}"))
    if as_json:
        echo_json({"experiments": names, **_summary_json(summary, paths)})
        return
    click.echo(markdown(summary))
    if paths:
        click.echo(_reports_line(paths))


def register(main: click.Group) -> None:
    """Add run, run-all and compare to the ``qrec`` group."""
    main.add_command(run_cmd)
    main.add_command(run_all_cmd)
    main.add_command(compare_cmd)
