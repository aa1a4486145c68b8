"""Accuracy against the local-DP budget: test HR@50 and NDCG@50 for each ``ldp-epsilon``, over seeds.

    python -m benchmarks.privacy_curve --federation ml-100k-mm --strategy pfedrec \
        --epsilons 10 100 1000 --seeds 0 1 2 --out /tmp/exp/privacy-curve \
        --json docs/benchmarks/privacy-curve-ml-100k-mm.json \
        --plot docs/benchmarks/privacy-curve-ml-100k-mm.png

Every point is a real run of the app in one process (``gfmfr compare``'s in-process runs, with
the default run config apart from the noise), its test metrics at the best-validation round;
the point without noise is the strategy alone. Runs whose summary exists under ``--out`` are
reused, so an interrupted curve resumes. ``pop`` and ``central-mf`` (non-federated, same split
and metric code) are drawn as lines. Choosing ``ldp-epsilon`` on this curve would choose on test
metrics: it shows the price of a budget, it is not a tuning tool.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from server_app import comparison
from strategies.config import parse_overrides

METRICS = ("HR@50", "NDCG@50")


def label(strategy: str, epsilon: float | None, clip: float, mechanism: str) -> str:
    """The comparison label of one point (None: no noise)."""
    if epsilon is None:
        return strategy
    return f"{strategy}:ldp-epsilon={epsilon:g} ldp-clip={clip:g} ldp-mechanism='{mechanism}'"


def point(epsilon: float | None, summaries: list[dict]) -> dict:
    """Mean, std and per-seed values of the test metrics of one budget, with its noise scale."""
    row: dict = {"epsilon": epsilon, "seeds": len(summaries),
                 "best_round": [s["best_round"] for s in summaries]}
    for metric in METRICS:
        values = [s["test"][metric] for s in summaries]
        row[metric] = float(np.mean(values))
        row[f"{metric} std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        row[f"{metric} per seed"] = values
    privacy = summaries[0].get("privacy")
    if epsilon is not None and not privacy:
        raise RuntimeError(f"the run with ldp-epsilon={epsilon:g} wrote no privacy budget to its "
                           "summary: local DP was not on, so its point would be a no-noise run")
    if privacy:
        row["noise scale"] = privacy["scale"]
        row["epsilon per round"] = privacy["epsilon_round"]
        row["delta"] = privacy["delta"]
    return row


def plot(points: list[dict], references: dict[str, float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noisy = [p for p in points if p["epsilon"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar([p["epsilon"] for p in noisy], [p["HR@50"] for p in noisy],
                yerr=[p["HR@50 std"] for p in noisy], marker="o", capsize=3, label="local DP")
    styles = {"no noise": ":", "pop": "--", "central-mf": "-."}
    for name, value in [*(("no noise", p["HR@50"]) for p in points if p["epsilon"] is None),
                        *references.items()]:
        ax.axhline(value, linestyle=styles.get(name, ":"), color="grey")
        ax.annotate(name, (min(p["epsilon"] for p in noisy), value), fontsize=8,
                    xytext=(0, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("ldp-epsilon over the run")
    ax.set_ylabel("test HR@50 (best-validation round)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--federation", default="ml-100k-mm", help="dataset (in-process runs)")
    parser.add_argument("--strategy", default="pfedrec")
    parser.add_argument("--epsilons", nargs="+", type=float, default=[10.0, 100.0, 1000.0])
    parser.add_argument("--clip", type=float, default=1.0, help="ldp-clip")
    parser.add_argument("--mechanism", default="gaussian", choices=("gaussian", "laplace"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("-c", "--run-config", default="", help="overrides for every run")
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    if any(e <= 0 for e in args.epsilons):
        parser.error("every --epsilons value must be > 0 (the point without noise is always run)")
    budgets: list[float | None] = [None, *sorted(args.epsilons)]
    labels = {eps: label(args.strategy, eps, args.clip, args.mechanism) for eps in budgets}
    comparison.check_runs(list(labels.values()), args.run_config, args.federation, "inprocess")
    out = args.out.expanduser().resolve()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {(eps, seed): pool.submit(comparison.run, args.federation, labels[eps], seed,
                                            args.run_config, out, "inprocess")
                   for eps in budgets for seed in args.seeds}
        summaries = {key: future.result() for key, future in futures.items()}
    points = [point(eps, [summaries[eps, seed] for seed in args.seeds]) for eps in budgets]
    dataset = parse_overrides(args.run_config).get("dataset", args.federation)
    refs = comparison.references(dataset, args.seeds, args.run_config, out)
    references = {name: float(np.mean([r["test"]["HR@50"] for r in runs]))
                  for name, runs in refs.items()}
    print(f"{args.strategy} on {dataset}, {args.mechanism} local DP, ldp-clip={args.clip:g}, "
          f"seeds {args.seeds}: test HR@50 / NDCG@50 at the best-validation round")
    print("| ldp-epsilon | noise scale | HR@50 | NDCG@50 | best rounds |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for p in points:
        eps = "none" if p["epsilon"] is None else f"{p['epsilon']:g}"
        scale = f"{p['noise scale']:.3g}" if "noise scale" in p else "-"
        print(f"| {eps} | {scale} | {p['HR@50']:.4f} ± {p['HR@50 std']:.4f} | "
              f"{p['NDCG@50']:.4f} ± {p['NDCG@50 std']:.4f} | "
              f"{', '.join(str(r) for r in p['best_round'])} |")
    for name, value in references.items():
        print(f"| {name} *non-federated* | - | {value:.4f} | - | - |")
    title = (f"{args.strategy}, {dataset}, {args.mechanism} local DP (clip {args.clip:g}), "
             f"{len(args.seeds)} seeds")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"title": title, "run_config": args.run_config,
                                         "points": points, "references": references}, indent=1))
    if args.plot:
        plot(points, references, args.plot, title)


if __name__ == "__main__":
    main()
