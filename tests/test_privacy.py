"""Clipping and local DP noise against hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from strategies.privacy import add_noise, budget_of, clip_update, plan_budget, update_norm


def test_update_norm_and_clipping():
    base = {"a": np.zeros(2, np.float32), "b": np.ones(1, np.float32)}
    upload = {"a": np.array([3.0, 0.0], np.float32), "b": np.array([5.0], np.float32)}
    assert update_norm(upload, base) == pytest.approx(5.0)  # sqrt(9 + 16)
    clipped = clip_update(upload, base, 1.0)
    assert update_norm(clipped, base) == pytest.approx(1.0)
    assert clipped["a"][0] == pytest.approx(0.6) and clipped["b"][0] == pytest.approx(1.8)
    assert clip_update(upload, base, 10.0) is upload and clip_update(upload, base, 0) is upload


@pytest.mark.parametrize("mechanism, std", [("laplace", np.sqrt(2) * 0.5), ("gaussian", 0.5)])
def test_noise_has_the_configured_scale(mechanism, std):
    arrays = {"E": np.zeros((400, 50), np.float32)}
    noisy = add_noise(arrays, mechanism, 0.5, np.random.default_rng(0))["E"]
    assert noisy.dtype == np.float32 and abs(noisy.mean()) < 0.01
    assert noisy.std() == pytest.approx(std, rel=0.03)
    assert add_noise(arrays, mechanism, 0.0, np.random.default_rng(0)) is arrays


def test_laplace_clips_in_l1_and_spends_its_budget_by_basic_composition():
    base = {"a": np.zeros(3, np.float32)}
    upload = {"a": np.array([3.0, -4.0, 1.0], np.float32)}
    assert update_norm(upload, base, ord=1) == pytest.approx(8.0)
    assert update_norm(clip_update(upload, base, 2.0, ord=1), base, ord=1) == pytest.approx(2.0)
    budget = plan_budget("laplace", 5.0, 1e-5, 2.0, 10)
    # sensitivity 2 * clip = 4; epsilon 0.5 per round; b = 4 / 0.5
    assert (budget.scale, budget.epsilon_round, budget.delta) == pytest.approx((8.0, 0.5, 0.0))
    assert budget_of("laplace", 8.0, 2.0, 1e-5, 10).epsilon == pytest.approx(5.0)


def test_gaussian_budget_is_calibrated_by_the_accountant_and_beats_the_classic_bound():
    budget = plan_budget("gaussian", 4.0, 1e-5, 1.0, 20)
    assert budget.epsilon == pytest.approx(4.0, rel=1e-3)
    again = budget_of("gaussian", budget.scale, 1.0, 1e-5, 20)
    assert again.epsilon == pytest.approx(4.0, rel=1e-3)
    assert plan_budget("gaussian", 8.0, 1e-5, 1.0, 20).scale < budget.scale  # more budget, less noise
    # one round at epsilon 0.9: the classic sigma = sensitivity * sqrt(2 ln(1.25/delta)) / epsilon
    # (Flower's LocalDpMod) is an upper bound the accountant improves on
    one = plan_budget("gaussian", 0.9, 1e-5, 1.0, 1)
    assert one.scale < 2.0 * np.sqrt(2 * np.log(1.25 / 1e-5)) / 0.9
    with pytest.raises(ValueError, match="ldp-clip"):
        plan_budget("gaussian", 1.0, 1e-5, 0.0, 5)


def test_the_server_side_attack_recovers_training_items_and_local_dp_or_secagg_stop_it(tmp_path):
    """benchmarks.attack is a real attack: on plain uploads it finds users' training items."""
    from benchmarks.attack import attack

    base = {"dataset": "synthetic", "strategy": "pfedrec", "synthetic-users": 40,
            "num-server-rounds": 3, "eval-every": 3, "results-dir": str(tmp_path),
            "cache-dir": str(tmp_path / "cache")}
    plain = attack(base)
    assert plain["f1"] > 0.8 and plain["users"] == 40
    noised = attack({**base, "ldp-epsilon": 8.0, "ldp-clip": 1.0, "ldp-mechanism": "gaussian"})
    assert noised["f1"] < 0.3
    secure = attack({**base, "secure-aggregation": True})
    assert secure["f1"] < 0.3 and secure["users"] == 40


def test_privacy_curve_runs_each_budget_and_refuses_a_point_without_noise(tmp_path, monkeypatch):
    """benchmarks.privacy_curve: real runs per budget, each noisy point with its noise scale."""
    import sys

    from benchmarks import privacy_curve

    out = tmp_path / "curve"
    monkeypatch.setattr(sys, "argv", [
        "privacy_curve", "--federation", "synthetic", "--epsilons", "1", "1000", "--seeds", "0",
        "--jobs", "1", "--out", str(out), "--json", str(tmp_path / "curve.json"),
        "--plot", str(tmp_path / "curve.png"), "-c",
        f"num-server-rounds=2 cache-dir='{tmp_path / 'cache'}'"])
    privacy_curve.main()
    result = json.loads((tmp_path / "curve.json").read_text())
    points = {p["epsilon"]: p for p in result["points"]}
    assert set(points) == {None, 1.0, 1000.0} and "noise scale" not in points[None]
    assert points[1.0]["noise scale"] > points[1000.0]["noise scale"] > 0
    assert {"pop", "central-mf"} <= set(result["references"])
    assert (tmp_path / "curve.png").stat().st_size > 0
    summary = json.loads((out / "runs" / "pfedrec-seed0" / "summary.json").read_text())
    with pytest.raises(RuntimeError, match="local DP was not on"):
        privacy_curve.point(10.0, [summary])
