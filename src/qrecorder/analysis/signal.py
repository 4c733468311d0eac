"""Signal analysis per trading day: IC, rank IC and long-short returns (Qlib's conventions).

IC on day t is the Pearson correlation across instruments between the score and the label;
rank IC is the Spearman correlation. Days with fewer than two valid pairs give NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _matrices(pred: pd.Series, label: pd.Series) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """Days x instruments arrays with NaN wherever either side is missing."""
    df = pd.DataFrame({"pred": pred, "label": label}).dropna()
    p = df["pred"].unstack("instrument")
    y = df["label"].unstack("instrument").reindex_like(p)
    pv, yv = p.to_numpy(dtype=float, copy=True), y.to_numpy(dtype=float, copy=True)
    bad = np.isnan(pv) | np.isnan(yv)
    pv[bad], yv[bad] = np.nan, np.nan
    return p.index, pv, yv


def _row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row, ignoring NaN; NaN for < 2 pairs or zero variance."""
    n = np.sum(~np.isnan(a), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ac = a - np.nanmean(a, axis=1, keepdims=True)
        bc = b - np.nanmean(b, axis=1, keepdims=True)
        num = np.nansum(ac * bc, axis=1)
        den = np.sqrt(np.nansum(ac * ac, axis=1) * np.nansum(bc * bc, axis=1))
        r = num / den
    r[(n < 2) | ~np.isfinite(r)] = np.nan
    return r


def calc_ic(pred: pd.Series, label: pd.Series, dropna: bool = False) -> tuple[pd.Series, pd.Series]:
    """Daily (IC, rank IC) series, as qlib.contrib.eva.alpha.calc_ic (ranks: average for ties)."""
    days, pv, yv = _matrices(pred, label)
    ic = pd.Series(_row_corr(pv, yv), index=days, name="ic")
    pr = pd.DataFrame(pv).rank(axis=1).to_numpy()
    yr = pd.DataFrame(yv).rank(axis=1).to_numpy()
    ric = pd.Series(_row_corr(pr, yr), index=days, name="ric")
    if dropna:
        return ic.dropna(), ric.dropna()
    return ic, ric


def calc_long_short_return(pred: pd.Series, label: pd.Series, quantile: float = 0.2) -> tuple[pd.Series, pd.Series]:
    """Daily (long-short, long-average) returns, as qlib.contrib.eva.alpha.calc_long_short_return.

    Each day the top ``quantile`` of names by score is the long leg and the bottom the short
    leg (at least one name each): long-short = (long - short) / 2, long-avg = long - mean(label).
    """
    days, pv, yv = _matrices(pred, label)
    ls, la = np.full(len(days), np.nan), np.full(len(days), np.nan)
    for i in range(len(days)):
        ok = ~np.isnan(pv[i])
        if not ok.any():
            continue
        p, y = pv[i][ok], yv[i][ok]
        order = np.argsort(-p, kind="stable")
        k = max(int(np.floor(len(p) * quantile)), 1)
        long, short = y[order[:k]].mean(), y[order[-k:]].mean()
        ls[i], la[i] = (long - short) / 2.0, long - y.mean()
    return pd.Series(ls, index=days, name="long_short"), pd.Series(la, index=days, name="long_avg")


def signal_metrics(ic: pd.Series, ric: pd.Series) -> dict[str, float]:
    """Qlib's SigAnaRecord metrics: means and mean/std (ICIR, not annualised)."""
    return {
        "IC": float(ic.mean()),
        "ICIR": float(ic.mean() / ic.std()),
        "Rank IC": float(ric.mean()),
        "Rank ICIR": float(ric.mean() / ric.std()),
    }


def long_short_metrics(long_short: pd.Series, long_avg: pd.Series, ann_scaler: int = 252) -> dict[str, float]:
    """Annualised (additive) return and Sharpe of the long-short and long-average legs."""
    return {
        "Long-Short Ann Return": float(long_short.mean() * ann_scaler),
        "Long-Short Ann Sharpe": float(long_short.mean() / long_short.std() * ann_scaler**0.5),
        "Long-Avg Ann Return": float(long_avg.mean() * ann_scaler),
        "Long-Avg Ann Sharpe": float(long_avg.mean() / long_avg.std() * ann_scaler**0.5),
    }
