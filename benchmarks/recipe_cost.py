"""Client cost of the local optimiser: seconds of local training per round, SGD against Adam.

    python -m benchmarks.recipe_cost --dataset ml-100k-mm --backbone fedrap --users 300

Times ``client_app.training.train_local`` (the ClientApp's training, hand gradients) for the same
users, model and negatives under both optimisers, interleaved user by user so that a busy machine
slows both alike. The server's extra work (the row mean) is timed in every round's ``aggregate``
phase of ``summary.json``.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from client_app.training import train_local
from datasets.registry import load_split
from strategies.backbones.base import Hyper
from strategies.backbones.registry import build_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k-mm")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--backbone", default="fedrap")
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    split = load_split(args.dataset, Path(args.data_dir).resolve(), Path("/tmp"), 0)
    base = build_backbone(args.backbone, split.n_items, Hyper(), 0)
    hypers = {"sgd": Hyper(optimizer="sgd", item_lr=0.01 * split.n_items,
                           personal_lr=0.01 * split.n_items, weight_decay=1e-4),
              "adam": Hyper()}
    seconds = dict.fromkeys(hypers, 0.0)
    users = range(min(args.users, split.n_users))
    for user in users:
        for name, hyper in hypers.items():
            model = copy.deepcopy(base)
            model.hyper = replace(hyper, dim=model.hyper.dim)
            tic = time.perf_counter()
            train_local(model, split.client(user), np.random.default_rng([0, user]), epochs=5,
                        batch_size=256, neg_per_pos=4, server_round=3, num_rounds=50)
            seconds[name] += time.perf_counter() - tic
    n = len(users)
    for name, total in seconds.items():
        print(f"{args.backbone} {name}: {1000 * total / n:.2f} ms per client and round "
              f"({n} users, {total:.2f} s)")
    print(f"adam / sgd: {seconds['adam'] / seconds['sgd']:.3f}")


if __name__ == "__main__":
    main()
