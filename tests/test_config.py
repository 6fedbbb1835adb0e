import pytest
from train_helpers import REPO

from fashionfail.core.config import (
    SECTIONS,
    ConfigError,
    TrainConfig,
    load_params,
    load_section,
    parse_section,
)


def test_every_section_of_params_yaml_is_valid():
    params = load_params(REPO / "params.yaml")
    assert set(params) == set(SECTIONS)
    for name in SECTIONS:
        load_section(name, REPO / "params.yaml")


def _train_values():
    return load_section("train_facere", REPO / "params.yaml").model_dump()


def test_unknown_key_is_named():
    values = {**_train_values(), "max_epoch": 3}
    with pytest.raises(ConfigError, match=r"x:train_facere\.max_epoch: Extra inputs"):
        parse_section(TrainConfig, values, "x:train_facere")


def test_missing_key_is_named():
    values = _train_values()
    del values["lr"]
    with pytest.raises(ConfigError, match=r"\.lr: Field required"):
        parse_section(TrainConfig, values, "x")


def test_type_change_is_rejected():
    # strict: "8" (a string from a careless -S override) is not silently an int
    with pytest.raises(ConfigError, match="batch_size"):
        parse_section(TrainConfig, {**_train_values(), "batch_size": "8"}, "x")
    with pytest.raises(ConfigError, match="shuffle"):
        parse_section(TrainConfig, {**_train_values(), "shuffle": "yes"}, "x")


def test_missing_section_and_file(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("split: {val_fraction: 0.25, seed: 42}\n")
    with pytest.raises(ConfigError, match="missing section 'train_facere'"):
        load_section("train_facere", p)
    with pytest.raises(ConfigError, match="not found"):
        load_section("split", tmp_path / "nope.yaml")
