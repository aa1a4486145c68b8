"""``gfmfr report RUN_DIR... --out DIR``: learning curves (PNG) and a markdown table of runs.

    gfmfr report results/<run-name> --out results/<run-name>/report
    gfmfr report docs/results/ml-100k-mm-cold/runs --out /tmp/cold-report

A RUN_DIR is a finished run's folder (``<results-dir>/<run-name>/``, holding the ``summary.json``
that ``server_app/results.py`` writes) or a folder of such folders (a comparison's ``runs/``).
Each summary has the run's config, its best-validation round with the validation, test (and new
item) metrics there, and every round: seconds, training and distillation loss, and the metrics of
the model after it (round 0 is the untrained model). Written to ``--out``: ``metrics.png``
(validation and test HR@K and NDCG@K per round, new items too when the runs have them),
``training.png`` (training loss, distillation loss when a run has one, seconds per round) and
``runs.md`` (one row per run). All runs are overlaid; runs of one label over seeds
(``<label>-seed<N>``, as ``gfmfr compare`` names them) share a colour. Plots use matplotlib's
Agg backend: no display needed.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

from strategies.protocol import COLD, KS, TEST, VAL

SPLIT_NAMES = {VAL: "validation", TEST: "test", COLD: "new items"}
STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Run:
    label: str
    folder: Path
    summary: dict

    @property
    def group(self) -> str:
        """The label without its ``-seed<N>`` suffix: seeds of one run share a colour."""
        return re.sub(r"-seed\d+$", "", self.label)

    def series(self, key: str, metric: str | None = None) -> tuple[list[int], list[float]]:
        """Rounds and values of a per-round field (``metric`` of a split dict), where recorded."""
        points = []
        for record in self.summary.get("rounds", []):
            value = record.get(key)
            if metric is not None:
                value = (value or {}).get(metric)
            if value is not None:
                points.append((record["round"], float(value)))
        return [p[0] for p in points], [p[1] for p in points]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="a run's folder (holding summary.json) or a folder of run folders")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs and runs.md")
    parser.add_argument("--k", type=int, nargs="+", default=[10, 50],
                        help=f"cut-offs of HR@K and NDCG@K to plot (of {', '.join(map(str, KS))})")
    parser.add_argument("--title", default="", help="title of runs.md and the plots")


def main(args: argparse.Namespace, command: str) -> int:
    """Write the report; bad input raises ValueError before anything is written."""
    wrong = [k for k in args.k if k not in KS]
    if wrong:
        raise ValueError(f"--k {' '.join(map(str, wrong))}: runs record HR@K and NDCG@K for K in "
                         f"{', '.join(map(str, KS))}; choose among those.")
    runs = find_runs(args.runs)
    out = args.out.expanduser()
    out.mkdir(parents=True, exist_ok=True)
    title = args.title or (runs[0].label if len(runs) == 1 else f"{len(runs)} runs")
    plot_metrics(runs, args.k, out / "metrics.png", title)
    plot_training(runs, out / "training.png", title)
    (out / "runs.md").write_text(runs_table(runs, args.k, title, command))
    print(f"gfmfr: {len(runs)} run(s): {out / 'metrics.png'}, {out / 'training.png'}, "
          f"{out / 'runs.md'}")
    return 0


def find_runs(paths: list[Path]) -> list[Run]:
    """Every run under ``paths`` (a run folder or a folder of them), in the order given."""
    runs: list[Run] = []
    for path in paths:
        if not path.is_dir():
            raise ValueError(f"no folder {path}; give a run's folder (<results-dir>/<run-name>, "
                             "holding summary.json) or a folder of run folders.")
        files = ([path / "summary.json"] if (path / "summary.json").is_file()
                 else sorted(path.glob("*/summary.json")))
        if not files:
            unfinished = (path / "checkpoint.npz").is_file()
            raise ValueError(f"{path} holds no summary.json" + (
                " (an unfinished run: continue it with resume=true and the same run-name)"
                if unfinished else "; a run writes one into <results-dir>/<run-name>/ when it "
                "ends: give such a folder, or a folder of them (e.g. a comparison's runs/)."))
        for file in files:
            try:
                summary = json.loads(file.read_text())
            except (OSError, ValueError) as error:
                raise ValueError(f"{file} cannot be read as a run summary ({error}).") from None
            if not isinstance(summary, dict) or "rounds" not in summary:
                raise ValueError(f"{file} is not a run summary (no per-round records).")
            runs.append(Run(file.parent.name, file.parent, summary))
    names = [run.label for run in runs]
    return [run if names.count(run.label) == 1 else
            Run(f"{run.folder.parent.name}/{run.label}", run.folder, run.summary) for run in runs]


def _styles(runs: list[Run]) -> list[dict]:
    """One colour per group (label without -seed<N>), one line style per run within it."""
    groups = list(dict.fromkeys(run.group for run in runs))
    seen: dict[str, int] = {}
    styles = []
    for run in runs:
        index = seen[run.group] = seen.get(run.group, -1) + 1
        styles.append({"color": f"C{groups.index(run.group) % 10}",
                       "ls": STYLES[index % len(STYLES)], "lw": 1.2})
    return styles


def _figure(rows: int, columns: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.8 * rows + 0.8),
                             squeeze=False)
    return plt, fig, axes


def _finish(plt, fig, axes, runs: list[Run], path: Path, title: str) -> None:
    handles, labels = axes[0][0].get_legend_handles_labels()
    for row in axes:
        for ax in row:
            ax.grid(alpha=0.3)
            ax.set_xlabel("round")
    fig.suptitle(title)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(runs), 4), fontsize=8,
               frameon=False)
    legend_inches = 0.3 + 0.18 * -(-len(runs) // 4)  # below the plots, 4 runs a row
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=96)
    plt.close(fig)


def plot_metrics(runs: list[Run], ks: list[int], path: Path, title: str) -> None:
    """Rows: validation, test (and new items); columns: HR@K then NDCG@K for each K."""
    splits = [VAL, TEST] + ([COLD] if any(r.summary.get("cold") for r in runs) else [])
    metrics = [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks]
    plt, fig, axes = _figure(len(splits), len(metrics))
    for run, style in zip(runs, _styles(runs), strict=True):
        best = run.summary.get("best_round")
        for i, split in enumerate(splits):
            for j, metric in enumerate(metrics):
                rounds, values = run.series(split, metric)
                axes[i][j].plot(rounds, values, label=run.label, **style)
                if best in rounds:  # the round the run reports
                    axes[i][j].plot(best, values[rounds.index(best)], "o", ms=3.5,
                                    color=style["color"])
                axes[i][j].set_title(f"{SPLIT_NAMES[split]} {metric}", fontsize=9)
    _finish(plt, fig, axes, runs, path, f"{title} (dot: best-validation round)")


def plot_training(runs: list[Run], path: Path, title: str) -> None:
    """Training loss, distillation loss (when any run distils) and seconds per round."""
    panels = [("train_loss", "training loss")]
    if any(any(run.series("kd_loss")[1]) for run in runs):
        panels.append(("kd_loss", "distillation loss"))
    panels.append(("seconds", "seconds per round"))
    plt, fig, axes = _figure(1, len(panels))
    for run, style in zip(runs, _styles(runs), strict=True):
        for ax, (key, name) in zip(axes[0], panels, strict=True):
            ax.plot(*run.series(key), label=run.label, **style)
            ax.set_title(name, fontsize=9)
    _finish(plt, fig, axes, runs, path, title)


def _cell(metrics: dict | None, name: str) -> str:
    return "-" if not metrics or metrics.get(name) is None else f"{metrics[name]:.4f}"


def runs_table(runs: list[Run], ks: list[int], title: str, command: str) -> str:
    """Markdown: one row per run with its config and metrics at its best-validation round."""
    metrics = [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks]
    cold = any(run.summary.get("cold") for run in runs)
    columns = ["run", "dataset", "strategy", "backbone", "seed", "rounds", "best round",
               "selected by (val)", *(f"test {m}" for m in metrics),
               *((f"new items {m}" for m in metrics) if cold else ()), "s/round", "total s"]
    lines = [f"# {title}", "", f"Command: `{command}`", "",
             "Test metrics at each run's best-validation round (the round its `select-metric` "
             "peaked on validation; a dot in the plots)."
             + (" New items: held-out interactions with items nobody trained on (`cold-items`)."
                if cold else ""), "",
             "![metrics per round](metrics.png)", "", "![training](training.png)", "",
             "| " + " | ".join(columns) + " |", "|" + " --- |" * 4 + " ---: |" * (len(columns) - 4)]
    for run in runs:
        s, config = run.summary, run.summary.get("config", {})
        select = s.get("select_metric", config.get("select-metric", "HR@50"))
        rounds = [r["round"] for r in s["rounds"] if r.get("seconds") is not None]
        seconds = s.get("seconds_per_round")
        cells = [f"`{run.label}`", str(config.get("dataset", "-")),
                 str(config.get("strategy", "-")), str(config.get("backbone") or "-"),
                 str(config.get("seed", "-")), str(max(rounds, default=0)),
                 str(s.get("best_round", "-")), f"{select} {_cell(s.get('val'), select)}",
                 *(_cell(s.get("test"), m) for m in metrics),
                 *((_cell(s.get("cold"), m) for m in metrics) if cold else ()),
                 "-" if seconds is None else f"{seconds:.2f}",
                 "-" if s.get("total_seconds") is None else f"{s['total_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
