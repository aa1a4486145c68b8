"""How round time and memory grow with clients and items (synthetic data, one process).

    python -m benchmarks.scale --json docs/benchmarks/scale.json

Each point runs the real ServerApp, strategy and ClientApp in one process (``server_app.inprocess``:
no Ray, so the numbers isolate the app's own cost) for a few rounds on a generated dataset, and
reports seconds per training round (rounds after the first, without evaluation) and the peak
resident memory of the process. A point with ``participants`` trains that many clients per round
out of all registered ones, to separate the cost of taking part from the cost of existing.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

from benchmarks.procmem import PeakMemory
from server_app.inprocess import run_inprocess

# (users, items, participants per round)
POINTS = [
    (250, 400, None), (1000, 400, None), (4000, 400, None),  # clients, all taking part
    (1000, 100, None), (1000, 1600, None), (1000, 6400, None),  # items
    (10_000, 400, 1000), (100_000, 400, 1000),  # many registered, 1000 taking part
]


def measure(users: int, items: int, participants: int | None, strategy: str, rounds: int,
            workdir: Path) -> dict:
    fraction = 1.0 if participants is None else participants / users
    run_config = {"dataset": "synthetic", "synthetic-users": users, "synthetic-items": items,
                  "synthetic-interactions": 20, "synthetic-tastes": 4, "strategy": strategy,
                  "num-server-rounds": rounds, "eval-every": rounds + 1,
                  "fraction-train": fraction, "results-dir": str(workdir),
                  "cache-dir": str(workdir / "cache"), "max-in-flight": 0}
    start = time.perf_counter()
    with PeakMemory() as memory:
        _, strategy_run = run_inprocess(run_config, users, record=False)
    wall = time.perf_counter() - start
    later = [r.seconds for k, r in sorted(strategy_run.history.rounds.items())
             if k >= 2 and r.trained]
    row = {"users": users, "items": items, "participants": participants or users,
           "strategy": strategy, "seconds_per_round": sum(later) / len(later),
           "peak_rss_gb": memory.peak / 2**30, "wall_s": wall}
    del strategy_run
    gc.collect()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", default="fedncf")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-users", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gfmfr-scale"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    print(f"{'users':>8} {'items':>6} {'taking part':>11} {'s/round':>8} {'peak GB':>8}")
    for users, items, participants in POINTS:
        if users > args.max_users:
            continue
        row = measure(users, items, participants, args.strategy, args.rounds, args.workdir)
        rows.append(row)
        print(f"{users:8d} {items:6d} {row['participants']:11d} {row['seconds_per_round']:8.2f} "
              f"{row['peak_rss_gb']:8.2f}", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
