"""Does the warm-started fusion network survive a long run? Fit quality per round, two optimisers.

    python -m benchmarks.fusion_stability --dataset ml-100k-mm --rounds 60

The fusion network is trained 50 epochs a round, warm-started, on targets that grow (as item
tables do) and jump when groups change members (here at round 45). Targets are a fixed content
function per group (tanh of a random projection of the text features), so a network that fits
them once can fit them always: a falling R2 is the optimiser breaking the network. ``spec``: Adam
with its defaults, as the reference code; ``current``: the project's (beta2 0.99, gradient norm
bounded by 1). Prints R2 (share of the targets' variance the fused tables explain) per round.
Data, feature cache and encoders are the app's (``-c`` overrides them as for a run).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from datasets.registry import load_dataset
from encoders.features import run_item_features
from strategies.config import RunConfig, parse_overrides
from strategies.fusion import FusionTrainer

SETTINGS = {"spec": {"beta2": 0.999, "grad_clip": 0.0}, "current": {}}


def run(text, image, mask, rounds: int, jump: int, **options) -> list[float]:
    rng = np.random.default_rng(0)
    groups, d = 5, 64
    projections = rng.normal(size=(groups, text.shape[1], d)) * 0.05
    shared = np.tanh(text @ projections[0]) * 2
    targets = np.stack([shared + 0.3 * np.tanh(text @ p) for p in projections]).astype(np.float32)
    trainer = FusionTrainer(groups, text, image, mask, d, "mlp", 0.01, 0, **options)
    r2 = []
    for rnd in range(1, rounds + 1):
        goal = targets * (1 + rnd / 20)
        if rnd >= jump:
            goal = goal[[1, 0, 3, 2, 4]] * 1.5
        trainer.fit(np.arange(groups), goal, 50)
        fit = trainer.tables(np.arange(groups))
        r2.append(1 - float(np.mean((fit - goal) ** 2) / np.var(goal)))
    return r2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k-mm")
    parser.add_argument("-c", "--run-config", default="",
                        help="run-config overrides, e.g. \"text-encoder='open-clip' cache-dir='/tmp/c'\"")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--jump", type=int, default=45)
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {"dataset": args.dataset, **parse_overrides(args.run_config)}
    unknown = sorted(set(overrides) - set(RunConfig().as_dict()))
    if unknown:
        raise SystemExit(f"unknown run-config keys {', '.join(unknown)} in -c; the keys are "
                         "listed in README.md (Run-config keys).")
    cfg = RunConfig.from_run_config(overrides)
    dataset = load_dataset(cfg.dataset, cfg.data_path(), cfg.cache_path())
    features = run_item_features(dataset.catalog, cfg)
    for name, options in SETTINGS.items():
        r2 = run(features.text, features.image, features.image_mask, args.rounds, args.jump,
                 **options)
        shown = " ".join(f"{i + 1}:{v:.3f}" for i, v in enumerate(r2) if (i + 1) % 5 == 0)
        print(f"{name:8s} R2 by round  {shown}  (min after round 10: {min(r2[10:]):.3f})",
              flush=True)


if __name__ == "__main__":
    main()
