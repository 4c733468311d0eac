"""Signal analysis per trading day: Qlib 0.9.7's ``calc_ic`` and ``calc_long_short_return``.

The numbers, index and names are Qlib's (``qlib.contrib.eva.alpha``; compared in
``tests/test_qlib_parity.py``), computed without Qlib's slow ``groupby().apply``:

- ``pred`` and ``label`` are put side by side on the union of their indexes; each day is a
  group of the ``date_col`` level (days sorted, rows in their original order).
- IC of a day is ``pred.corr(label)`` (pandas' Pearson), rank IC ``pred.corr(label,
  method="spearman")`` (average ranks for ties); rows where either side is NaN are left out of
  that day; a day with fewer than two complete pairs or a constant side gives NaN. The result
  keeps every day (``dropna=True`` drops the NaN days).
- Long-short: each day ``n = int(rows of the day * quantile)`` -- rows with a NaN prediction or
  label count too. The long leg is the mean label of ``nlargest(n)`` by prediction, the short
  leg of ``nsmallest(n)`` (pandas' ``keep="first"``: ties at the boundary go to the rows that
  come first; if fewer than ``n`` rows have a prediction, rows without one fill the leg, as
  pandas does). A day with ``n == 0`` (fewer than ``1 / quantile`` rows) gives NaN.
  long_short = (long - short) / 2; the second series is the **mean label of the day**
  (Qlib's "long-average" return: holding the whole universe), not long minus average.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _days(codes: np.ndarray, keys: Any, date_col: str) -> tuple[pd.Index, list[np.ndarray]]:
    """Sorted group keys (NaN keys dropped, as groupby) and each group's row positions in order."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(keys) + 1))
    groups = [order[bounds[i]:bounds[i + 1]] for i in range(len(keys))]
    return pd.Index(keys, name=date_col), groups


def _rank_ic(p: np.ndarray, y: np.ndarray, codes: np.ndarray, n_days: int) -> np.ndarray:
    """Spearman correlation per day over complete pairs, vectorised: Pearson of the average ranks
    (what scipy.stats.spearmanr computes for pandas); NaN for < 2 pairs or a constant side."""
    ok = ~np.isnan(p) & ~np.isnan(y) & (codes >= 0)
    c = codes[ok]
    frame = pd.DataFrame({"p": p[ok], "y": y[ok], "c": c})
    ranks = frame.groupby("c")[["p", "y"]].rank(method="average")
    rp, ry = ranks["p"].to_numpy(), ranks["y"].to_numpy()
    n = np.bincount(c, minlength=n_days).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        dp = rp - (np.bincount(c, rp, n_days) / n)[c]
        dy = ry - (np.bincount(c, ry, n_days) / n)[c]
        sxy, sxx, syy = (np.bincount(c, w, n_days) for w in (dp * dy, dp * dp, dy * dy))
        out = np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0)
    out[(n < 2) | (sxx == 0) | (syy == 0)] = np.nan
    return out


def calc_ic(pred: pd.Series, label: pd.Series, date_col: str = "datetime",
            dropna: bool = False) -> tuple[pd.Series, pd.Series]:
    """Daily (IC, rank IC) series indexed by ``date_col``, as ``qlib.contrib.eva.alpha.calc_ic``."""
    df = pd.DataFrame({"pred": pred, "label": label})
    codes, keys = pd.factorize(df.index.get_level_values(date_col), sort=True)
    days, groups = _days(codes, keys, date_col)
    p = df["pred"].to_numpy(dtype=float, na_value=np.nan)
    y = df["label"].to_numpy(dtype=float, na_value=np.nan)
    ic = np.empty(len(groups))
    for i, rows in enumerate(groups):
        # pandas' own Series.corr on the day's values, which is what Qlib's groupby().apply calls:
        # degenerate days (a side constant up to rounding, one pair) come out the same too
        ic[i] = pd.Series(p[rows]).corr(pd.Series(y[rows]))
    ic_s, ric_s = pd.Series(ic, index=days), pd.Series(_rank_ic(p, y, codes, len(keys)), index=days)
    if dropna:
        return ic_s.dropna(), ric_s.dropna()
    return ic_s, ric_s


