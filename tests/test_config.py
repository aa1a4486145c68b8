"""The run config: pyproject defaults = dataclass defaults, coercion, clear errors, README keys."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields

import pytest

from strategies.config import RunConfig
from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEFAULTS = PYPROJECT["tool"]["flwr"]["app"]["config"]


def test_pyproject_defaults_equal_dataclass_defaults():
    assert RunConfig.from_run_config(DEFAULTS) == RunConfig()
    keys = {f.name.replace("_", "-") for f in fields(RunConfig) if f.name != "extra"}
    assert set(DEFAULTS) == keys


def test_empty_run_config_uses_defaults():
    assert RunConfig.from_run_config({}) == RunConfig()


def test_coercion_of_untyped_overrides():
    cfg = RunConfig.from_run_config({"lr": 1, "seed": 2.0, "grouping-pca": "false"})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.seed == 2
    assert cfg.grouping_pca is False


@pytest.mark.parametrize("value, noise, rows", [
    ("auto", 0.0, True), ("auto", 0.1, False), (True, 0.0, True), ("true", 0.0, True),
    (False, 0.0, False), ("False", 0.1, False),
])
def test_upload_rows_auto_only_without_ldp_noise(value, noise, rows):
    cfg = RunConfig.from_run_config({"upload-rows": value, "ldp-noise": noise})
    assert cfg.sends_rows is rows


@pytest.mark.parametrize("overrides, words", [
    ({"lr": -0.1}, "lr must be > 0"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"seed": -1}, "seed must be >= 0"),
    ({"num-server-rounds": True}, "num-server-rounds must be an integer, got True"),
    ({"fusion-lr": float("inf")}, "fusion-lr must be a finite number"),
    ({"fusion-dropout": 1.0}, "fusion-dropout must be in [0, 1)"),
    ({"server-lr": float("nan")}, "server-lr must be a finite number"),
    ({"ldp-noise": "inf"}, "ldp-noise must be a finite number"),
    ({"fusion": "concat"}, "fusion must be one of mlp, sum, gate, attention, moe"),
    ({"cold-content-weight": -1.0}, "cold-content-weight must be >= 0"),
    ({"select-metric": "AUC"}, "select-metric must be one of"),
    ({"fraction-train": 0}, "fraction-train must be in (0, 1]"),
    ({"upload-rows": "some"}, "upload-rows must be one of auto, true, false"),
    ({"dense-weights": "equal"}, "dense-weights must be one of examples, uniform"),
    ({"kd-start": 0}, "kd-start must be >= 1"),
])
def test_bad_values_fail_with_the_key(overrides, words):
    with pytest.raises(ValueError) as error:
        RunConfig.from_run_config(overrides)
    assert words in str(error.value)


SPEC_SGD = {"optimizer": "sgd", "item-lr": 16.82, "personal-lr": 16.82}  # the spec's rates


@pytest.mark.parametrize("overrides, words", [
    ({"weight-decay": 0.001}, "FCF collapsed to validation HR@50 0.004 at weight-decay=0.001"),
    ({"weight-decay": 0.01, "lr": 0.0001}, "optimizer='adam' is destructive"),  # lr cancels out
    ({**SPEC_SGD, "weight-decay": 0.01}, "removes 17% of every weight per step"),
    ({"optimizer": "sgd", "lr": 0.5, "weight-decay": 0.3}, "use weight-decay <= 0.2"),
    ({"optimizer": "sgd", "mlp-lr": 0.0, "lr": 1.0, "weight-decay": 0.2}, "lr * weight-decay"),
])
def test_destructive_weight_decay_is_refused(overrides, words):
    with pytest.raises(ValueError, match="bad run config: weight-decay=") as error:
        RunConfig.from_run_config(overrides)
    assert words in str(error.value)


@pytest.mark.parametrize("overrides", [
    {"weight-decay": 0.0005},  # adam below the collapse
    {**SPEC_SGD, "weight-decay": 0.0001},  # the spec's recipe: 16.82 x 0.0001 = 0.0017 a step
    {"optimizer": "sgd", "weight-decay": 10.0},  # lr 0.01: 10% a step, at the bound
])
def test_weight_decay_within_the_bound_is_accepted(overrides):
    assert RunConfig.from_run_config(overrides).weight_decay == overrides["weight-decay"]


def test_readme_documents_every_key():
    readme = (ROOT / "README.md").read_text()
    readme = readme.split("## Run-config keys", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", readme, flags=re.M))
    assert documented == set(DEFAULTS)


def test_server_step_falls_on_a_cosine_to_server_lr_end():
    from strategies.config import RunConfig

    constant = RunConfig(server_lr=3.0, num_server_rounds=50)
    assert constant.server_lr_at(1) == constant.server_lr_at(50) == 3.0
    cosine = RunConfig(server_lr=10.0, server_lr_end=1.0, num_server_rounds=51)
    steps = [cosine.server_lr_at(r) for r in range(1, 52)]
    assert steps[0] == 10.0 and abs(steps[25] - 5.5) < 1e-9 and abs(steps[-1] - 1.0) < 1e-9
    assert all(a > b for a, b in zip(steps, steps[1:], strict=False))


def test_local_rates_fall_on_a_cosine_to_lr_decay_to():
    from strategies.config import RunConfig

    assert RunConfig(lr_decay_to=1.0, num_server_rounds=50).lr_scale_at(50) == 1.0
    decay = RunConfig(lr_decay_to=0.1, num_server_rounds=11)
    assert decay.lr_scale_at(1) == 1.0 and abs(decay.lr_scale_at(11) - 0.1) < 1e-12
    with pytest.raises(ValueError, match="lr-decay-to must be in"):
        RunConfig.from_run_config({"lr-decay-to": 0.0})
