"""A user model plugged in through ``module_path`` (a file path, relative to the config).

Any class with ``fit(dataset)`` and ``predict(dataset, segment="test")`` works; it may take a
``seed`` keyword, which the runner fills with the repeat's seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class ReversalModel:
    """Scores each name by minus a weighted sum of its recent returns (no learning beyond a sign)."""

    def __init__(self, weights: dict[str, float] | None = None, seed: int | None = None) -> None:
        self.weights = weights or {"RET5": 1.0, "RET1": 0.5}
        self.sign = -1.0
        self.rng = np.random.default_rng(seed)

    def fit(self, dataset) -> None:  # type: ignore[no-untyped-def]
        df = dataset.prepare("train", col_set=["feature", "label"], data_key="learn")
        score = sum(w * df["feature"][c] for c, w in self.weights.items())
        self.sign = float(np.sign(np.corrcoef(score, df["label"].iloc[:, 0])[0, 1]) or -1.0)

    def predict(self, dataset, segment: str = "test") -> pd.Series:  # type: ignore[no-untyped-def]
        x = dataset.prepare(segment, col_set="feature")
        score = self.sign * sum(w * x[c] for c, w in self.weights.items())
        return score + 1e-9 * self.rng.standard_normal(len(score))  # tie-breaker, seeded
