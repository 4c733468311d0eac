"""Risk analysis of a return series: Qlib 0.9.7's ``qlib.contrib.evaluate.risk_analysis``.

Same signature, numbers and output as Qlib (``tests/test_qlib_parity.py`` compares them):

- The annualisation scaler ``N`` comes from ``freq`` when not given: minute 240 * 238, day 238,
  week 50, month 12, divided by the count of the frequency ("5min" -> 240 * 238 / 5). Note
  that a trading year is **238 days** in Qlib, not 252. An explicit ``N`` wins (Qlib warns that
  ``freq`` is then ignored, and so do we).
- ``mode="sum"`` (Qlib's default, returns accumulated by summation): ``annualized_return =
  mean * N``, ``information_ratio = mean / std * sqrt(N)`` (sample std, ddof=1),
  ``max_drawdown = min(cumsum - cummax(cumsum))``.
- ``mode="product"`` (compounded): ``mean`` is the geometric mean per period, ``std`` the std
  of log returns, ``annualized_return = (1 + total) ** (N / len(r)) - 1``, ``max_drawdown`` the
  largest relative fall of the compounded curve from its running peak.

NaNs are handled as pandas (and so Qlib) does: skipped by mean/std/cumsum, but counted by
``len(r)`` in product mode.
"""

from __future__ import annotations

import re
import warnings
from typing import Literal

import numpy as np
import pandas as pd

FREQ_MINUTE, FREQ_DAY, FREQ_WEEK, FREQ_MONTH = "min", "day", "week", "month"
_FREQ_UNITS = {"month": FREQ_MONTH, "mon": FREQ_MONTH, "week": FREQ_WEEK, "w": FREQ_WEEK,
               "day": FREQ_DAY, "d": FREQ_DAY, "minute": FREQ_MINUTE, "min": FREQ_MINUTE}
# periods per year, as qlib.contrib.evaluate.risk_analysis.cal_risk_analysis_scaler
_PERIODS_PER_YEAR = {FREQ_MINUTE: 240 * 238, FREQ_DAY: 238, FREQ_WEEK: 50, FREQ_MONTH: 12}


def parse_freq(freq: str) -> tuple[int, str]:
    """Qlib's ``Freq.parse``: ``"day"`` -> (1, "day"), ``"5min"`` -> (5, "min"), ``"2mon"`` -> (2, "month")."""
    match = re.match("^([0-9]*)(month|mon|week|w|day|d|minute|min)$", str(freq).lower())
    if match is None:
        raise ValueError(f"freq {freq!r} is not supported; it should be like (n)month/mon, (n)week/w, "
                         "(n)day/d, (n)minute/min")
    return (int(match.group(1)) if match.group(1) else 1), _FREQ_UNITS[match.group(2)]


def normalize_freq(freq: str) -> str:
    """Qlib's normalised frequency name, as PortAnaRecord uses it in metric names: "day" -> "1day"."""
    return "{}{}".format(*parse_freq(freq))


def annualization_scaler(freq: str) -> float:
    """Periods per year for ``freq`` (Qlib: day 238, week 50, month 12, minute 240 * 238)."""
    count, unit = parse_freq(freq)
    return _PERIODS_PER_YEAR[unit] / count


def risk_analysis(r: pd.Series, N: float | None = None, freq: str | None = "day",  # noqa: N803 - Qlib's name
                  mode: Literal["sum", "product"] = "sum") -> pd.DataFrame:
    """One-column ("risk") frame indexed by mean, std, annualized_return, information_ratio, max_drawdown."""
    if N is None:
        if freq is None:
            raise ValueError("at least one of `N` and `freq` should exist")
        N = annualization_scaler(freq)  # noqa: N806
    elif freq is not None:
        warnings.warn("risk_analysis freq will be ignored", stacklevel=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "sum":
            mean = r.mean()
            std = r.std(ddof=1)
            annualized_return = mean * N
            max_drawdown = (r.cumsum() - r.cumsum().cummax()).min()
        elif mode == "product":
            curve = (1 + r).cumprod()
            mean = curve.iloc[-1] ** (1 / len(r)) - 1
            std = np.log(1 + r).std(ddof=1)
            annualized_return = (1 + (curve.iloc[-1] - 1)) ** (N / len(r)) - 1
            max_drawdown = (curve / curve.cummax() - 1).min()
        else:
            raise ValueError(f"risk_analysis accumulation mode {mode!r} is not supported; expected 'sum' or 'product'")
        information_ratio = mean / std * np.sqrt(N)
    data = {"mean": mean, "std": std, "annualized_return": annualized_return,
            "information_ratio": information_ratio, "max_drawdown": max_drawdown}
    return pd.Series(data).to_frame("risk")
