"""How GFMFR's clients should rank new items, chosen on training rows only.

    python -m benchmarks.new_item_scoring --run RUN_DIR --state-dir USERS_STATE \
        --weights 0 0.5 1 2 4 --dims 32 64 128 0 --json out.json

New items have no interactions, so neither validation nor test can choose how they are ranked
without the test items. This builds the same task from training rows: a seeded share of the
warm items is held out of the fusion fit (one group, as ``benchmarks.fusion_generalisation``
fits it, on the run's trained item table), and each user's training interactions with those
items are ranked among the held-out items the user did not interact with, from the user's
other training items. Scorers: the teacher (the user's own model, its private parameters read
from the run's users' state, on the fused rows), content alone (the cosine of each item's
content vector to the mean over the user's other items: ``strategies.content``) and the teacher
plus ``w`` times content, both standardised over the held-out items (``cold-content-weight``).
``--dims 0`` means all features. The users' private parameters were trained on these very
interactions, which favours the teacher: a weight chosen here leans towards it, not away.
The run needs ``client-state-dir`` (the users' private parameters on disk) and a GFMFR or
backbone checkpoint (its backbone's shared item table is the fusion target).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from benchmarks.fusion_generalisation import item_table, trainer_for
from client_app.ranking import rank_of, ranking_metrics
from client_app.state import user_file
from datasets.registry import load_dataset, load_split
from encoders.features import run_item_features
from strategies.backbones.registry import build_backbone
from strategies.config import RunConfig
from strategies.content import content_vectors, profile_cosine, standardised
from strategies.distillation import Teacher
from strategies.registry import backbone_name, hyper

REPORTED = ("HR@10", "HR@50", "NDCG@10")


def held_out_items(cold: np.ndarray | None, n_items: int, share: float, seed: int) -> np.ndarray:
    """(n_items,) bool: a seeded ``share`` of the warm items, treated as new."""
    warm = np.flatnonzero(~cold) if cold is not None else np.arange(n_items)
    rng = np.random.default_rng([seed, 77])
    held = np.zeros(n_items, dtype=bool)
    held[rng.choice(warm, int(share * warm.size), replace=False)] = True
    return held


def fused_rows(table: np.ndarray, features, held: np.ndarray, trainable: np.ndarray,
               seed: int, dropout: float = 0.0, rounds: int = 5, epochs: int = 50) -> np.ndarray:
    """The fusion network's rows for every item, fitted on the ``trainable`` items only."""
    trainer = trainer_for(table, features, dropout, seed)
    for _ in range(rounds):
        trainer.fit(np.zeros(1, dtype=np.int64), table[None], epochs, trainable & ~held)
    return trainer.tables(np.zeros(1, dtype=np.int64))[0]


def scorers(teacher: np.ndarray, contents: dict[str, np.ndarray], own: np.ndarray,
            held: np.ndarray, weights: list[float]) -> dict[tuple[str, float, str], np.ndarray]:
    """(scorer, weight, content dims) -> scores of every item for one user."""
    out = {("teacher", 0.0, "-"): teacher}
    z_teacher = standardised(teacher, held)
    for dims, vectors in contents.items():
        profile = profile_cosine(vectors, own)
        out[("content", 0.0, dims)] = profile
        z_profile = standardised(profile, held)
        for w in weights:
            if w > 0:
                out[("teacher+content", w, dims)] = z_teacher + w * z_profile
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True,
                        help="a finished run's folder (summary.json, checkpoint.npz)")
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="the run's client-state-dir (user-<id>.npz)")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 0])
    parser.add_argument("--share", type=float, default=0.2, help="warm items held out")
    parser.add_argument("--fusion-dropout", type=float, help="default: the run's fusion-dropout")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for needed in (args.run / "summary.json", args.run / "checkpoint.npz"):
        if not needed.is_file():
            raise SystemExit(f"{needed} is missing: --run takes a finished run's folder "
                             "(results-dir/<run-name>, with summary.json and checkpoint.npz).")
    if not args.state_dir.is_dir():
        raise SystemExit(f"{args.state_dir} is not a folder: --state-dir takes the run's "
                         "client-state-dir (user-<id>.npz files).")
    config = json.loads((args.run / "summary.json").read_text())["config"]
    cfg = RunConfig.from_run_config(config)
    split = load_split(cfg.dataset, cfg.data_path(), cfg.cache_path(), cfg.seed,
                       cfg.synthetic_spec(), cfg.cold_items)
    catalog = load_dataset(cfg.dataset, cfg.data_path(), cfg.cache_path(),
                           cfg.synthetic_spec()).catalog
    features = run_item_features(catalog, cfg)
    model = build_backbone(backbone_name(cfg), split.n_items, hyper(cfg), cfg.seed)
    name, table = item_table(args.run / "checkpoint.npz", model.ITEM_TABLE)
    held = held_out_items(split.cold, split.n_items, args.share, cfg.seed)
    trainable = np.ones(split.n_items, dtype=bool) if split.cold is None else ~split.cold
    dropout = cfg.fusion_dropout if args.fusion_dropout is None else args.fusion_dropout
    fused = fused_rows(table, features, held, trainable, cfg.seed, dropout)
    contents = {str(d or "all"): content_vectors(features.text, features.image,
                                                  features.image_mask, dims=d or None)
                for d in args.dims}
    shared = np.load(args.run / "checkpoint.npz")
    model.set_arrays({n: shared[f"shared/{n}"] for n in model.SHARED}, model.SHARED)
    sums: dict[tuple, dict[str, list[float]]] = {}
    for user in range(split.n_users):
        view = split.client(user)
        positives = view.train_items[held[view.train_items]]
        own = view.train_items[~held[view.train_items]]
        if not positives.size or not own.size:
            continue
        with np.load(user_file(args.state_dir, user)) as private:
            model.set_arrays({n: private[n] for n in model.PRIVATE}, model.PRIVATE)
        teacher = Teacher(item_vectors=fused).all_scores(model)
        candidates = held.copy()
        candidates[view.train_items] = False
        for key, scores in scorers(teacher, contents, own, held, args.weights).items():
            per_item = []
            for item in positives:
                mask = candidates.copy()
                mask[item] = True
                per_item.append(ranking_metrics(rank_of(scores, int(item), mask)))
            for metric in REPORTED:
                sums.setdefault(key, {}).setdefault(metric, []).append(
                    float(np.mean([m[metric] for m in per_item])))
    rows = [{"scorer": s, "weight": w, "content_dims": d,
             **{m: float(np.mean(v)) for m, v in values.items()}}
            for (s, w, d), values in sums.items()]
    users = len(next(iter(sums.values()))["HR@10"])
    print(f"{cfg.dataset} seed {cfg.seed}, {backbone_name(cfg)}: {int(held.sum())} warm items "
          f"held out of the fusion fit ({name}), {users} users with training interactions among "
          "them")
    print("| scorer | weight | content dims | " + " | ".join(REPORTED) + " |")
    print("| --- | ---: | ---: |" + " ---: |" * len(REPORTED))
    for row in rows:
        print(f"| {row['scorer']} | {row['weight']:g} | {row['content_dims']} | "
              + " | ".join(f"{row[m]:.4f}" for m in REPORTED) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"dataset": cfg.dataset, "seed": cfg.seed,
                                         "backbone": backbone_name(cfg),
                                         "run": str(args.run), "held_out": int(held.sum()),
                                         "users": users, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
