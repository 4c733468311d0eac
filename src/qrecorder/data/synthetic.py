"""A synthetic market panel: instruments x trading days with a weak, planted, learnable signal.

Why: the batch runner needs data that ships with the package, costs seconds to make, is the
same for the same seed everywhere, and has *some* predictability so that models differ and
the statistics have something to find. Nothing here is meant to look like a real market.

The planted signal is price-derived, so models can only find it through the features:
short-term reversal (the 5-day return predicts the return two days ahead with a negative
sign) plus a non-linear part (20-day momentum only for names with calm volume), both scaled
to a few percent of each name's volatility -- an information coefficient of roughly 0.03-0.08.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

FEATURES = (
    "RET1", "RET5", "RET10", "RET20", "STD5", "STD20",
    "MA5", "MA20", "MAX20", "MIN20", "VMA5", "VSTD5",
)
LABEL = "LABEL0"


def _rolling(a: np.ndarray, window: int, func: str) -> np.ndarray:
    """Rolling statistic over axis 0 (time) with NaN for the first window-1 rows."""
    return getattr(pd.DataFrame(a).rolling(window), func)().to_numpy()


def make_synthetic_panel(
    n_instruments: int = 100,
    n_days: int = 500,
    seed: int = 0,
    start: str = "2020-01-01",
    signal_strength: float = 0.15,
    warmup: int = 30,
) -> pd.DataFrame:
    """Return a panel indexed by (datetime, instrument) with FEATURES and the label LABEL0.

    LABEL0 follows Qlib's Alpha158 label: ``close[t+2] / close[t+1] - 1`` -- the return of
    a position bought at the next close after the signal day. Deterministic in ``seed``.
    """
    if n_instruments < 2 or n_days < 2:
        raise ValueError("make_synthetic_panel needs n_instruments >= 2 and n_days >= 2")
    rng = np.random.default_rng(seed)
    n, total = n_instruments, n_days + warmup + 2
    beta = rng.uniform(0.6, 1.4, n)
    vol = rng.uniform(0.01, 0.03, n)
    market = rng.normal(0.0003, 0.01, total)
    shock = rng.standard_normal((total, n))
    vshock = rng.standard_normal((total, n))
    ret = np.zeros((total, n))
    volu = np.zeros((total, n))
    base_volume = rng.uniform(12.0, 16.0, n)
    for t in range(total):
        mu = np.zeros(n)
        if t >= 22:  # information available at t-2 predicts the return on day t
            past = ret[t - 6 : t - 1]  # 5 daily returns ending at t-2
            z5 = past.sum(axis=0) / (vol * np.sqrt(5.0))
            z20 = ret[t - 21 : t - 1].sum(axis=0) / (vol * np.sqrt(20.0))
            calm = (np.abs(volu[t - 2] - base_volume) < 0.5).astype(float)
            mu = vol * signal_strength * (-np.tanh(z5) + 0.8 * calm * np.tanh(z20))
        ret[t] = beta * market[t] + vol * shock[t] + mu
        volu[t] = base_volume + 0.3 * np.abs(shock[t]) + 0.4 * vshock[t]
    close = 100.0 * np.cumprod(1.0 + ret, axis=0)

    def lag_ratio(k: int) -> np.ndarray:
        out = np.full_like(close, np.nan)
        out[k:] = close[k:] / close[:-k] - 1.0
        return out

    feats = {
        "RET1": lag_ratio(1), "RET5": lag_ratio(5), "RET10": lag_ratio(10), "RET20": lag_ratio(20),
        "STD5": _rolling(ret, 5, "std"), "STD20": _rolling(ret, 20, "std"),
        "MA5": _rolling(close, 5, "mean") / close, "MA20": _rolling(close, 20, "mean") / close,
        "MAX20": _rolling(close, 20, "max") / close, "MIN20": _rolling(close, 20, "min") / close,
        "VMA5": _rolling(volu, 5, "mean") - volu, "VSTD5": _rolling(volu, 5, "std"),
    }
    label = np.full_like(close, np.nan)
    label[:-2] = close[2:] / close[1:-1] - 1.0

    keep = slice(warmup, warmup + n_days)
    dates = pd.bdate_range(start=start, periods=total)[keep]
    instruments = [f"SYN{i:04d}" for i in range(n)]
    index = pd.MultiIndex.from_product([dates, instruments], names=["datetime", "instrument"])
    data = {name: feats[name][keep].reshape(-1) for name in FEATURES}
    data[LABEL] = label[keep].reshape(-1)
    return pd.DataFrame(data, index=index)


class SyntheticPanel:
    """A panel source for DatasetH: ``load()`` builds the synthetic panel from its kwargs."""

    def __init__(self, n_instruments: int = 100, n_days: int = 500, seed: int = 0,
                 start: str = "2020-01-01", signal_strength: float = 0.15) -> None:
        self.kwargs: dict[str, Any] = dict(n_instruments=n_instruments, n_days=n_days, seed=seed, start=start,
                           signal_strength=signal_strength)
        self.label = LABEL
        self.features = list(FEATURES)

    def load(self) -> pd.DataFrame:
        return make_synthetic_panel(**self.kwargs)

    def __repr__(self) -> str:
        return f"SyntheticPanel({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())})"
