"""Find benchmark configs in Qlib's layout: ``<Model>/workflow_config_<model>_<dataset>[_<universe>].yaml``.

A model folder may hold a ``requirements.txt`` (used by ``--env venv``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from qrecorder.workflow.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """One model folder's config for the chosen dataset/universe."""

    name: str                  # the folder name, e.g. "LightGBM"
    config_path: Path
    dataset: str
    universe: str
    requirements: Path | None  # the folder's requirements.txt, if any


def _split(models: str | Iterable[str] | None) -> list[str] | None:
    if models is None:
        return None
    if isinstance(models, str):
        models = [models]
    # Qlib's run_all_model.py spellings too: "[mlp,lightgbm]", "mlp, lightgbm", ["'mlp'"]
    out = [m.strip("[]()'\" ") for item in models for m in str(item).split(",")]
    return [m for m in out if m] or None


def discover(bench_dir: str | Path, models: str | Iterable[str] | None = None, dataset: str = "synthetic",
             universe: str = "", exclude: bool = False) -> list[ModelConfig]:
    """Configs to run, sorted by model name. Unknown model names are an error listing the known ones.

    ``models`` (names or comma-separated, case-insensitive) selects folders; with ``exclude``
    they are left out instead, as in Qlib's run_all_model.
    """
    root = Path(bench_dir)
    if not root.is_dir():
        raise ConfigError("benchmarks folder not found", source=str(root))
    folders = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith((".", "_"))}
    wanted = _split(models)
    if wanted:
        unknown = [m for m in wanted if m.lower() not in folders]
        if unknown:
            raise ConfigError(f"unknown model name(s) {unknown}; available: {sorted(p.name for p in folders.values())}",
                              source=str(root), field="models")
        keys = {m.lower() for m in wanted}
        chosen = [p for k, p in folders.items() if (k in keys) != exclude]
    else:
        chosen = list(folders.values())
    suffix = f"_{dataset}_{universe}.yaml" if universe else f"_{dataset}.yaml"
    pattern = re.compile(r"^workflow_config_(.+)" + re.escape(suffix) + "$", re.IGNORECASE)
    found = []
    for folder in chosen:
        matches = sorted(p for p in folder.glob("workflow_config_*.yaml") if pattern.match(p.name))
        if universe == "":  # "_<dataset>.yaml" must not also match "_<dataset>_<universe>.yaml"
            matches = [p for p in matches if not re.search(re.escape(f"_{dataset}_"), p.name, re.IGNORECASE)]
        if not matches:
            continue
        req = folder / "requirements.txt"
        found.append(ModelConfig(folder.name, matches[0], dataset, universe, req if req.is_file() else None))
    if not found:
        raise ConfigError(f"no config matches 'workflow_config_<model>{suffix}' in the selected model folders",
                          source=str(root), field="dataset" if not universe else "universe")
    return sorted(found, key=lambda m: m.name.lower())
