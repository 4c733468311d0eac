"""A small CPU multi-layer perceptron (scikit-learn's MLPRegressor; no torch needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from qrecorder.models.base import Model, infer_x, learn_xy


class MLPModel(Model):
    """Early stopping uses a random 10% of train (scikit-learn's rule), seeded by ``seed``.

    The label is standardised before fitting: daily returns are ~1e-2, too small a target for
    Adam's default step sizes, and a network trained on them mostly learns noise.
    """

    def __init__(self, hidden_sizes: Sequence[int] = (64, 32), lr: float = 1e-3, max_iter: int = 50,
                 batch_size: int = 1024, weight_decay: float = 1e-4, early_stopping: bool = True,
                 seed: int | None = None) -> None:
        self.kwargs: dict[str, Any] = dict(
            hidden_layer_sizes=tuple(int(h) for h in hidden_sizes), learning_rate_init=lr, max_iter=max_iter,
            batch_size=batch_size, alpha=weight_decay, early_stopping=early_stopping, random_state=seed,
        )
        self.model: Any = None

    def fit(self, dataset: Any) -> None:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        x, y = learn_xy(dataset, "train")
        self.y_mean, self.y_std = float(y.mean()), float(y.std()) or 1.0
        self.model = MLPRegressor(**self.kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit(x, (y - self.y_mean) / self.y_std)

    def predict(self, dataset: Any, segment: str = "test") -> pd.Series:
        if self.model is None:
            raise ValueError("model is not fitted yet")
        x = infer_x(dataset, segment)
        pred = self.model.predict(x.to_numpy()) * self.y_std + self.y_mean
        return pd.Series(pred, index=x.index, name="score")
