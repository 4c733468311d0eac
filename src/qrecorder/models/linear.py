"""Linear model (Qlib's LinearModel): OLS, ridge, lasso or non-negative least squares."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from qrecorder.models.base import Model, infer_x, learn_xy


class LinearModel(Model):
    """``estimator`` in {"ols", "ridge", "lasso", "nnls"}; ``alpha`` is the penalty for ridge/lasso."""

    ESTIMATORS = ("ols", "ridge", "lasso", "nnls")

    def __init__(self, estimator: str = "ols", alpha: float = 0.0, fit_intercept: bool = False,
                 seed: int | None = None) -> None:
        if estimator not in self.ESTIMATORS:
            raise ValueError(f"estimator must be one of {self.ESTIMATORS}, not {estimator!r}")
        if estimator in ("ridge", "lasso") and alpha <= 0:
            raise ValueError(f"{estimator} needs alpha > 0")
        self.estimator, self.alpha, self.fit_intercept, self.seed = estimator, alpha, fit_intercept, seed
        self.coef_: np.ndarray | None = None
        self.intercept_ = 0.0

    def fit(self, dataset: Any) -> None:
        from sklearn.linear_model import Lasso, LinearRegression, Ridge

        x, y = learn_xy(dataset, "train")
        if self.estimator == "ols":
            est: Any = LinearRegression(fit_intercept=self.fit_intercept)
        elif self.estimator == "nnls":
            est = LinearRegression(fit_intercept=self.fit_intercept, positive=True)
        elif self.estimator == "ridge":
            est = Ridge(alpha=self.alpha, fit_intercept=self.fit_intercept, random_state=self.seed)
        else:
            est = Lasso(alpha=self.alpha, fit_intercept=self.fit_intercept, random_state=self.seed)
        est.fit(x, y)
        self.coef_, self.intercept_ = np.asarray(est.coef_, dtype=float), float(est.intercept_)

    def predict(self, dataset: Any, segment: str = "test") -> pd.Series:
        if self.coef_ is None:
            raise ValueError("model is not fitted yet")
        x = infer_x(dataset, segment)
        return pd.Series(x.to_numpy() @ self.coef_ + self.intercept_, index=x.index, name="score")
