"""Non-federated reference rows for every results table: most-popular and a centralised MF.

    python -m server_app.references --dataset ml-100k-mm --seeds 0 1 2 --json out.json

Both are computed on the federated runs' own split (``datasets.registry.load_split``) and scored by
the clients' own metric code (``client_app.training.split_metrics``), so a table can put them beside
the federated rows. ``pop`` ranks items by training counts. ``central-mf`` is one model trained on
every user's data at once with the backbones' loss (BCE, ``neg-per-pos`` fresh negatives per
positive each epoch, never-trained items as negatives), d = 64, an item bias and Adam; its epoch is
chosen on validation HR@50, as the federated runs' round is.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from client_app.training import split_metrics as client_split_metrics
from datasets.registry import load_split
from datasets.split import LeaveOneOut
from strategies.config import RunConfig
from strategies.content import content_vectors, profile_cosine
from strategies.protocol import TEST, VAL


def split_metrics(scores: np.ndarray, split: LeaveOneOut, users: np.ndarray | None = None
                  ) -> dict[str, dict[str, float]]:
    """Mean validation and test metrics of ``scores`` (n_users x n_items, or one row for all);
    with new items (cold start) also ``cold``, over the users who have any."""
    totals: dict[str, dict[str, float]] = {VAL: {}, TEST: {}}
    counts: dict[str, int] = {}
    users = np.arange(split.n_users) if users is None else users
    for u in users:
        row = scores if scores.ndim == 1 else scores[u]
        for name, metrics in client_split_metrics(row, split.client(int(u))).items():
            counts[name] = counts.get(name, 0) + 1
            for key, value in metrics.items():
                totals.setdefault(name, {})[key] = totals.get(name, {}).get(key, 0.0) + value
    return {s: {k: v / counts[s] for k, v in m.items()} for s, m in totals.items()}


def popularity(split: LeaveOneOut) -> dict:
    counts = np.bincount(split.train, minlength=split.n_items).astype(np.float64)
    return {"best_epoch": 0, **split_metrics(counts, split)}


@dataclass(frozen=True)
class CentralMF:
    dim: int = 64
    lr: float = 0.003
    weight_decay: float = 0.0
    l2: float = 1e-5  # L2 on the embeddings of a batch, per example
    epochs: int = 60
    batch_size: int = 1024
    neg_per_pos: int = 4
    patience: int = 10
    recency_half_life: float = 0.0  # > 0: weight recent interactions more (a probe; 0 = off)


def recency_weights(split: LeaveOneOut, half_life: float) -> np.ndarray:
    """(n_train,) ``0.5 ** (age / half_life)`` per training interaction, ``age`` = how many of
    its user's training interactions came after it (the split keeps them in time order), scaled
    to a mean of 1 per user; ones when ``half_life`` <= 0."""
    counts = np.diff(split.indptr)
    if half_life <= 0:
        return np.ones(split.train.size)
    users = np.repeat(np.arange(split.n_users), counts)
    age = np.repeat(split.indptr[1:], counts) - 1 - np.arange(split.train.size)
    weights = 0.5 ** (age / half_life)
    return weights / (np.bincount(users, weights, split.n_users) / counts)[users]


def central_mf(split: LeaveOneOut, seed: int, hp: CentralMF = CentralMF(),
               log: bool = False) -> dict:
    """Train a centralised MF with item bias; test metrics at the best validation epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_users, n_items = split.n_users, split.n_items
    users = np.repeat(np.arange(n_users), np.diff(split.indptr))
    train = np.zeros((n_users, n_items), dtype=bool)
    train[users, split.train] = True
    if split.cold is not None:
        train[:, split.cold] = True  # new items (cold start) are never negatives
    user_emb = torch.nn.Parameter(torch.randn(n_users, hp.dim) * 0.1)
    item_emb = torch.nn.Parameter(torch.randn(n_items, hp.dim) * 0.1)
    item_bias = torch.nn.Parameter(torch.zeros(n_items))
    params = [user_emb, item_emb, item_bias]
    optimizer = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
    weights = torch.from_numpy(recency_weights(split, hp.recency_half_life)).float()
    weights = torch.cat((weights, weights.repeat_interleave(hp.neg_per_pos)))
    best, best_val, since = None, -1.0, 0
    for epoch in range(1, hp.epochs + 1):
        neg_users = np.repeat(users, hp.neg_per_pos)
        neg_items = rng.integers(n_items, size=neg_users.size)
        clash = train[neg_users, neg_items]
        while clash.any():  # resample negatives that are training positives
            neg_items[clash] = rng.integers(n_items, size=int(clash.sum()))
            clash = train[neg_users, neg_items]
        u = torch.from_numpy(np.concatenate((users, neg_users)))
        i = torch.from_numpy(np.concatenate((split.train, neg_items)))
        y = torch.cat((torch.ones(users.size), torch.zeros(neg_users.size)))
        order = torch.randperm(u.numel())
        for start in range(0, u.numel(), hp.batch_size):
            batch = order[start:start + hp.batch_size]
            eu, ei = user_emb[u[batch]], item_emb[i[batch]]
            logits = (eu * ei).sum(1) + item_bias[i[batch]]
            loss = (F.binary_cross_entropy_with_logits(logits, y[batch], reduction="none")
                    * weights[batch]).mean()
            loss = loss + hp.l2 * (eu.square().sum() + ei.square().sum()) / len(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            scores = (user_emb @ item_emb.t() + item_bias).numpy()
        metrics = split_metrics(scores, split)
        if log:
            print(f"epoch {epoch} val HR@50 {metrics[VAL]['HR@50']:.4f} "
                  f"test HR@50 {metrics[TEST]['HR@50']:.4f}", flush=True)
        if metrics[VAL]["HR@50"] > best_val:
            best, best_val, since = {"best_epoch": epoch, **metrics}, metrics[VAL]["HR@50"], 0
        else:
            since += 1
            if since >= hp.patience:
                break
    return best


def content_profile(split: LeaveOneOut, text: np.ndarray, image: np.ndarray,
                    image_mask: np.ndarray) -> dict:
    """Content alone: the cosine of each item's content vector to the mean content vector of the
    items the user trained on (``strategies.content``, all features, not reduced). What a
    content-based recommender gets from the features the server holds: the reference for
    GFMFR's new-item (cold start) scores."""
    vectors = content_vectors(text, image, image_mask, dims=None)
    scores = np.stack([profile_cosine(vectors, split.client(u).train_items)
                       for u in range(split.n_users)])
    return {"best_epoch": 0, **split_metrics(scores, split)}


def random_ranking(split: LeaveOneOut, seed: int) -> dict:
    scores = np.random.default_rng([seed, 1]).random((split.n_users, split.n_items))
    return {"best_epoch": 0, **split_metrics(scores, split)}


def cold_references(cfg) -> dict:
    """The references of a cold-start table (``cfg``: the runs' RunConfig): random ranking and
    content alone, the latter on the features GFMFR's server uses (encoded once, cached)."""
    from datasets.registry import load_dataset
    from encoders.features import run_item_features

    def content(split: LeaveOneOut, seed: int) -> dict:
        catalog = load_dataset(cfg.dataset, cfg.data_path(), cfg.cache_path(),
                               cfg.synthetic_spec()).catalog
        features = run_item_features(catalog, cfg)
        return content_profile(split, features.text, features.image, features.image_mask)

    return {"random": random_ranking, "content": content}


REFERENCES = {"pop": lambda split, seed: popularity(split), "central-mf": central_mf}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k-mm")
    parser.add_argument("--data-dir", type=Path, help="default: the run config's data-dir")
    parser.add_argument("--cache-dir", type=Path,
                        help="default: the run config's (GFMFR_CACHE_DIR or ~/.cache/gfmfr)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--recency-half-life", type=float, default=0.0,
                        help="central-mf only: weight recent interactions (a probe, "
                             "docs/training-recipe.md); 0 = off, the references' setting")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = {}
    hp = CentralMF(recency_half_life=args.recency_half_life)
    defaults = RunConfig()  # where a run of the app reads data and keeps its generated files
    data_dir = args.data_dir.resolve() if args.data_dir else defaults.data_path()
    cache_dir = args.cache_dir.resolve() if args.cache_dir else defaults.cache_path()
    for name, fn in REFERENCES.items():
        for seed in args.seeds:
            split = load_split(args.dataset, data_dir, cache_dir, seed)
            result = (central_mf(split, seed, hp, log=args.verbose) if name == "central-mf"
                      else fn(split, seed))
            out.setdefault(name, []).append({"seed": seed, **result})
            print(f"{name} seed {seed}: test HR@50 {result[TEST]['HR@50']:.4f} "
                  f"NDCG@50 {result[TEST]['NDCG@50']:.4f} (val HR@50 {result[VAL]['HR@50']:.4f}, "
                  f"epoch {result['best_epoch']})", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
