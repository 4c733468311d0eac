"""Risk analysis of a daily return series, with Qlib's formulas (risk_analysis, mode="sum").

annualized_return = mean * N (additive, not compounded); information_ratio = mean / std *
sqrt(N); max_drawdown = min(cumsum - cummax(cumsum)). std is the sample std (ddof=1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def risk_analysis(r: pd.Series, N: int = 252) -> pd.DataFrame:  # noqa: N803 - Qlib's name
    """Return a one-column ("risk") frame indexed by mean/std/annualized_return/information_ratio/max_drawdown."""
    r = r.dropna()
    mean, std = r.mean(), r.std(ddof=1)
    cum = r.cumsum()
    values = {
        "mean": mean,
        "std": std,
        "annualized_return": mean * N,
        "information_ratio": mean / std * np.sqrt(N) if std else np.nan,
        "max_drawdown": (cum - cum.cummax()).min(),
    }
    return pd.DataFrame({"risk": pd.Series(values, dtype=float)})
