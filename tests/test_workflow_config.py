"""Bad configs fail fast with the file and the field named."""

import copy
from pathlib import Path

import pytest
import yaml
from _runner_helpers import LINEAR, config

from qrecorder.workflow import ConfigError, init_instance_by_config, load_config
from qrecorder.workflow.run import build_dataset, build_model, check_config


def _write(tmp_path: Path, cfg, name="wf.yaml") -> Path:
    p = tmp_path / name
    p.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return p


def test_good_config_loads_and_builds(tmp_path):
    cfg = load_config(_write(tmp_path, config(LINEAR)))
    check_config(cfg)
    ds = build_dataset(cfg)
    model = build_model(cfg, seed=3)
    assert type(model).__name__ == "LinearModel" and model.seed == 3  # the seed is injected
    assert set(ds.segments) == {"train", "valid", "test"}


def test_malformed_yaml_names_file_and_line(tmp_path):
    p = _write(tmp_path, "task:\n  model: {class: LGBModel\n  dataset: x\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and "malformed YAML at line" in str(e.value)


@pytest.mark.parametrize("mutate, field, text", [
    (lambda c: c["task"].pop("model"), "task.model", "missing"),
    (lambda c: c["task"]["dataset"].pop("class"), "task.dataset", "missing 'class'"),
    (lambda c: c["task"]["record"][1].update(kwargs=[1]), "task.record[1].kwargs", "mapping"),
    (lambda c: c.update(seed="abc"), "seed", "integer"),
    (lambda c: c["task"]["model"].update(klass="x"), "task.model", "unknown key"),
    (lambda c: c.update(requirements="nope.txt"), "requirements", "not found"),
])
def test_structural_errors(tmp_path, mutate, field, text):
    cfg = config(dict(LINEAR))
    mutate(cfg)
    p = _write(tmp_path, cfg)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.field == field and str(p) in str(e.value) and text in str(e.value)


def test_unknown_class_suggests_and_missing_module(tmp_path):
    cfg = load_config(_write(tmp_path, config({"class": "LGBModle", "module_path": "qrecorder.models"})))
    with pytest.raises(ConfigError) as e:
        check_config(cfg)
    assert e.value.field == "task.model.class" and "did you mean LGBModel" in str(e.value)
    cfg = load_config(_write(tmp_path, config({"class": "X", "module_path": "no_such_pkg.models"})))
    with pytest.raises(ConfigError, match="task.model.module_path: module 'no_such_pkg.models' not found"):
        check_config(cfg)
    cfg = load_config(_write(tmp_path, config({"class": "X", "module_path": "missing.py"})))
    with pytest.raises(ConfigError, match="task.model.module_path: module file .*missing.py' not found"):
        check_config(cfg)


def test_constructor_error_and_data_error_name_the_field(tmp_path):
    cfg = load_config(_write(tmp_path, config({"class": "LinearModel", "kwargs": {"estimator": "svm"}})))
    with pytest.raises(ConfigError) as e:
        build_model(cfg, None)
    assert e.value.field == "task.model.kwargs" and "estimator" in str(e.value)
    bad = config(LINEAR)
    bad["task"]["dataset"]["kwargs"]["source"] = {"class": "FilePanel", "kwargs": {"path": "panel.csv"}}
    (tmp_path / "panel.csv").write_text("datetime,instrument,f1\n2020-01-01,A,1.0\n")
    cfg = load_config(_write(tmp_path, bad))
    with pytest.raises(ConfigError) as e:
        build_dataset(cfg)
    assert "panel.csv" in str(e.value) and "'LABEL0'" in str(e.value) and "task.dataset" in str(e.value)


def test_user_class_from_file_relative_to_config(tmp_path):
    (tmp_path / "mine.py").write_text("class M:\n    def __init__(self, k=1):\n        self.k = k\n")
    obj = init_instance_by_config({"class": "M", "module_path": "mine.py", "kwargs": {"k": 5}}, base_dir=tmp_path)
    assert obj.k == 5
    (tmp_path / "broken.py").write_text("import nonexistent_module_xyz\n")
    with pytest.raises(ConfigError, match="broken.py.*ModuleNotFoundError"):
        init_instance_by_config({"class": "M", "module_path": "broken.py"}, base_dir=tmp_path, field="task.model")


def test_constructor_keywords_and_segments_checked_without_building(tmp_path):
    from qrecorder.workflow.run import check_config

    cases = [
        (lambda c: c["task"]["model"]["kwargs"].update(estimatr="ols"), "task.model.kwargs",
         "LinearModel() takes no argument(s) 'estimatr'; did you mean 'estimatr' -> 'estimator'?"),
        (lambda c: c["task"]["record"][1]["kwargs"].update(ana_long_shot=True), "task.record[1].kwargs",
         "'ana_long_shot' -> 'ana_long_short'"),
        (lambda c: c["task"]["record"][2]["kwargs"]["config"]["backtest"].update(benchmark="SH000300"),
         "task.record[2].kwargs", "'SH000300' is not available"),
        (lambda c: c["task"]["dataset"]["kwargs"]["segments"].update(valid=["2020-07-31", "2020-07-01"]),
         "task.dataset.kwargs.segments.valid", "start 2020-07-31 is after end 2020-07-01"),
        (lambda c: c["task"]["dataset"]["kwargs"].pop("segments"), "task.dataset.kwargs",
         "needs argument(s) 'segments'"),
    ]
    for mutate, field, text in cases:
        cfg = copy.deepcopy(config(LINEAR))
        mutate(cfg)
        with pytest.raises(ConfigError) as e:
            check_config(load_config(_write(tmp_path, cfg)))
        assert e.value.field == field and text in str(e.value), str(e.value)
    assert check_config(load_config(_write(tmp_path, config(LINEAR)))) is False  # not a Qlib config


def test_base_config_path_and_sys_rel_path(tmp_path):
    """qrun's BASE_CONFIG_PATH (merged under this file) and sys.rel_path (module search path)."""
    import sys

    from qrecorder.workflow.run import check_config

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "relmodels.py").write_text(
        "class M:\n    def __init__(self, k=1, seed=None):\n        self.k = k\n"
        "    def fit(self, ds):\n        pass\n    def predict(self, ds, segment='test'):\n        pass\n")
    _write(tmp_path, config(LINEAR), name="base.yaml")
    child = {"BASE_CONFIG_PATH": "base.yaml", "sys": {"rel_path": ["lib"]},
             "task": {"model": {"class": "M", "module_path": "relmodels", "kwargs": {"k": 2}}}}
    try:
        cfg = load_config(_write(tmp_path, child, name="child.yaml"))
        assert cfg["task"]["model"] == {"class": "M", "module_path": "relmodels", "kwargs": {"estimator": "ols", "k": 2}}
        assert len(cfg["task"]["record"]) == 3
        with pytest.raises(ConfigError, match="'estimator'"):  # merged kwargs: the base's estimator is unknown to M
            check_config(cfg)
        cfg["task"]["model"]["kwargs"].pop("estimator")
        check_config(cfg)
    finally:
        sys.path[:] = [p for p in sys.path if p != str((tmp_path / "lib").resolve())]
    with pytest.raises(ConfigError, match="BASE_CONFIG_PATH: base config 'nope.yaml' not found"):
        load_config(_write(tmp_path, {"BASE_CONFIG_PATH": "nope.yaml", "task": {}}, name="c2.yaml"))
