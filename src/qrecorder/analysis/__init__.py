"""Pure numpy/pandas analysis: signal quality, a top-k backtest, risk numbers and tests.

Nothing here knows about recorders; records/ and runner/ call these functions.
"""

from qrecorder.analysis.backtest import BacktestResult, backtest_topk, excess_returns, topk_dropout_trades
from qrecorder.analysis.risk import risk_analysis
from qrecorder.analysis.signal import calc_ic, calc_long_short_return, long_short_metrics, signal_metrics
from qrecorder.analysis.stats import TestResult, compare_to_baseline

__all__ = [
    "BacktestResult", "TestResult", "backtest_topk", "calc_ic", "calc_long_short_return",
    "compare_to_baseline", "excess_returns", "long_short_metrics", "risk_analysis", "signal_metrics",
    "topk_dropout_trades",
]