def _leg_mean(p: np.ndarray, y: np.ndarray, n: int, largest: bool) -> float:
    """Mean label of pandas' ``nlargest``/``nsmallest(n, keep="first")`` rows by ``p`` (NaN if none)."""
    if n <= 0:
        return np.nan
    if n >= len(p):  # pandas: a full (stable) sort, so every row
        rows = np.arange(len(p))
    else:
        valid = np.flatnonzero(~np.isnan(p))
        key = -p[valid] if largest else p[valid]
        best = valid[np.argsort(key, kind="stable")[:n]]
        rows = np.concatenate([best, np.flatnonzero(np.isnan(p))])[:n]
    vals = y[rows]
    ok = ~np.isnan(vals)
    count = int(ok.sum())
    return float(np.where(ok, vals, 0.0).sum() / count) if count else np.nan


def calc_long_short_return(pred: pd.Series, label: pd.Series, date_col: str = "datetime", quantile: float = 0.2,
                           dropna: bool = False) -> tuple[pd.Series, pd.Series]:
    """Daily (long-short, long-average) returns, as ``qlib.contrib.eva.alpha.calc_long_short_return``.

    ``label`` must be raw returns. long_short = (mean label of the top ``quantile`` by ``pred``
    - mean label of the bottom ``quantile``) / 2; long_avg = mean label of the day (series name
    "label", as Qlib's).
    """
    df = pd.DataFrame({"pred": pred, "label": label})
    if dropna:
        df = df.dropna()
    codes, keys = pd.factorize(df.index.get_level_values(date_col), sort=True)
    days, groups = _days(codes, keys, date_col)
    p = df["pred"].to_numpy(dtype=float, na_value=np.nan)
    y = df["label"].to_numpy(dtype=float, na_value=np.nan)
    r_long, r_short = np.empty(len(groups)), np.empty(len(groups))
    for i, rows in enumerate(groups):
        n = int(len(rows) * quantile)
        r_long[i] = _leg_mean(p[rows], y[rows], n, largest=True)
        r_short[i] = _leg_mean(p[rows], y[rows], n, largest=False)
    long_short = (pd.Series(r_long, index=days) - pd.Series(r_short, index=days)) / 2
    long_avg = df.groupby(level=date_col, group_keys=False)["label"].mean()
    return long_short, long_avg


def signal_metrics(ic: pd.Series, ric: pd.Series) -> dict[str, float]:
    """Qlib's SigAnaRecord metrics: means and mean/std (ICIR, not annualised); NaN days skipped."""
    return {
        "IC": float(ic.mean()),
        "ICIR": float(ic.mean() / ic.std()),
        "Rank IC": float(ric.mean()),
        "Rank ICIR": float(ric.mean() / ric.std()),
    }


def long_short_metrics(long_short: pd.Series, long_avg: pd.Series, ann_scaler: float = 252) -> dict[str, float]:
    """Qlib's SigAnaRecord long-short metrics: additive annual return (mean x ann_scaler) and
    Sharpe (mean / std x sqrt(ann_scaler)) of the long-short and the long-average (mean label)
    series. Qlib's SigAnaRecord scales by ``ann_scaler=252`` here (not risk_analysis's 238)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "Long-Short Ann Return": float(long_short.mean() * ann_scaler),
            "Long-Short Ann Sharpe": float(long_short.mean() / long_short.std() * ann_scaler**0.5),
            "Long-Avg Ann Return": float(long_avg.mean() * ann_scaler),
            "Long-Avg Ann Sharpe": float(long_avg.mean() / long_avg.std() * ann_scaler**0.5),
        }
