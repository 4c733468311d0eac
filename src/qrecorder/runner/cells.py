"""Cells (model x seed) and resume from the store (by the tags of qrecorder.tags that identify a cell)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from qrecorder import tags
from qrecorder.runner.discovery import ModelConfig


@dataclass(frozen=True)
class Cell:
    """One run to do: a model config with one seed (repeat ``repeat`` of ``times``)."""

    model: str
    config_path: str
    seed: int
    repeat: int
    dataset: str
    config_hash: str
    requirements: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.model, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_cells(configs: Iterable[ModelConfig], times: int, base_seed: int = 0) -> list[Cell]:
    """Seeds ``base_seed + i`` for repeat i: the same seeds for every model, so tests can pair them."""
    from qrecorder.workflow.config import config_hash, load_config

    if times < 1:
        raise ValueError("times must be >= 1")
    cells = []
    for mc in configs:
        h = config_hash(load_config(mc.config_path))
        req = str(mc.requirements) if mc.requirements else None
        cells += [Cell(mc.name, str(mc.config_path), base_seed + i, i, mc.dataset, h, req) for i in range(times)]
    return cells


def finished_keys(runs: Any) -> set[tuple[str, int, str]]:
    """(model, seed, config_hash) of FINISHED run recorders in a ``search_records`` frame."""
    if runs is None or len(runs) == 0:
        return set()
    need = [f"tags.{tags.MODEL}", f"tags.{tags.SEED}", f"tags.{tags.CONFIG_HASH}", "status"]
    if any(c not in runs.columns for c in need):
        return set()
    done = runs[(runs["status"] == "FINISHED") & (runs.get(f"tags.{tags.KIND}", tags.KIND_RUN) == tags.KIND_RUN)]
    return {(str(r[need[0]]), int(r[need[1]]), str(r[need[2]])) for _, r in done.dropna(subset=need[:3]).iterrows()}


def pending(cells: Iterable[Cell], done: set[tuple[str, int, str]]) -> list[Cell]:
    """Cells without a FINISHED recorder for the same model, seed and config hash."""
    return [c for c in cells if (c.model, c.seed, c.config_hash) not in done]
