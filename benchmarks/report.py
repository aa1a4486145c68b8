"""Write docs/benchmarks.md (and its plots) from the JSON the benchmark commands saved.

    python -m benchmarks.report

Reads ``docs/benchmarks/*.json`` (written by ``benchmarks.rounds``, ``benchmarks.communication``
and ``benchmarks.scale`` with ``--json``) and the comparison tables under ``docs/results/``;
sections whose inputs are missing say which command produces them.
"""

from __future__ import annotations

import csv
import json
import platform
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "benchmarks"
OUT = ROOT / "docs" / "benchmarks.md"
METRICS = ("HR@10", "HR@20", "HR@50", "NDCG@10", "NDCG@20", "NDCG@50")


def load(name: str) -> list[dict] | None:
    path = DATA / name
    return json.loads(path.read_text()) if path.is_file() else None


def machine() -> str:
    cores = len(__import__("os").sched_getaffinity(0))
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return (f"{cores} CPU cores, {memory:.0f} GB memory, no GPU; Python "
            f"{platform.python_version()}, {platform.machine()}")


def rounds_section(name: str, title: str) -> list[str]:
    rows = load(name)
    if rows is None:
        return [f"_Not measured yet: `python -m benchmarks.rounds ... --json docs/benchmarks/{name}`._"]
    lines = ["| strategy | Ray | ClientApps | s/round | round 1 | client train CPU s | "
             "client eval CPU s | server s | messaging s | peak memory GB | failed replies | "
             "measured |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        cpu = r.get("client_cpu_s", {})
        # rows written before client_apps was recorded ran 2 (flower.toml's ray-cpus then), and
        # before ray was recorded every row ran on this machine's own Ray
        lines.append(f"| `{r['strategy']}` | {r.get('ray', 'local')} | {r.get('client_apps', 2)} | "
                     f"{r['seconds_per_round']:.2f} | "
                     f"{r['first_round_s']:.2f} | {cpu.get('train-seconds', 0):.1f} | "
                     f"{cpu.get('eval-seconds', 0):.1f} | "
                     + " + ".join(f"{v:.2f} {k}" for k, v in r["server_phases_s"].items())
                     + f" | {r.get('messaging_s', float('nan')):.2f} | {r['peak_rss_gb']:.1f} | "
                     f"{r.get('failed_clients', 0)} | {r.get('measured', '')} |")
    return [f"### {title}", "", *lines, ""]


def recipe_cost_section(dataset: str = "ml-100k-mm") -> list[str]:
    """Round time of today's training recipe against the spec's on the same code, beside the
    test HR@50 each recipe reaches (3-seed comparison tables), so the time is read with what it
    buys (issue 21's rule: not more than 10% slower unless the accuracy bought is shown)."""
    spec, ours = (load(f"rounds-{dataset}{suffix}.json") for suffix in ("-spec-recipe", ""))
    if spec is None or ours is None:
        return [f"_Not measured yet: `python -m benchmarks.rounds ... --run-config \"<the spec's "
                f"recipe>\" --json docs/benchmarks/rounds-{dataset}-spec-recipe.json`._", ""]
    from strategies.registry import STRATEGIES

    accuracy = {False: result_rows(dataset, recipe=False), True: result_rows(dataset, recipe=True)}
    ours_by = {r["strategy"]: r for r in ours}
    # benchmarks.rounds runs GFMFR on its default backbone, which the tables name
    labels = {"gfmfr": f"gfmfr:backbone='{STRATEGIES['gfmfr'].default_backbone}'"}

    def hr(recipe: bool, label: str) -> str:
        row = accuracy[recipe].get(label)
        return "-" if row is None else f"{row['HR@50']:.3f} ± {row['HR@50 std']:.3f} ({row['seeds']})"

    lines = ["| strategy | s/round, spec's recipe | s/round, training recipe | change | test HR@50, "
             "spec's recipe (seeds) | test HR@50, training recipe (seeds) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for old in spec:
        new = ours_by.get(old["strategy"])
        if new is None:
            continue
        label = labels.get(old["strategy"], old["strategy"])
        change = 100 * (new["seconds_per_round"] / old["seconds_per_round"] - 1)
        lines.append(f"| `{old['strategy']}` | {old['seconds_per_round']:.2f} | "
                     f"{new['seconds_per_round']:.2f} | {change:+.0f}% | {hr(False, label)} | "
                     f"{hr(True, label)} |")
    for name in ("pop", "central-mf"):  # the same split under both recipes
        row = accuracy[True].get(name)
        if row is not None:
            lines.append(f"| `{name}` *non-federated* | - | - | - | {row['HR@50']:.3f} | "
                         f"{row['HR@50']:.3f} |")
    measured = sorted({r.get("measured", "") for r in spec + ours})
    return [*lines, "", f"Measured: {'; '.join(measured)}.", "",
            "Where the time goes: local Adam steps instead of hand-written SGD (every strategy), "
            "and for the NCF backbones (`fedncf`, `fedrap`) an MLP four times as wide "
            "(`mlp-hidden=256`); the client train CPU seconds in the tables above show it. The "
            "accuracy bought is in the last two columns: every strategy went from below the "
            "most-popular list to near the centralised MF. `mlp-hidden=0 user-lr=0` gives the NCF "
            "backbones the spec's width back (docs/training-recipe.md has what that costs in "
            "accuracy).", ""]


def communication_section() -> list[str]:
    rows = load("communication.json")
    if rows is None:
        return ["_Not measured yet: `python -m benchmarks.communication --json "
                "docs/benchmarks/communication.json`._"]
    lines = ["| configuration | down KB / client / round | up KB / client / round |",
             "| --- | ---: | ---: |"]
    for r in rows:
        extra = " ".join(f"{k}={v}" for k, v in r.items()
                         if k not in ("strategy", "down_kb", "up_kb"))
        lines.append(f"| `{r['strategy']}` {extra} | {r['down_kb']:.1f} | {r['up_kb']:.1f} |")
    return lines


def scale_section() -> list[str]:
    rows = load("scale.json")
    if rows is None:
        return ["_Not measured yet: `python -m benchmarks.scale --json docs/benchmarks/scale.json`._"]
    plot_scale(rows, DATA / "scale.png")
    lines = ["| registered clients | items | clients taking part | s/round | peak memory GB |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['users']} | {r['items']} | {r['participants']} | "
              f"{r['seconds_per_round']:.2f} | {r['peak_rss_gb']:.2f} |" for r in rows]
    return [*lines, "", "![seconds per round against clients and items](benchmarks/scale.png)"]


def plot_scale(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    full = [r for r in rows if r["participants"] == r["users"]]
    by_clients = sorted((r for r in full if r["items"] == 400), key=lambda r: r["users"])
    by_items = sorted((r for r in full if r["users"] == 1000), key=lambda r: r["items"])
    for ax, series, key, label in ((axes[0], by_clients, "users", "clients (all taking part)"),
                                   (axes[1], by_items, "items", "items (1000 clients)")):
        x = np.array([r[key] for r in series], dtype=float)
        y = np.array([r["seconds_per_round"] for r in series])
        ax.loglog(x, y, "o-", label="measured")
        if len(x) > 1:
            ax.loglog(x, y[0] * x / x[0], "--", color="grey", label="linear")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # log-axis minor labels overlap
        ax.set_xlabel(label)
        ax.set_ylabel("seconds per round")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fusion_generalisation_section() -> list[str]:
    """R2 of the fusion network on items held out of its fit (benchmarks.fusion_generalisation)."""
    lines = ["| item table fitted | model | fusion-dropout | R2 on fitted items | R2 on held-out "
             "items |", "| --- | --- | ---: | ---: | ---: |"]
    for path in sorted(DATA.glob("fusion-generalisation-*.json")):
        found = json.loads(path.read_text())
        for row in found["rows"]:
            dropout = row.get("fusion_dropout")
            lines.append(f"| {found.get('source', found['checkpoint'])} | {row['model']} | "
                         + ("-" if dropout is None else f"{dropout:g}") + " | "
                         + (f"{row['fit_r2']:.3f}" if "fit_r2" in row else "-")
                         + f" | {row['held_out_r2']:.3f} |")
    if len(lines) == 2:
        return ["_Not measured yet: `python -m benchmarks.fusion_generalisation --checkpoint "
                "RUN/checkpoint.npz --json docs/benchmarks/fusion-generalisation-<name>.json`._", ""]
    return [*lines, ""]


def new_item_scoring_section() -> list[str]:
    """New-item scorers on items held out of the fusion fit (benchmarks.new_item_scoring)."""
    lines = []
    for path in sorted(DATA.glob("new-item-scoring-*.json")):
        found = json.loads(path.read_text())
        lines += [f"{found['dataset']}, seed {found['seed']}, backbone {found['backbone']}: "
                  f"{found['run']}; {found['held_out']} "
                  f"warm items held out, {found['users']} users.", "",
                  "| scorer | cold-content-weight | content dims | HR@10 | HR@50 | NDCG@10 |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['scorer']} | {r['weight']:g} | {r['content_dims']} | {r['HR@10']:.4f} | "
                  f"{r['HR@50']:.4f} | {r['NDCG@10']:.4f} |" for r in found["rows"]]
        lines.append("")
    return lines or ["_Not measured yet: `python -m benchmarks.new_item_scoring --run RUN "
                     "--state-dir STATE --json docs/benchmarks/new-item-scoring-<name>.json`._", ""]


def privacy_section(name: str = "attack-ml-100k-mm.json") -> list[str]:
    stored = load(name)
    if stored is None:
        return ["_Not measured yet: `python -m benchmarks.attack ... --json "
                f"docs/benchmarks/{name}` (see docs/privacy.md)._"]
    lines = ["| uploads (run config) | precision | recall | F1 | users | rounds | epsilon |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for variant, r in stored["results"].items():
        eps = "-" if r.get("epsilon") is None else f"{r['epsilon']:g}"
        lines.append(f"| `{variant}` | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} "
                     f"| {r['users']} | {r['rounds']} | {eps} |")
    return lines


def privacy_curve_section(name: str = "privacy-curve-ml-100k-mm.json") -> list[str]:
    stored = load(name)
    if stored is None:
        return [f"_Not measured yet: `python -m benchmarks.privacy_curve ... --json "
                f"docs/benchmarks/{name}` (see docs/privacy.md)._"]
    lines = [f"{stored['title']}; run config `{stored['run_config'] or 'defaults'}`; test metrics "
             "at the best-validation round, mean ± std over seeds.", "",
             "| ldp-epsilon (whole run) | epsilon per round | noise std per entry | HR@50 | "
             "NDCG@50 | best rounds |", "| ---: | ---: | ---: | ---: | ---: | --- |"]
    for p in stored["points"]:
        noisy = p["epsilon"] is not None
        lines.append(
            f"| {p['epsilon']:g} | {p['epsilon per round']:.3g} | {p['noise scale']:.3g} | "
            if noisy else "| none | - | - | ")
        lines[-1] += (f"{p['HR@50']:.4f} ± {p['HR@50 std']:.4f} | {p['NDCG@50']:.4f} ± "
                      f"{p['NDCG@50 std']:.4f} | {', '.join(str(r) for r in p['best_round'])} |")
    for ref, value in stored["references"].items():
        lines.append(f"| `{ref}` *non-federated* | - | - | {value:.4f} | - | - |")
    return [*lines, "", f"![test HR@50 against ldp-epsilon](benchmarks/{Path(name).stem}.png)"]


def results_section() -> list[str]:
    lines = []
    for table in sorted((ROOT / "docs" / "results").glob("*/table.md")):
        text = table.read_text().splitlines()
        lines += ["#" + text[0], *text[1:], "",
                  f"![validation HR@50 per round](results/{table.parent.name}/val_hr50.png)", ""]
    return lines or ["_No comparison has been run yet (`gfmfr compare`)._"]


def pooled(rows: list[dict]) -> dict:
    """Mean and sample std over all seeds of tables that ran the same run on different seeds."""
    n = np.array([int(r["seeds"]) for r in rows], dtype=float)
    out = {"run": rows[0]["run"], "seeds": int(n.sum())}
    for metric in METRICS:
        means = np.array([float(r[metric]) for r in rows])
        stds = np.array([float(r[f"{metric} std"]) for r in rows])
        mean = float((n * means).sum() / n.sum())
        squares = ((n - 1) * stds**2).sum() + (n * (means - mean) ** 2).sum()
        out[metric] = mean
        out[f"{metric} std"] = float(np.sqrt(squares / (n.sum() - 1))) if n.sum() > 1 else 0.0
    return out


def result_rows(dataset: str, recipe: bool = True) -> dict[str, dict]:
    """Every run label in ``docs/results/<dataset>-*/table.csv``, pooled over the tables holding it.

    Tables of the current training recipe (folders ``<dataset>-recipe*``) and those of the spec's
    SGD recipe that came before (every other folder) are never pooled together, nor with tables
    of new items (``*-cold*``: another split, warm items ranked among warm items only)."""
    found: dict[str, list[dict]] = {}
    for path in sorted((ROOT / "docs" / "results").glob(f"{dataset}-*/table.csv")):
        if path.parent.name.startswith(f"{dataset}-recipe") != recipe or "-cold" in path.parent.name:
            continue
        with path.open() as handle:
            for row in csv.DictReader(handle):
                found.setdefault(row["run"], []).append(row)
    return {label: pooled(rows) for label, rows in found.items()}


def gain_section(dataset: str = "ml-100k-mm", recipe: bool = True) -> list[str]:
    """GFMFR on each backbone next to that backbone's own baseline, from the comparison tables."""
    from strategies.registry import STRATEGIES

    rows = result_rows(dataset, recipe)
    baseline = {spec.default_backbone: name for name, spec in STRATEGIES.items() if name != "gfmfr"}
    lines = ["| backbone | baseline HR@50 | GFMFR HR@50 | change | baseline NDCG@50 | "
             "GFMFR NDCG@50 | change | seeds |", "| --- |" + " ---: |" * 7]
    for label, ours in rows.items():
        match = re.fullmatch(r"gfmfr(?::backbone='([\w-]+)')?", label)
        base = rows.get(baseline.get(match.group(1) or "fedrap", "")) if match else None
        if base is None:
            continue
        cells = []
        for metric in ("HR@50", "NDCG@50"):
            cells += [f"{base[metric]:.4f} ± {base[metric + ' std']:.4f}",
                      f"{ours[metric]:.4f} ± {ours[metric + ' std']:.4f}",
                      f"{100 * (ours[metric] / base[metric] - 1):+.1f}%"]
        lines.append(f"| `{match.group(1) or 'fedrap'}` (`{base['run']}`) | " + " | ".join(cells)
                     + f" | {base['seeds']} / {ours['seeds']} |")
    which = ("the current training recipe (docs/training-recipe.md)" if recipe
             else "the spec's SGD recipe, before the current one")
    if len(lines) == 2:
        return [f"_No GFMFR run next to its baseline on {dataset} with {which} yet "
                "(`gfmfr compare`)._", ""]
    return [f"GFMFR against its own backbone on {dataset}, {which}: test metrics at the best-validation "
            "round, mean ± std over seeds (seeds: baseline / GFMFR; a run split over several "
            "tables is pooled exactly from their means and standard deviations).", "", *lines, ""]


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    text = ["# Benchmarks", "", f"Machine: {machine()}. Generated by `python -m benchmarks.report` "
            "from the JSON the measuring commands wrote; the commands are given per section.", "",
            "## Seconds per round (real Ray simulation, all clients every round)", "",
            "`python -m benchmarks.rounds --federation ml-100k-mm --strategies fedrap gfmfr fcf "
            "fedncf fedrap-original pfedrec --rounds 4 --json docs/benchmarks/rounds-ml-100k-mm.json`",
            "", *rounds_section("rounds-ml-100k-mm.json", "ml-100k-mm (943 clients, 1,682 items)"),
            "`python -m benchmarks.rounds --federation ml-1m-mm --strategies fedrap gfmfr fcf pfedrec "
            "--rounds 3 --json docs/benchmarks/rounds-ml-1m-mm.json`", "",
            *rounds_section("rounds-ml-1m-mm.json", "ml-1m-mm (6,040 clients, 3,706 items)"),
            "The same ml-1m-mm rounds on a 2-node Ray cluster on this machine (head 2 CPUs + "
            "worker 1 CPU, so the same 3 ClientApps; commands in performance.md, \"Plan for "
            "100,000 users\"). Peak memory there covers the driver side only: the raylets and "
            "ClientApp workers are children of `ray start`.", "",
            *rounds_section("rounds-ml-1m-mm-cluster.json",
                            "ml-1m-mm on a 2-node loopback Ray cluster"),
            "Both tables were measured with Flower's in-memory LinkState indexed by destination "
            "node (`server_app/linkstate_index.py`); with Flower's own scan of every stored "
            "message per node, the same rounds took 6.1-9.6 s (ml-100k-mm: FCF to GFMFR) and "
            "116-165 s (ml-1m-mm), about 4.5 and 85 s of them in routing.", "",
            "Before replies were aggregated as they arrive, the same ml-1m runs peaked at 19.5 GB "
            "(FCF, PFedRec) and 23.2-23.4 GB (FedRAP, GFMFR), and Ray's memory monitor killed "
            "thousands of FedRAP and GFMFR ClientApp calls; see performance.md.", "",
            "Client CPU seconds are summed over all clients of a round; messaging is what remains "
            "of the round after the server's grouping and fusion and client compute divided by "
            "the ClientApps running in parallel (with more ClientApps than cores, a handler's "
            "seconds include waiting for a core, so messaging is a lower bound). Aggregation runs "
            "as replies arrive, overlapped with client work, so its time is inside that rest. "
            "Where the time goes and what was done about it: [performance.md](performance.md).",
            "",
            "### The training recipe's round time against the spec's recipe (ml-100k-mm)", "",
            "The same code and machine, both measured in one sitting: `python -m benchmarks.rounds "
            "--federation ml-100k-mm --strategies fcf pfedrec fedncf fedrap fedrap-original gfmfr "
            "--rounds 4 --json docs/benchmarks/rounds-ml-100k-mm.json`, then the same with "
            "`--run-config \"optimizer='sgd' item-lr=16.82 personal-lr=16.82 weight-decay=0.0001 "
            "item-aggregation='all' server-lr=1.0 mlp-init='random' mlp-lr=0.0 mlp-hidden=0 "
            "user-lr=0.0 lr-decay-to=1.0 dense-weights='examples' fedrap-separation='published'\" "
            "--json docs/benchmarks/rounds-ml-100k-mm-spec-recipe.json` (every key the recipe "
            "changed, at the spec's value). Test HR@50 at the best-validation round, 50 rounds, "
            "from the comparison tables under docs/results/ (spec's recipe: `ml-100k-mm-baselines` "
            "and `ml-100k-mm-gfmfr`; training recipe: `ml-100k-mm-recipe`); `gfmfr` is GFMFR on "
            "PFedRec.", "", *recipe_cost_section(),
            "## Scale", "", "`python -m benchmarks.scale --json docs/benchmarks/scale.json`: "
            "FedNCF on synthetic data, the real ServerApp, strategy and ClientApp in one process "
            "(no Ray), 3 rounds; the last two points register 10,000 and 100,000 clients and "
            "train 1,000 of them a round. Measured on 2026-11-27 while a one-core ml-1m run used "
            "the other core (OMP_NUM_THREADS=1). Before replies were aggregated as they arrive "
            "(2026-11-26, other core mostly idle) peak memory grew with the catalog and the "
            "registered clients (0.85-3.99 GB; 1.73 GB at 100,000 clients) and rounds took "
            "1.05 / 3.84 / 15.58 s for 250 / 1,000 / 4,000 clients.", "",
            *scale_section(), "",
            "## Communication", "", "`python -m benchmarks.communication --json "
            "docs/benchmarks/communication.json` (serialised message sizes, last round)", "",
            *communication_section(), "",
            "GFMFR adds its group's teacher to each download: 1,682 probabilities (7 KB) when the "
            "backbone's head is shared, the group's fused table `Q_k` (1,682 x 64, 420 KB) when "
            "the head is private (PFedRec), since a client can only score `Q_k` with its own head. "
            "Clients upload only the item-table rows they trained (`upload-rows = auto`, the "
            "default unless `ldp-noise` is on; exact, since untouched rows equal the broadcast): "
            "FedRAP's reply 454 -> 161 KB, and in the Ray simulation a GFMFR round 10.7-11.0 -> "
            "9.8-10.0 s (A/B, same machine and hour). `wire-dtype=float16` halves what is left: "
            "FedRAP's traffic per client and round 908 KB (whole tables) -> 615 KB (default) -> "
            "310 KB; its accuracy effect is in the options table below.", "",
            "## New items: how well the fusion network places items it never fitted", "",
            "`python -m benchmarks.fusion_generalisation --checkpoint RUN/checkpoint.npz "
            "--dropouts 0 0.3 0.5 0.8 --json docs/benchmarks/fusion-generalisation-<name>.json`: "
            "a trained shared item table, a seeded 20% of its items held out, the fusion network "
            "fitted to the rest as the server fits it (50 rounds of 50 epochs, warm-started); a "
            "ridge regression on the same features, its penalty chosen on the held-out items, "
            "is the linear reference. Training rows only: no user's held-out interaction.", "",
            *fusion_generalisation_section(),
            "## New items: how clients rank them, chosen on training rows", "",
            "`python -m benchmarks.new_item_scoring --run RUN --state-dir STATE --weights 0.5 1 2 "
            "4 --dims 32 64 128 0 --json docs/benchmarks/new-item-scoring-<name>.json` on a "
            "finished GFMFR run made with `cold-items=0.2` and `client-state-dir=STATE`: a seeded "
            "20% of the warm items held out of the fusion fit; each user's training interactions "
            "with them ranked among the held-out items, from the user's other training items, by "
            "the teacher (the user's own model on the fused rows), by content alone, and by the "
            "teacher plus `cold-content-weight` times content (both standardised). Training rows "
            "only; the users' private parameters were trained on these interactions, which "
            "favours the teacher. `cold-content-weight = 2` with 64 dimensions was chosen here.",
            "",
            *new_item_scoring_section(),
            "## Privacy: what the server learns of users' training items", "",
            "`python -m benchmarks.attack -c \"dataset='ml-100k-mm' strategy='pfedrec'\" "
            "--rounds 3 --variant \"\" --variant \"upload-rows=false\" --variant "
            "\"ldp-epsilon=8.0 ldp-clip=1.0 ldp-mechanism='gaussian'\" --json "
            "docs/benchmarks/attack-ml-100k-mm.json`: an honest-but-curious server's guess of every "
            "user's training items from its uploads (docs/privacy.md); a random guess of the same "
            "size scores about 0.06.", "", *privacy_section(), "",
            "### Accuracy against the local-DP budget", "",
            "`python -m benchmarks.privacy_curve --federation ml-100k-mm --strategy pfedrec "
            "--epsilons 10 100 1000 --seeds 0 1 2 --out /tmp/exp/privacy-curve --json "
            "docs/benchmarks/privacy-curve-ml-100k-mm.json --plot "
            "docs/benchmarks/privacy-curve-ml-100k-mm.png`: real 50-round runs with Gaussian "
            "local DP (`ldp-clip=1`, `ldp-delta=1e-5`, every upload a whole noised table).", "",
            *privacy_curve_section(), "",
            "### Secure aggregation (SecAgg+, the deployment default)", "",
            "`python -m benchmarks.attack -c \"dataset='ml-100k-mm' strategy='pfedrec'\" "
            "--rounds 3 --variant \"secure-aggregation=false\" --variant "
            "\"secure-aggregation=true\" --variant \"strategy='gfmfr' secure-aggregation=true\" "
            "--json docs/benchmarks/attack-secure-ml-100k-mm.json`: the same attack on masked "
            "uploads (in-process engine, secure aggregation forced on).", "",
            *privacy_section("attack-secure-ml-100k-mm.json"), "",
            "What it costs in accuracy and time over a whole run (50 rounds, the model with and "
            "without it side by side): the table *Secure aggregation (SecAgg+), PFedRec* "
            "under Accuracy below (its NOTE.md sets it beside the plain run), and docs/privacy.md.", "",
            "## Accuracy", "",
            "Tables under `docs/results/<dataset>-recipe*` use the current training recipe "
            "(docs/training-recipe.md); every other table was run with the spec's SGD recipe "
            "before it and is kept for comparison. Each table's command says how it was run.", "",
            *gain_section(), *gain_section("ml-100k-mm", recipe=False),
            *gain_section("ml-1m-mm", recipe=False), *results_section()]
    OUT.write_text("\n".join(text) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
