"""The benchmark report pools a run split over several comparison tables exactly, and sets a
recipe's round time beside the accuracy it buys."""

import json

import numpy as np
import pytest

from benchmarks import report
from benchmarks.report import METRICS, pooled


def table_row(values: np.ndarray) -> dict:
    row = {"run": "gfmfr", "seeds": len(values)}
    for metric in METRICS:
        row[metric] = values.mean()
        row[f"{metric} std"] = values.std(ddof=1) if len(values) > 1 else 0.0
    return row


def test_pooling_partial_tables_equals_one_table_over_all_seeds():
    values = np.array([0.1453, 0.1601, 0.1549, 0.1702])
    for split in (1, 2, 3):
        merged = pooled([table_row(values[:split]), table_row(values[split:])])
        assert merged["seeds"] == 4
        assert np.isclose(merged["HR@50"], values.mean())
        assert np.isclose(merged["HR@50 std"], values.std(ddof=1))


def test_pooling_one_seed_has_zero_spread():
    merged = pooled([table_row(np.array([0.2]))])
    assert merged["seeds"] == 1 and merged["NDCG@50 std"] == 0.0


def test_recipe_cost_pairs_each_strategy_with_its_accuracy_and_the_references(tmp_path,
                                                                              monkeypatch):
    def rows(seconds: float) -> list[dict]:
        return [{"strategy": "fcf", "seconds_per_round": seconds, "measured": "today"}]

    (tmp_path / "rounds-ml-100k-mm.json").write_text(json.dumps(rows(6.0)))
    (tmp_path / "rounds-ml-100k-mm-spec-recipe.json").write_text(json.dumps(rows(5.0)))
    monkeypatch.setattr(report, "DATA", tmp_path)
    lines = report.recipe_cost_section("ml-100k-mm")
    fcf = next(line for line in lines if line.startswith("| `fcf`"))
    cells = [c.strip() for c in fcf.strip("|").split("|")]
    assert cells[1:4] == ["5.00", "6.00", "+20%"]
    # accuracy read from the committed comparison tables of each recipe
    assert cells[4].startswith("0.171") and cells[5].startswith("0.327")
    assert any(line.startswith("| `pop` *non-federated*") for line in lines)
    assert any(line.startswith("| `central-mf` *non-federated*") for line in lines)


def test_recipe_cost_says_how_to_measure_when_a_side_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "DATA", tmp_path)
    assert "Not measured yet" in report.recipe_cost_section("ml-100k-mm")[0]


def test_new_item_scoring_rows_reach_the_report(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "DATA", tmp_path)
    assert "Not measured yet" in report.new_item_scoring_section()[0]
    (tmp_path / "new-item-scoring-x.json").write_text(json.dumps({
        "dataset": "ml-100k-mm", "seed": 0, "backbone": "ncf", "run": "a run", "held_out": 269,
        "users": 940,
        "rows": [{"scorer": "teacher+content", "weight": 2.0, "content_dims": "64",
                  "HR@10": 0.2414, "HR@50": 0.5798, "NDCG@10": 0.1181}]}))
    lines = report.new_item_scoring_section()
    assert "| teacher+content | 2 | 64 | 0.2414 | 0.5798 | 0.1181 |" in lines
    assert "backbone ncf" in lines[0] and "269 warm items held out, 940 users" in lines[0]


def test_new_item_scoring_holds_out_warm_items_only_and_blends_standardised_scores():
    from benchmarks.new_item_scoring import held_out_items, scorers
    from strategies.content import profile_cosine, standardised

    cold = np.zeros(50, dtype=bool)
    cold[:10] = True
    held = held_out_items(cold, 50, 0.25, seed=0)
    assert held.sum() == 10 and not (held & cold).any()
    assert np.array_equal(held, held_out_items(cold, 50, 0.25, seed=0))
    rng = np.random.default_rng(0)
    teacher, content = rng.normal(size=50).astype(np.float32), rng.normal(size=(50, 4))
    own = np.arange(10, 20)
    out = scorers(teacher, {"64": content}, own, held, [0.0, 2.0])
    assert set(out) == {("teacher", 0.0, "-"), ("content", 0.0, "64"), ("teacher+content", 2.0, "64")}
    blend = out[("teacher+content", 2.0, "64")]
    expected = standardised(teacher, held) + 2 * standardised(profile_cosine(content, own), held)
    assert np.allclose(blend, expected) and blend[held].mean() == pytest.approx(0, abs=1e-5)


@pytest.mark.parametrize("module, argv, words", [
    ("benchmarks.new_item_scoring", ["--run", "{tmp}", "--state-dir", "{tmp}"],
     "summary.json is missing"),
    ("benchmarks.fusion_generalisation", ["--checkpoint", "{tmp}/checkpoint.npz"],
     "checkpoint.npz is missing"),
    ("benchmarks.fusion_stability", ["-c", "lrr=1"], "unknown run-config keys lrr"),
])
def test_benchmark_commands_refuse_bad_input_in_one_line(tmp_path, monkeypatch, module, argv,
                                                         words):
    import importlib
    import sys

    monkeypatch.setattr(sys, "argv", [module, *(a.format(tmp=tmp_path) for a in argv)])
    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(module).main()
    assert words in str(stopped.value.code)
