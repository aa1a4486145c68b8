"""Compare strategies over several seeds on one dataset: one table (CSV + Markdown) and curves.

    python -m benchmarks.compare --federation ml-100k-mm --seeds 0 1 2 \
        --runs fedncf fedrap pfedrec "gfmfr:backbone='fedrap'" --out docs/results/ml-100k-mm

Each run is a real `gfmfr run` (one Ray simulation), or with ``--engine inprocess`` the same
ServerApp and ClientApp in one process (``benchmarks.run_once``), ``--jobs`` of them side by side:
on a 2-core machine that finishes a table in about half the time. A run is ``<strategy>`` or
``<strategy>:<extra run-config>``; its label in the table is the whole string. The table holds
mean and standard deviation over seeds of the test metrics at each run's best-validation round;
the plot shows validation HR@50 per round (mean over seeds). Finished runs are reused, so an
interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from strategies.config import parse_overrides

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("HR@10", "HR@20", "HR@50", "NDCG@10", "NDCG@20", "NDCG@50")
NON_FEDERATED = ("pop", "central-mf", "random", "content")  # benchmarks.references rows
CENTRAL = "central-mf"
COLD_METRICS = ("HR@10", "HR@50", "NDCG@10")  # shown for new items when a run has cold-items


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")


def summary_file(out: Path, label: str, seed: int) -> Path:
    return out / "runs" / f"{slug(label)}-seed{seed}" / "summary.json"


def run(federation: str, label: str, seed: int, common: str, out: Path, engine: str) -> dict:
    """Run one (label, seed) unless its summary exists; return the summary."""
    strategy, _, extra = label.partition(":")
    name = f"{slug(label)}-seed{seed}"
    summary_path = summary_file(out, label, seed)
    if not summary_path.is_file():
        overrides = (f"strategy='{strategy}' seed={seed} run-name='{name}' "
                     f"results-dir='{out / 'runs'}' {common} {extra}")
        if engine == "simulation":
            command = ["-m", "server_app.cli", "run", federation, "-c", overrides]
        else:
            dataset = f"dataset='{federation}' " if "dataset=" not in overrides else ""
            command = ["-m", "benchmarks.run_once", "-c", dataset + overrides]
        done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{label} seed {seed} failed:\n{done.stdout[-3000:]}"
                               f"{done.stderr[-3000:]}")
    return json.loads(summary_path.read_text())


def references(dataset: str, seeds: list[int], common: str, out: Path) -> dict[str, list[dict]]:
    """``pop`` and ``central-mf`` on the runs' own split and metrics, one result per seed;
    stored in ``<out>/references.json`` so a resumed comparison does not retrain them."""
    from benchmarks.references import REFERENCES, cold_references
    from datasets.registry import load_split
    from strategies.config import RunConfig, parse_overrides

    path = out / "references.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    names = list(REFERENCES)
    for seed in seeds:
        cfg = RunConfig.from_run_config({**parse_overrides(common), "dataset": dataset,
                                         "seed": seed})
        # new items (cold start): also random ranking and content alone
        computes = {**REFERENCES, **(cold_references(cfg) if cfg.cold_items else {})}
        names = list(computes)
        for name, compute in computes.items():
            key = f"{name}-seed{seed}"
            if key not in stored:
                split = load_split(dataset, cfg.data_path(), cfg.cache_path(), seed,
                                   cfg.synthetic_spec(), cfg.cold_items)
                result = compute(split, seed)
                stored[key] = {"test": result["test"], "val": result["val"],
                               "best_round": result["best_epoch"], "seconds_per_round": None,
                               **({"cold": result["cold"]} if "cold" in result else {})}
                out.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(stored, indent=1))
    return {name: [stored[f"{name}-seed{seed}"] for seed in seeds] for name in names}


def table(results: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for label, summaries in results.items():
        row = {"run": label, "seeds": len(summaries)}
        for metric in METRICS:
            values = np.array([s["test"][metric] for s in summaries])
            row[metric] = float(values.mean())
            row[f"{metric} std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        if all(s.get("cold") for s in summaries):  # new items (cold-items > 0)
            for metric in COLD_METRICS:
                values = np.array([s["cold"][metric] for s in summaries])
                row[f"cold {metric}"] = float(values.mean())
                row[f"cold {metric} std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        row["best round"] = float(np.mean([s["best_round"] for s in summaries]))
        seconds = [s["seconds_per_round"] for s in summaries if s.get("seconds_per_round")]
        row["s/round"] = float(np.mean(seconds)) if seconds else float("nan")
        rows.append(row)
    central = next((r["HR@50"] for r in rows if r["run"] == CENTRAL), None)
    for row in rows:
        row["HR@50 / central"] = row["HR@50"] / central if central else float("nan")
    return rows


def write_outputs(rows: list[dict], results: dict[str, list[dict]], out: Path, title: str,
                  command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    cold = [f"cold {m}" for m in COLD_METRICS if any(f"cold {m}" in row for row in rows)]
    with (out / "table.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# {title}", "", f"Command: `{command}`", "",
             "Test metrics at each run's best-validation round (HR@50), mean ± std over seeds "
             "(a single seed shows its value alone).",
             "s/round: wall time per round of that engine (not a speed benchmark).",
             "Rows marked *non-federated* are references on the same split and metric code "
             "(`benchmarks/references.py`): `pop` ranks by training counts, `central-mf` is one "
             "MF (BCE, 4 negatives, d = 64, item bias, Adam) trained on all users' data, its "
             "epoch chosen on validation. HR@50 / central: the row's HR@50 over central-mf's.",
             *(["New items (cold start, `cold-items`): each user's held-out interactions with "
                "new items, ranked among the new items the user did not interact with (`cold` "
                "columns). `random` ranks at random; `content` ranks by the cosine of each "
                "item's content features (text, image) to the user's mean over its training "
                "items."] if cold else []),
             "",
             "| run | seeds | " + " | ".join(METRICS + tuple(cold))
             + " | HR@50 / central | best round | s/round |",
             "| --- |" + " ---: |" * (len(METRICS) + len(cold) + 4)]
    for row in rows:
        one = row["seeds"] == 1  # no spread to show
        cells = [("-" if m not in row else f"{row[m]:.4f}" if one
                  else f"{row[m]:.4f} ± {row[m + ' std']:.4f}") for m in METRICS + tuple(cold)]
        label = f"`{row['run']}`" + (" *non-federated*" if row["run"] in NON_FEDERATED else "")
        lines.append(f"| {label} | {row['seeds']} | " + " | ".join(cells)
                     + f" | {row['HR@50 / central']:.2f} | {row['best round']:.1f} | "
                     + ("-" if np.isnan(row["s/round"]) else f"{row['s/round']:.1f}") + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot_curves(results, out / "val_hr50.png", title)


def plot_curves(results: dict[str, list[dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, summaries in results.items():
        if label in NON_FEDERATED:
            ax.axhline(np.mean([s["val"]["HR@50"] for s in summaries]), ls="--", lw=1,
                       color="grey" if label == "pop" else "black", label=f"{label} (non-federated)")
            continue
        curves = [{r["round"]: r["val"]["HR@50"] for r in s["rounds"] if r.get("val")}
                  for s in summaries]
        rounds = sorted(set.intersection(*(set(c) for c in curves)))
        mean = [np.mean([c[r] for c in curves]) for r in rounds]
        ax.plot(rounds, mean, label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("validation HR@50 (mean over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--federation", default="ml-100k-mm")
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--run-config", default="", help="overrides for every run")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="")
    parser.add_argument("--engine", choices=("simulation", "inprocess"), default="simulation")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (inprocess engine)")
    parser.add_argument("--finished-only", action="store_true",
                        help="run nothing: tabulate the (run, seed) pairs whose summary exists")
    args = parser.parse_args()
    jobs = [(label, seed) for label in args.runs for seed in args.seeds]
    if args.finished_only:
        missing = [job for job in jobs if not summary_file(args.out, *job).is_file()]
        for label, seed in missing:
            print(f"{label} seed {seed}: not run yet, left out of the table")
        jobs = [job for job in jobs if job not in missing]
        if not jobs:
            raise SystemExit(f"no finished runs under {args.out / 'runs'}")
    workers = args.jobs if args.engine == "inprocess" else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {job: pool.submit(run, args.federation, *job, args.run_config, args.out,
                                    args.engine) for job in jobs}
        results: dict[str, list[dict]] = {}
        for (label, seed), future in futures.items():
            summary = future.result()
            results.setdefault(label, []).append(summary)
            print(f"{label} seed {seed}: test HR@50 {summary['test']['HR@50']:.4f} "
                  f"NDCG@50 {summary['test']['NDCG@50']:.4f} (best round "
                  f"{summary['best_round']})", flush=True)
    dataset = parse_overrides(args.run_config).get("dataset", args.federation)
    results.update(references(dataset, sorted({seed for _, seed in jobs}), args.run_config,
                              args.out))
    command = "python -m benchmarks.compare " + shlex.join(sys.argv[1:])
    rows = table(results)
    write_outputs(rows, results, args.out, args.title or f"{args.federation}", command)
    print((args.out / "table.md").read_text())


if __name__ == "__main__":
    main()
