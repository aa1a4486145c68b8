"""``gfmfr compare``: strategies and run-config variants over seeds on one dataset, as one table.

    gfmfr compare --federation ml-100k-mm --seeds 0 1 2 \
        --runs fcf pfedrec "gfmfr:backbone='fedrap'" --out docs/results/ml-100k-mm

Each run is a real ``gfmfr run`` (one Ray simulation), or with ``--engine inprocess`` the same
ServerApp and ClientApp in one process (``python -m server_app.inprocess``), ``--jobs`` of them
side by side: on a 2-core machine that finishes a table in about half the time. A run is
``<strategy>`` or ``<strategy>:<extra run-config>``; its label in the table is the whole string.
Every run writes ``<out>/runs/<label>-seed<seed>/summary.json`` (and ``rounds.csv``); a run whose
summary exists is not run again, so an interrupted comparison resumes where it stopped; a run
left with a checkpoint and no summary continues from its checkpoint (``resume=true``: an
in-process run needs ``client-state-dir`` for that, or it is refused with the reason), and
``--finished-only`` runs nothing and tabulates the summaries there (how the tables under
``docs/results/`` are rebuilt). ``<out>/table.md`` (and ``table.csv``) holds mean and standard
deviation over seeds of the test metrics at each run's best-validation round, beside
non-federated references (``server_app/references.py``) stored in ``<out>/references.json`` so
that they are computed once; ``<out>/val_hr50.png`` shows validation HR@50 per round.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from strategies.config import RunConfig, parse_overrides

METRICS = ("HR@10", "HR@20", "HR@50", "NDCG@10", "NDCG@20", "NDCG@50")
NON_FEDERATED = ("pop", "central-mf", "random", "content")  # server_app.references rows
CENTRAL = "central-mf"
COLD_METRICS = ("HR@10", "HR@50", "NDCG@10")  # shown for new items when a run has cold-items
ENGINES = ("simulation", "inprocess")


class RunFailed(RuntimeError):
    """A run of the comparison ended with an error; its output is saved in a log file."""


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")


def summary_file(out: Path, label: str, seed: int) -> Path:
    return out / "runs" / f"{slug(label)}-seed{seed}" / "summary.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--federation", default="ml-100k-mm",
                        help="flower.toml federation (simulation) or dataset (inprocess)")
    parser.add_argument("--runs", nargs="+", required=True,
                        help="strategy or strategy:run-config, e.g. fcf \"gfmfr:num-groups=1\"")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("-c", "--run-config", default="", help="overrides for every run")
    parser.add_argument("--out", type=Path, required=True, help="results folder of the table")
    parser.add_argument("--title", default="")
    parser.add_argument("--engine", choices=ENGINES, default="simulation")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (inprocess engine)")
    parser.add_argument("--finished-only", action="store_true",
                        help="run nothing: tabulate the (run, seed) pairs whose summary exists")
    parser.add_argument("--no-references", action="store_true",
                        help="leave out the non-federated reference rows (as tables made before "
                        "they existed, which have no references.json)")


def main(args: argparse.Namespace, command: str) -> int:
    """Run (or reuse) every (run, seed), add the references, write the table; ``command`` is
    recorded in the table. Bad input raises ValueError (before anything runs)."""
    if not args.finished_only:  # a rebuild reads old summaries, whatever their keys were
        check_runs(args.runs, args.run_config, args.federation, args.engine)
    out = args.out.expanduser().resolve()
    jobs = [(label, seed) for label in args.runs for seed in args.seeds]
    if args.finished_only:
        jobs = finished(out, jobs)
    workers = max(1, args.jobs) if args.engine == "inprocess" else 1
    results: dict[str, list[dict]] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {job: pool.submit(run, args.federation, *job, args.run_config, out,
                                    args.engine) for job in jobs}
        try:
            for (label, seed), future in futures.items():
                summary = future.result()
                results.setdefault(label, []).append(summary)
                print(f"{label} seed {seed}: test HR@50 {summary['test']['HR@50']:.4f} "
                      f"NDCG@50 {summary['test']['NDCG@50']:.4f} (best round "
                      f"{summary['best_round']})", flush=True)
        except RunFailed as error:
            print(f"gfmfr: {error}", file=sys.stderr)
            return 1
    dataset = parse_overrides(args.run_config).get("dataset", args.federation)
    if not args.no_references:
        results.update(references(dataset, sorted({seed for _, seed in jobs}), args.run_config,
                                  out))
    write_outputs(table(results), results, out, args.title or args.federation, command)
    print((out / "table.md").read_text())
    print(f"gfmfr: table in {out / 'table.md'}; learning curves of the runs: gfmfr report "
          f"{out / 'runs'} --out {out / 'report'}")
    return 0


def check_runs(labels: list[str], common: str, federation: str, engine: str) -> None:
    """Every run names a known strategy, known run-config keys and a backbone its strategy
    takes; the federation (simulation) or dataset (inprocess) exists. Raises ValueError."""
    from datasets.registry import dataset_names
    from strategies.registry import STRATEGIES, backbone_name

    known = set(RunConfig().as_dict())
    try:
        shared = parse_overrides(common)
    except ValueError as error:
        raise ValueError(f"cannot parse --run-config {common!r} ({error}); write it as "
                         "\"key=value key2='text'\".") from None
    for label in labels:
        strategy, _, extra = label.partition(":")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} in --runs {label!r}; choose from "
                             f"{', '.join(STRATEGIES)} (optionally strategy:run-config).")
        try:
            overrides = {**shared, **parse_overrides(extra), "strategy": strategy}
        except ValueError as error:
            raise ValueError(f"cannot parse the run config of --runs {label!r} ({error}); write "
                             "it as \"strategy:key=value key2='text'\".") from None
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown run-config keys {', '.join(unknown)} in run {label!r}; "
                             "the keys are listed in README.md (Run-config keys).")
        backbone_name(RunConfig.from_run_config(overrides))
    if engine == "inprocess":
        dataset = shared.get("dataset", federation)
        if dataset not in dataset_names():
            raise ValueError(f"unknown dataset {dataset!r} (the inprocess engine runs "
                             f"--federation as a dataset); choose from "
                             f"{', '.join(dataset_names())}.")
    else:
        from server_app import federations as fz

        fz.load_flower_toml(fz.FLOWER_TOML).federation(federation)


def finished(out: Path, jobs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The jobs whose summary exists (``--finished-only``); say which are left out."""
    if not out.is_dir():
        raise ValueError(f"no results folder {out}; run the comparison without "
                         "--finished-only to make it, or give --out an existing one.")
    missing = [job for job in jobs if not summary_file(out, *job).is_file()]
    for label, seed in missing:
        print(f"{label} seed {seed}: not run yet, left out of the table")
    if len(missing) == len(jobs):
        raise ValueError(f"{out / 'runs'} holds no summary.json of these runs and seeds; run "
                         "without --finished-only to run them, or match --runs and --seeds to "
                         "the folders there.")
    return [job for job in jobs if job not in missing]


