"""Bytes on the wire per client per round, per strategy and wire format (serialised messages).

    python -m benchmarks.communication --dataset ml-100k-mm --rounds 2

Runs each configuration for a few rounds in one process (``server_app.inprocess``: the real
messages, serialised with Flower's protobuf format) and reports the mean size of a training
message (down) and its reply (up) in the last round, when GFMFR's group payloads are flowing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from datasets.registry import load_dataset
from server_app.inprocess import run_inprocess
from strategies.config import RunConfig

CONFIGS = [
    ("fcf", {}), ("fedncf", {}), ("fedrap", {}), ("fedrap-original", {}), ("pfedrec", {}),
    ("gfmfr", {"backbone": "fedrap"}), ("gfmfr", {"backbone": "ncf"}),
    ("gfmfr", {"backbone": "pfedrec"}),
    ("fedrap", {"upload-rows": False}), ("fedrap", {"upload-rows": False, "wire-dtype": "float16"}),
    ("fedrap", {"wire-dtype": "float16"}), ("gfmfr", {"backbone": "fedrap", "wire-dtype": "float16"}),
]  # the defaults upload only the item rows a client trained (upload-rows = auto)


def measure(dataset: str, strategy: str, extra: dict, rounds: int, workdir: Path) -> dict:
    run_config = {"dataset": dataset, "strategy": strategy, "num-server-rounds": rounds,
                  "results-dir": str(workdir), **extra}  # each run its own dated folder
    cfg = RunConfig.from_run_config(run_config)
    users = load_dataset(cfg.dataset, cfg.data_path(), cfg.cache_path(),
                         cfg.synthetic_spec()).n_users
    grid, _ = run_inprocess({**run_config, "max-in-flight": 0}, users, record=False)
    count, down, up = grid.traffic[(rounds, "train")]
    return {"strategy": strategy, **extra, "down_kb": down / count / 1024,
            "up_kb": up / count / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k-mm")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gfmfr-communication"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    print(f"{'configuration':<58} {'down KB':>9} {'up KB':>9}")
    for strategy, extra in CONFIGS:
        row = measure(args.dataset, strategy, extra, args.rounds, args.workdir)
        rows.append(row)
        label = strategy + "".join(f" {k}={v}" for k, v in extra.items())
        print(f"{label:<58} {row['down_kb']:9.1f} {row['up_kb']:9.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
