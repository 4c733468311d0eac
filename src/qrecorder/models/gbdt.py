"""LightGBM regressor with early stopping on the valid segment (Qlib's LGBModel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from qrecorder.models.base import Model, has_segment, infer_x, learn_xy


class LGBModel(Model):
    """``loss`` is "mse" (Qlib's default); extra kwargs go to LightGBM as parameters."""

    def __init__(self, loss: str = "mse", num_boost_round: int = 1000, early_stopping_rounds: int = 50,
                 seed: int | None = None, **kwargs: Any) -> None:
        if loss not in ("mse", "binary"):
            raise ValueError(f"loss must be 'mse' or 'binary', not {loss!r}")
        self.params: dict[str, Any] = {"objective": "regression" if loss == "mse" else "binary",
                                       "verbosity": -1, **kwargs}
        if seed is not None:
            self.params["seed"] = int(seed)
        self.num_boost_round, self.early_stopping_rounds = num_boost_round, early_stopping_rounds
        self.model: Any = None

    def fit(self, dataset: Any) -> None:
        import lightgbm as lgb

        x, y = learn_xy(dataset, "train")
        train = lgb.Dataset(x, label=y)
        valid_sets = [train]
        callbacks: list[Callable[..., Any]] = []
        if has_segment(dataset, "valid") and self.early_stopping_rounds:
            xv, yv = learn_xy(dataset, "valid")
            valid_sets = [lgb.Dataset(xv, label=yv, reference=train)]
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        self.model = lgb.train(self.params, train, num_boost_round=self.num_boost_round,
                               valid_sets=valid_sets, callbacks=callbacks)

    def predict(self, dataset: Any, segment: str = "test") -> pd.Series:
        if self.model is None:
            raise ValueError("model is not fitted yet")
        x = infer_x(dataset, segment)
        return pd.Series(self.model.predict(x.to_numpy()), index=x.index, name="score")
