"""A top-k / drop-n long-only backtest with transaction costs against an equal-weight benchmark.

Why this simplification of Qlib's exchange-level backtest: it needs no market data beyond the
forward return of each (day, instrument), runs in milliseconds, and is easy to check by hand.

Timeline: the score of day t decides the holdings traded on day t; the holdings then earn the
forward return ``returns[t, i]`` (for Qlib's label ``close[t+2]/close[t+1]-1`` this is buying
at the next close). Trading follows Qlib's TopkDropoutStrategy (method_sell="bottom",
method_buy="top"): keep the current holdings, sell the ``n_drop`` that rank lowest among
holdings plus the best new candidates, buy the best candidates to get back to ``topk``, each
buy taking an equal share of the cash times ``risk_degree``
(default 0.95, as Qlib). Costs: ``open_cost`` of the value
bought and ``close_cost`` of the value sold (Qlib defaults 0.0005 / 0.0015; ``min_cost`` is not
modelled). Names without a score on a day are held but not traded (like a suspension).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass
class BacktestResult:
    # per day, Qlib's report_normal columns: account, return, total_turnover, turnover,
    # total_cost, cost, value, cash, bench (index "datetime")
    report: pd.DataFrame
    positions: pd.DataFrame   # (datetime, instrument) -> weight after trading


def topk_dropout_trades(score: pd.Series | Mapping[str, float] | Iterable[tuple[str, float]], held: list[str],
                        topk: int, n_drop: int) -> tuple[list[str], list[str]]:
    """Return (sell, buy) for one day, with Qlib's TopkDropoutStrategy rule (plain Python: fast)."""
    pairs: Iterable[tuple[Any, Any]] = score.items() if hasattr(score, "items") else score
    sc = {k: float(v) for k, v in pairs}
    sc = {k: v for k, v in sc.items() if v == v}  # drop NaN scores
    held_set = set(held)
    last = sorted((h for h in held if h in sc), key=lambda k: -sc[k])
    candidates = sorted((k for k in sc if k not in held_set), key=lambda k: -sc[k])
    today = candidates[: max(n_drop + topk - len(last), 0)]
    comb = sorted(last + today, key=lambda k: -sc[k])
    dropped = set(comb[-n_drop:]) if n_drop > 0 else set()
    sell = [h for h in last if h in dropped]
    buy = today[: max(len(sell) + topk - len(last), 0)]
    return sell, buy


def backtest_topk(
    score: pd.Series,
    returns: pd.Series,
    topk: int = 50,
    n_drop: int = 5,
    open_cost: float = 0.0005,
    close_cost: float = 0.0015,
    account: float = 1e8,
    risk_degree: float = 0.95,
) -> BacktestResult:
    """Simulate the strategy over every day that has scores; see the module docstring."""
    if topk <= 0 or n_drop < 0:
        raise ValueError("topk must be > 0 and n_drop >= 0")
    score = score.dropna()
    scores = {d: dict(zip(s.index.get_level_values("instrument"), s.to_numpy(), strict=True))
              for d, s in score.groupby(level="datetime")}
    rets = {d: dict(zip(r.index.get_level_values("instrument"), r.to_numpy(), strict=True))
            for d, r in returns.dropna().groupby(level="datetime")}
    days = sorted(scores)
    cash = float(account)
    holdings: dict[str, float] = {}  # instrument -> value
    total_turnover = total_cost = 0.0  # money, accumulated (Qlib's total_turnover / total_cost)
    rows: list[dict[str, Any]] = []
    pos_rows: list[tuple[Any, str, float]] = []
    for day in days:
        s, r = scores[day], rets.get(day, {})
        value_before = cash + sum(holdings.values())
        sell, buy = topk_dropout_trades(s, list(holdings), topk, n_drop)
        sell = [i for i in sell if i in r]  # cannot trade a name with no price that day
        sold = sum(holdings.pop(i) for i in sell)
        cost = sold * close_cost
        cash += sold - sold * close_cost
        buy = [i for i in buy if i in r]
        bought = 0.0
        if buy:
            each = cash * risk_degree / len(buy)
            for i in buy:
                holdings[i] = holdings.get(i, 0.0) + each
            bought = each * len(buy)
            cost += bought * open_cost
            cash -= bought * (1 + open_cost)
        for i in list(holdings):
            holdings[i] *= 1.0 + float(r.get(i, 0.0))
        end_value = cash + sum(holdings.values())
        total_turnover += sold + bought
        total_cost += cost
        pos_rows.extend((day, i, v / end_value) for i, v in holdings.items())
        rows.append({
            "datetime": day, "account": end_value,
            "return": (end_value + cost - value_before) / value_before,
            "total_turnover": total_turnover,
            "turnover": (sold + bought) / value_before,
            "total_cost": total_cost,
            "cost": cost / value_before,
            "value": sum(holdings.values()), "cash": cash,
            "bench": float(sum(r.values()) / len(r)) if r else 0.0,
        })
    report = pd.DataFrame(rows).set_index("datetime")
    positions = pd.DataFrame(pos_rows, columns=["datetime", "instrument", "weight"]).set_index(["datetime", "instrument"])
    return BacktestResult(report=report, positions=positions)


def excess_returns(report: pd.DataFrame) -> dict[str, pd.Series]:
    """Qlib's two excess-return series: without cost (return - bench), with cost (minus cost too)."""
    return {
        "excess_return_without_cost": report["return"] - report["bench"],
        "excess_return_with_cost": report["return"] - report["bench"] - report["cost"],
    }

