"""How well GFMFR's fusion network places items it never fitted, by feature dropout.

    python -m benchmarks.fusion_generalisation --checkpoint RUN/checkpoint.npz \
        --dropouts 0 0.3 0.5 0.8 --json out.json

New items (cold start) are scored with fused embeddings of items the network never fitted. This
takes a trained shared item table from a run's checkpoint, holds a seeded share of its items out,
trains the fusion network on the rest as the server does (one group, ``--epochs`` full-batch
epochs a round for ``--rounds`` rounds, warm-started), and reports R2 on the fitted and on the
held-out items. Only training rows are used (no user's held-out interaction), so the choice it
informs is made without the validation or test split. A ridge regression on the same
standardised features, its penalty chosen on the held-out items, is the linear reference.
Use a table trained to the end of a run: after a few rounds most rows are still near their random
start, which no content predicts (a 4-round GFMFR table gives R2 near 0 for every model).
Dataset, encoders, data and feature cache are those of the run (its ``summary.json`` beside the
checkpoint; without one, the app's defaults and ``--dataset``); features are encoded there once
if missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge

from datasets.registry import load_dataset
from encoders.features import run_item_features
from strategies.config import RunConfig
from strategies.fusion import FusionTrainer, fit_r2

RIDGE_PENALTIES = (10.0, 100.0, 1000.0, 3000.0, 10000.0, 30000.0)


def run_config(checkpoint: Path, dataset: str | None, data_dir: Path | None,
               cache_dir: Path | None) -> RunConfig:
    """The run's config (``summary.json`` beside its checkpoint, else the defaults), with the
    command line's dataset, data and cache folders where given."""
    summary = checkpoint.parent / "summary.json"
    cfg = (RunConfig.from_run_config(json.loads(summary.read_text())["config"])
           if summary.is_file() else RunConfig(dataset=dataset or "ml-100k-mm"))
    changes = {"dataset": dataset, "data_dir": data_dir and str(data_dir.resolve()),
               "cache_dir": cache_dir and str(cache_dir.resolve())}
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v})


def item_table(checkpoint: Path, name: str = "") -> tuple[str, np.ndarray]:
    """The shared item table of a run's checkpoint (``name``, or the one 2-d shared array)."""
    arrays = np.load(checkpoint)
    tables = {k: arrays[k] for k in arrays.files if k.startswith("shared/")
              and arrays[k].ndim == 2 and (not name or k == f"shared/{name}")}
    if len(tables) != 1:
        raise SystemExit(f"{checkpoint}: expected one shared item table, found "
                         f"{sorted(tables) or 'none'}; name it with --table")
    return next(iter(tables.items()))


def trainer_for(table: np.ndarray, features, dropout: float, seed: int) -> FusionTrainer:
    """A one-group fusion network as the server builds it."""
    return FusionTrainer(1, features.text, features.image, features.image_mask, table.shape[1],
                         "mlp", 0.01, seed, dropout=dropout)


def fusion_r2(table: np.ndarray, features, held_out: np.ndarray, dropout: float,
              rounds: int, epochs: int, seed: int) -> dict[str, float]:
    trainer = trainer_for(table, features, dropout, seed)
    for _ in range(rounds):
        trainer.fit(np.zeros(1, dtype=np.int64), table[None], epochs, ~held_out)
    fused = trainer.tables(np.zeros(1, dtype=np.int64))[0]
    return {"fit_r2": fit_r2(fused[~held_out], table[~held_out]),
            "held_out_r2": fit_r2(fused[held_out], table[held_out])}


def ridge_r2(table: np.ndarray, features, held_out: np.ndarray) -> dict[str, float]:
    """Ridge on the features the fusion network sees (standardised, no image where none)."""
    trainer = trainer_for(table, features, 0.0, 0)
    x = torch.cat((trainer.text, trainer.image * trainer.mask[:, None]), dim=1).numpy()
    scores = {a: fit_r2(Ridge(alpha=a).fit(x[~held_out], table[~held_out]).predict(x[held_out]),
                    table[held_out]) for a in RIDGE_PENALTIES}
    best = max(scores, key=scores.get)
    return {"penalty": best, "held_out_r2": scores[best]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--table", default="", help="shared array name (default: the only one)")
    parser.add_argument("--dataset", help="default: the run's (ml-100k-mm without summary.json)")
    parser.add_argument("--data-dir", type=Path, help="default: the run config's data-dir")
    parser.add_argument("--cache-dir", type=Path,
                        help="default: the run config's (GFMFR_CACHE_DIR or ~/.cache/gfmfr)")
    parser.add_argument("--dropouts", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.8])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.checkpoint.is_file():
        raise SystemExit(f"{args.checkpoint} is missing: --checkpoint takes a run's "
                         "checkpoint.npz (results-dir/<run-name>/checkpoint.npz).")
    name, table = item_table(args.checkpoint, args.table)
    cfg = run_config(args.checkpoint, args.dataset, args.data_dir, args.cache_dir)
    catalog = load_dataset(cfg.dataset, cfg.data_path(), cfg.cache_path()).catalog
    features = run_item_features(catalog, cfg)
    if table.shape[0] != features.text.shape[0]:
        raise SystemExit(f"{name} has {table.shape[0]} rows but {cfg.dataset} has "
                         f"{features.text.shape[0]} items: is the checkpoint from that dataset?")
    held_out = np.random.default_rng([args.seed, 7]).random(table.shape[0]) < args.held_out
    rows = [{"model": "fusion mlp", "fusion_dropout": rate,
             **fusion_r2(table, features, held_out, rate, args.rounds, args.epochs, args.seed)}
            for rate in args.dropouts]
    rows.append({"model": "ridge (linear reference)", **ridge_r2(table, features, held_out)})
    print(f"{name} of {args.checkpoint} ({int(held_out.sum())} of {held_out.size} items held out)")
    for row in rows:
        print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in row.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "table": name,
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