def run(federation: str, label: str, seed: int, common: str, out: Path, engine: str) -> dict:
    """Run one (label, seed) unless its summary exists; return the summary."""
    strategy, _, extra = label.partition(":")
    name = f"{slug(label)}-seed{seed}"
    summary_path = summary_file(out, label, seed)
    if not summary_path.is_file():
        overrides = (f"strategy='{strategy}' seed={seed} run-name='{name}' "
                     f"results-dir='{out / 'runs'}' {common} {extra}")
        if ((summary_path.parent / "checkpoint.npz").is_file()
                and "resume" not in parse_overrides(overrides)):
            print(f"{label} seed {seed}: continuing from its checkpoint", flush=True)
            overrides += " resume=true"
        if engine == "simulation":
            command = ["-m", "server_app.cli", "run", federation, "-c", overrides]
        else:
            dataset = f"dataset='{federation}' " if "dataset=" not in overrides else ""
            command = ["-m", "server_app.inprocess", "-c", dataset + overrides]
        done = subprocess.run([sys.executable, *command], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0 or not summary_path.is_file():
            log = out / "runs" / f"{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(done.stdout + done.stderr)
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            raise RunFailed(f"{label} seed {seed} failed (exit code {done.returncode}): "
                            f"{lines[-1].strip() if lines else 'no output'}; its output is in "
                            f"{log}")
    return json.loads(summary_path.read_text())


def references(dataset: str, seeds: list[int], common: str, out: Path) -> dict[str, list[dict]]:
    """``pop`` and ``central-mf`` (with cold items also ``random`` and ``content``) on the runs'
    own split and metrics, one result per seed; stored in ``<out>/references.json`` so that a
    resumed or rebuilt comparison reuses them (only missing ones load the dataset)."""
    from datasets.registry import load_split
    from server_app.references import REFERENCES, cold_references

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
                print(f"reference {name} seed {seed}: computing (once; kept in {path})",
                      flush=True)
                split = load_split(dataset, cfg.data_path(), cfg.cache_path(), seed,
                                   cfg.synthetic_spec(), cfg.cold_items)
                result = compute(split, seed)
                stored[key] = {"test": result["test"], "val": result["val"],
                               "best_round": result["best_epoch"], "seconds_per_round": None,
                               **({"cold": result["cold"]} if "cold" in result else {})}
                out.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(stored, indent=1))
    return {name: [stored[f"{name}-seed{seed}"] for seed in seeds] for name in names}


