"""docs/reliability.md is what issue 25's probes give today, and each probe gives what it should."""

from __future__ import annotations

from benchmarks.reliability import DOC, PROBES, render, run_probe


def test_every_probe_behaves_and_docs_reliability_is_current():
    outcomes = [run_probe(probe) for probe in PROBES]
    unexpected = [f"{o.probe.given}: {o.result}: {o.message}" for o in outcomes if o.unexpected]
    assert not unexpected
    assert {probe.item for probe in PROBES} == {*(f"1.{i}" for i in range(1, 8)), "2"}
    assert DOC.read_text() == render(outcomes), \
        "docs/reliability.md is stale: run python -m benchmarks.reliability"
