"""The batch model runner (successor of Qlib's examples/run_all_model.py): ``run_all``, ``compare_experiments``."""

from __future__ import annotations

from typing import Any

__all__ = ["compare_experiments", "run_all"]


def __getattr__(name: str) -> Any:  # keep `import qrecorder.runner` light for the CLI
    if name == "run_all":
        from qrecorder.runner.batch import run_all

        return run_all
    if name == "compare_experiments":
        from qrecorder.runner.summary import compare_experiments

        return compare_experiments
    raise AttributeError(name)