def _mean_std(values: list[float]) -> tuple[float, float]:
    array = np.array(values)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def table(results: dict[str, list[dict]]) -> list[dict]:
    """One row per run label: mean and std over seeds of the test (and cold) metrics."""
    rows = []
    for label, summaries in results.items():
        row = {"run": label, "seeds": len(summaries)}
        for metric in METRICS:
            row[metric], row[f"{metric} std"] = _mean_std([s["test"][metric] for s in summaries])
        if all(s.get("cold") for s in summaries):  # new items (cold-items > 0)
            for metric in COLD_METRICS:
                row[f"cold {metric}"], row[f"cold {metric} std"] = _mean_std(
                    [s["cold"][metric] for s in summaries])
        row["best round"] = float(np.mean([s["best_round"] for s in summaries]))
        seconds = [s["seconds_per_round"] for s in summaries if s.get("seconds_per_round")]
        row["s/round"] = float(np.mean(seconds)) if seconds else float("nan")
        rows.append(row)
    central = next((r["HR@50"] for r in rows if r["run"] == CENTRAL), None)
    for row in rows:  # no column without the reference (--no-references)
        if central is not None:
            row["HR@50 / central"] = row["HR@50"] / central if central else float("nan")
    return rows


def write_outputs(rows: list[dict], results: dict[str, list[dict]], out: Path, title: str,
                  command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    cold = [f"cold {m}" for m in COLD_METRICS if any(f"cold {m}" in row for row in rows)]
    ratio = ["HR@50 / central"] if any("HR@50 / central" in row for row in rows) else []
    with (out / "table.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# {title}", "", f"Command: `{command}`", "",
             "Test metrics at each run's best-validation round (HR@50), mean ± std over seeds "
             "(a single seed shows its value alone).",
             "s/round: wall time per round of that engine (not a speed benchmark).",
             *(["Rows marked *non-federated* are references on the same split and metric code "
                "(`server_app/references.py`): `pop` ranks by training counts, `central-mf` is "
                "one MF (BCE, 4 negatives, d = 64, item bias, Adam) trained on all users' data, "
                "its epoch chosen on validation. HR@50 / central: the row's HR@50 over "
                "central-mf's."] if ratio else []),
             *(["New items (cold start, `cold-items`): each user's held-out interactions with "
                "new items, ranked among the new items the user did not interact with (`cold` "
                "columns). `random` ranks at random; `content` ranks by the cosine of each "
                "item's content features (text, image) to the user's mean over its training "
                "items."] if cold else []),
             "",
             "| run | seeds | " + " | ".join((*METRICS, *cold, *ratio))
             + " | best round | s/round |",
             "| --- |" + " ---: |" * (len(METRICS) + len(cold) + len(ratio) + 3)]
    lines += [_table_line(row, cold) for row in rows]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot_curves(results, out / "val_hr50.png", title)


def _table_line(row: dict, cold: list[str]) -> str:
    one = row["seeds"] == 1  # no spread to show
    cells = [("-" if m not in row else f"{row[m]:.4f}" if one
              else f"{row[m]:.4f} ± {row[m + ' std']:.4f}") for m in METRICS + tuple(cold)]
    label = f"`{row['run']}`" + (" *non-federated*" if row["run"] in NON_FEDERATED else "")
    if "HR@50 / central" in row:
        cells.append(f"{row['HR@50 / central']:.2f}")
    return (f"| {label} | {row['seeds']} | " + " | ".join(cells)
            + f" | {row['best round']:.1f} | "
            + ("-" if np.isnan(row["s/round"]) else f"{row['s/round']:.1f}") + " |")


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
