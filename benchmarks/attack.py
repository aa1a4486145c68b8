"""What an honest-but-curious server learns of each user's training items from one run's uploads.

    python -m benchmarks.attack -c "dataset='ml-100k-mm' strategy='pfedrec'" --rounds 3 --json out.json
    python -m benchmarks.attack -c "..." --variant "upload-rows=false" --variant "ldp-epsilon=8 ldp-clip=1"
    python -m benchmarks.attack -c "..." --variant "secure-aggregation=false" --variant ""

The server follows the protocol and keeps what it receives. For every user it ranks the item-table
rows by the number of rounds in which the user's upload changed them, then by the size of the
change, and guesses the top ``k``, where ``k`` comes from the ``num-examples`` the reply reports
(``positives * (1 + neg-per-pos)``). Positives are trained in every round; negatives are drawn
afresh each round: intersecting a few rounds separates them. The guesses are scored against each
user's true training items (precision, recall, F1, averaged over users).

Under secure aggregation the server receives masked vectors, which are uniformly random to it:
it then guesses at random among the rows (a user's number of examples is still reported).

Each variant is a real run of the app in one process (``server_app.inprocess``); the attack only
observes the messages the server receives, as a grid-level hook, and never changes them.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from server_app.inprocess import content_round, run_inprocess
from strategies import protocol as p
from strategies.config import RunConfig, parse_overrides


class UploadObserver:
    """Per user and item: in how many rounds the upload changed the row, and by how much."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.presence: dict[int, np.ndarray] = {}
        self.magnitude: dict[int, np.ndarray] = {}
        self.examples: dict[int, float] = {}
        self.rounds: dict[int, set[int]] = defaultdict(set)

    def __call__(self, node: int, received: Any, reply: Any) -> None:
        if reply.has_error() or p.METRICS not in reply.content.metric_records:
            return None
        metrics = reply.content.metric_records[p.METRICS]
        if p.NUM_EXAMPLES not in metrics:  # an evaluation reply
            return None
        user, server_round = int(metrics[p.USER_ID]), content_round(received.content)
        self.presence.setdefault(user, np.zeros(self.n_items))
        self.magnitude.setdefault(user, np.zeros(self.n_items))
        self.examples[user] = float(metrics[p.NUM_EXAMPLES])
        if p.SHARED not in reply.content.array_records:  # secure aggregation: masked, unseen
            return None
        sent = received.content.array_records[p.SHARED]
        upload = reply.content.array_records[p.SHARED]
        change = np.zeros(self.n_items)
        for name in upload:
            if name.endswith(p.ROWS):
                continue
            value = upload[name].numpy().astype(np.float32)
            broadcast = sent[name].numpy().astype(np.float32)
            ids_key = name + p.ROWS
            if ids_key in upload:  # sparse: the rows the client trained, with their ids
                ids = upload[ids_key].numpy()
                change[ids] += np.linalg.norm(value - broadcast[ids], axis=1) + 1e-12
            elif value.ndim == 2 and value.shape[0] == self.n_items:
                change += np.linalg.norm(value - broadcast, axis=1)
        self.presence[user] += change > 0
        self.magnitude[user] += change
        self.rounds[user].add(server_round)
        return None

    def guesses(self, neg_per_pos: int, seed: int = 0) -> dict[int, np.ndarray]:
        """Top rows by presence, then size of change; ties (all rows, when the server saw only
        masked updates) broken at random, which is the best guess without information."""
        rng = np.random.default_rng(seed)
        out = {}
        for user, presence in self.presence.items():
            k = int(round(self.examples[user] / (1 + neg_per_pos)))
            order = np.lexsort((rng.random(self.n_items), -self.magnitude[user], -presence))
            out[user] = order[:k]
        return out


def score(guesses: dict[int, np.ndarray], truth: dict[int, np.ndarray]) -> dict[str, float]:
    precision, recall, f1 = [], [], []
    for user, guess in guesses.items():
        hits = np.intersect1d(guess, truth[user]).size
        p_ = hits / max(guess.size, 1)
        r_ = hits / max(truth[user].size, 1)
        precision.append(p_)
        recall.append(r_)
        f1.append(0.0 if hits == 0 else 2 * p_ * r_ / (p_ + r_))
    return {"precision": float(np.mean(precision)), "recall": float(np.mean(recall)),
            "f1": float(np.mean(f1)), "users": len(guesses)}


def attack(run_config: dict[str, Any]) -> dict[str, Any]:
    """Run the app once under observation and score the server's guesses."""
    from datasets.registry import load_dataset, load_split

    cfg = RunConfig.from_run_config(run_config)
    dataset = load_dataset(cfg.dataset, cfg.data_path(), cfg.cache_path(), cfg.synthetic_spec())
    split = load_split(cfg.dataset, cfg.data_path(), cfg.cache_path(), cfg.seed,
                       cfg.synthetic_spec(), cfg.cold_items)
    observer = UploadObserver(dataset.n_items)
    run_inprocess({**run_config, "max-in-flight": 0}, dataset.n_users, fault=observer,
                  record=False)
    truth = {u: split.client(u).train_items for u in range(split.n_users)}
    result = score(observer.guesses(cfg.neg_per_pos), truth)
    budget = cfg.ldp_budget()
    return {**result, "rounds": cfg.num_server_rounds,
            "epsilon": budget.epsilon if budget is not None else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--run-config", default="", help="the run (dataset, strategy, ...)")
    parser.add_argument("--variant", action="append", default=None,
                        help="extra run config of one variant; repeat for several "
                             "(default: the run as configured)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds the server observes")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    base = {"results-dir": "/tmp/gfmfr-attack", **parse_overrides(args.run_config),
            "num-server-rounds": args.rounds, "eval-every": args.rounds}
    results = {}
    for variant in args.variant or [""]:
        config = {**base, **parse_overrides(variant)}
        results[variant or "default"] = out = attack(config)
        print(f"{variant or 'default'}: precision {out['precision']:.3f} recall "
              f"{out['recall']:.3f} F1 {out['f1']:.3f} over {out['users']} users, "
              f"{out['rounds']} rounds" + (f", epsilon {out['epsilon']:.3g}"
                                           if out["epsilon"] else ""), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"run_config": base, "results": results}, indent=1))


if __name__ == "__main__":
    main()
