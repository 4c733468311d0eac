"""Synthetic panel, file loader and DatasetH: shapes, determinism, checks and their messages."""

import numpy as np
import pandas as pd
import pytest

from qrecorder.data import DataError, DatasetH, FilePanel, SyntheticPanel, make_synthetic_panel, to_panel


def test_synthetic_is_deterministic_and_shaped():
    a = make_synthetic_panel(n_instruments=20, n_days=60, seed=3)
    b = make_synthetic_panel(n_instruments=20, n_days=60, seed=3)
    c = make_synthetic_panel(n_instruments=20, n_days=60, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert a.shape == (20 * 60, 13)
    assert list(a.index.names) == ["datetime", "instrument"]
    assert not a.isna().any().any()


def test_synthetic_label_is_forward_return_and_signal_is_planted():
    df = make_synthetic_panel(n_instruments=200, n_days=300, seed=0, signal_strength=0.3)
    # label(t) = close(t+2)/close(t+1) - 1 = RET1(t+2) for the same instrument
    ret1 = df["RET1"].unstack()
    lab = df["LABEL0"].unstack()
    np.testing.assert_allclose(lab.iloc[:-2].to_numpy(), ret1.iloc[2:].to_numpy(), rtol=1e-10)
    # reversal: the 5-day return is negatively rank-correlated with the label, on average
    ric = df.groupby(level=0).apply(lambda d: d["RET5"].corr(d["LABEL0"], method="spearman"))
    assert ric.mean() < -0.03
    nosig = make_synthetic_panel(n_instruments=200, n_days=300, seed=0, signal_strength=0.0)
    ric0 = nosig.groupby(level=0).apply(lambda d: d["RET5"].corr(d["LABEL0"], method="spearman"))
    assert abs(ric0.mean()) < abs(ric.mean())


def _flat(n_days=10):
    df = make_synthetic_panel(n_instruments=5, n_days=n_days, seed=1).reset_index()
    return df


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_file_panel_roundtrip(tmp_path, ext):
    flat = _flat()
    path = tmp_path / f"panel.{ext}"
    flat.to_csv(path, index=False) if ext == "csv" else flat.to_parquet(path)
    panel = FilePanel(str(path)).load()
    ref = make_synthetic_panel(n_instruments=5, n_days=10, seed=1)
    np.testing.assert_allclose(panel.to_numpy(), ref.to_numpy())
    assert list(panel.columns)[-1] == "LABEL0"


def test_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "p.csv"
    _flat().drop(columns=["LABEL0"]).to_csv(path, index=False)
    with pytest.raises(DataError) as e:
        FilePanel(str(path)).load()
    assert str(path) in str(e.value) and "'LABEL0'" in str(e.value)
    _flat().rename(columns={"instrument": "code"}).to_csv(path, index=False)
    with pytest.raises(DataError, match="instrument_col"):
        FilePanel(str(path)).load()
    assert FilePanel(str(path), instrument_col="code").load().shape == (50, 13)


def test_nan_label_is_an_error_unless_dropped(tmp_path):
    flat = _flat()
    flat.loc[3, "LABEL0"] = np.nan
    path = tmp_path / "p.parquet"
    flat.to_parquet(path)
    with pytest.raises(DataError) as e:
        FilePanel(str(path)).load()
    assert str(path) in str(e.value) and "NaN label" in str(e.value) and "'LABEL0'" in str(e.value)
    assert len(FilePanel(str(path), dropna_label=True).load()) == 49


def test_other_bad_inputs():
    flat = _flat()
    with pytest.raises(DataError, match="duplicate"):
        to_panel(pd.concat([flat, flat.iloc[:1]]), source="x.csv")
    bad = flat.assign(RET1=flat["RET1"].astype(str))
    with pytest.raises(DataError, match="'RET1'.*not numeric"):
        to_panel(bad, source="x.csv", features=["RET1"])
    with pytest.raises(DataError, match="file not found"):
        FilePanel("/nonexistent/panel.csv").load()


SEG = {"train": ["2020-02-01", "2020-06-30"], "valid": ["2020-07-01", "2020-08-31"], "test": ["2020-09-01", "2020-12-31"]}


def test_dataset_segments_and_prepare():
    ds = DatasetH(SyntheticPanel(n_instruments=10, n_days=250), segments=SEG, label_norm="cs_rank")
    tr = ds.prepare("train", col_set=["feature", "label"], data_key="learn")
    assert list(tr.columns.levels[0]) == ["feature", "label"]
    raw_train = make_synthetic_panel(n_instruments=10, n_days=250).loc["2020-02-01":"2020-06-30", "LABEL0"]
    expected = (raw_train.groupby(level=0).rank(pct=True) - 0.5) * 3.46  # Qlib's CSRankNorm
    np.testing.assert_allclose(tr["label"]["LABEL0"].to_numpy(), expected.to_numpy())
    feat = ds.prepare("test", col_set="feature")
    assert feat.index.get_level_values(0).min() >= pd.Timestamp("2020-09-01")
    assert feat.groupby(level=0).mean().abs().max().max() < 1e-9  # cs_zscore per day
    raw = ds.prepare("test", col_set="label", data_key="raw")
    panel = make_synthetic_panel(n_instruments=10, n_days=250)
    pd.testing.assert_series_equal(raw["LABEL0"], panel.loc["2020-09-01":"2020-12-31", "LABEL0"])
    assert [len(x) for x in ds.prepare(["train", "test"], col_set="label")] == [len(tr), len(raw)]


def test_dataset_bad_segments_are_named():
    with pytest.raises(DataError, match="segments.test.*holds no rows"):
        DatasetH(SyntheticPanel(n_instruments=3, n_days=30), segments={"test": ["2030-01-01", "2030-02-01"]})
    with pytest.raises(DataError, match="segments.train"):
        DatasetH(SyntheticPanel(n_instruments=3, n_days=30), segments={"train": ["2020-01-01"]})
    with pytest.raises(DataError, match="'NOPE'"):
        DatasetH(SyntheticPanel(n_instruments=3, n_days=30), segments={"t": [None, None]}, feature_cols=["NOPE"])
