"""Built-in models: they learn the planted signal, are deterministic by seed, and OLS is exact."""

import numpy as np
import pandas as pd
import pytest

from qrecorder.analysis import calc_ic
from qrecorder.data import DatasetH, SyntheticPanel
from qrecorder.models import LGBModel, LinearModel, MLPModel

SEG = {"train": ["2020-01-01", "2020-12-31"], "valid": ["2021-01-01", "2021-03-31"], "test": ["2021-04-01", "2021-12-31"]}


@pytest.fixture(scope="module")
def ds():
    return DatasetH(SyntheticPanel(n_instruments=80, n_days=480, signal_strength=0.5), segments=SEG)


@pytest.mark.parametrize("make", [
    lambda s: LGBModel(seed=s, num_boost_round=200, learning_rate=0.05, num_leaves=15, num_threads=1),
    lambda s: LinearModel(),
    lambda s: MLPModel(hidden_sizes=(16,), max_iter=30, seed=s),
], ids=["lgbm", "linear", "mlp"])
def test_model_learns_signal_and_is_deterministic(ds, make):
    m1, m2 = make(1), make(1)
    m1.fit(ds)
    m2.fit(ds)
    p1, p2 = m1.predict(ds), m2.predict(ds, segment="test")
    assert p1.index.equals(ds.prepare("test", col_set="feature").index)
    pd.testing.assert_series_equal(p1, p2)
    ic, _ = calc_ic(p1, ds.prepare("test", col_set="label").iloc[:, 0])
    assert ic.mean() > 0.02, ic.mean()


def test_ols_matches_lstsq(ds):
    m = LinearModel(estimator="ols")
    m.fit(ds)
    tr = ds.prepare("train", col_set=["feature", "label"], data_key="learn")
    coef, *_ = np.linalg.lstsq(tr["feature"].to_numpy(), tr["label"].to_numpy()[:, 0], rcond=None)
    np.testing.assert_allclose(m.coef_, coef, rtol=1e-6, atol=1e-10)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="estimator"):
        LinearModel(estimator="svm")
    with pytest.raises(ValueError, match="alpha"):
        LinearModel(estimator="ridge")
    with pytest.raises(ValueError, match="loss"):
        LGBModel(loss="huber")
    with pytest.raises(ValueError, match="not fitted"):
        MLPModel().predict(None)
