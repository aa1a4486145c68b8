"""Seconds per round and peak memory of real `gfmfr run` simulations, per strategy.

    python -m benchmarks.rounds --federation ml-100k-mm --strategies fedncf fedrap gfmfr --rounds 4

Each strategy runs as a user runs it (private SuperLink, Ray simulation, one SuperNode per user,
every client trained and evaluated each round). Seconds per round exclude round 1, which pays
for Ray workers importing torch and loading the data; peak memory is the resident memory of the
whole process tree (SuperLink, ServerApp, Ray workers).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.procmem import PeakMemory

ROOT = Path(__file__).resolve().parent.parent


def run_one(federation: str, strategy: str, rounds: int, extra: str, results: Path) -> dict:
    name = f"bench-{federation}-{strategy}"
    overrides = (f"strategy='{strategy}' num-server-rounds={rounds} run-name='{name}' "
                 f"results-dir='{results}' {extra}")
    start = time.perf_counter()
    with subprocess.Popen([sys.executable, "-m", "server_app.cli", "run", federation, "-c",
                           overrides], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc, \
            PeakMemory(proc.pid) as memory:
        log = proc.stdout.read()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{strategy} failed:\n{log[-4000:]}")
    summary = json.loads((results / name / "summary.json").read_text())
    trained = [r for r in summary["rounds"] if r["trained"]]
    later = [r["seconds"] for r in trained[1:]] or [trained[0]["seconds"]]
    later_rounds = trained[1:] or trained
    server, client = {}, {}
    for r in later_rounds:
        for phase, seconds in r["server_seconds"].items():
            server[phase] = server.get(phase, 0.0) + seconds / len(later_rounds)
        for phase, seconds in r["client_seconds"].items():
            client[phase] = client.get(phase, 0.0) + seconds / len(later_rounds)
    failed = sum(r["failed"] for r in summary["rounds"])
    if failed:
        print(f"WARNING: {strategy}: {failed} client replies failed over {rounds} rounds; its "
              "seconds per round do not describe full rounds", flush=True)
    return {"strategy": strategy, "federation": federation, "rounds": rounds,
            "failed_clients": failed,
            "first_round_s": trained[0]["seconds"], "seconds_per_round": sum(later) / len(later),
            "server_phases_s": server, "client_cpu_s": client,
            "peak_rss_gb": memory.peak / 2**30, "wall_s": wall,
            "test": summary["test"]}


def code_version() -> str:
    """The commit measured (``-dirty`` with uncommitted changes), so a table can say which code."""
    return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                          capture_output=True).stdout.strip() or "unknown"


def parallel_clients() -> tuple[int, str]:
    """ClientApps Ray runs at once with flower.toml's [simulation] settings, and where Ray runs
    ("local" or the cluster's address), so that a row says which engine it timed."""
    from server_app.federations import load_flower_toml

    settings = load_flower_toml().simulation
    return max(1, settings.ray_cpus // settings.client_cpus), settings.ray_address or "local"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--federation", default="ml-100k-mm")
    parser.add_argument("--strategies", nargs="+", default=["fedncf", "fedrap", "gfmfr"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--run-config", default="", help="extra overrides for every run")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows already in --json for strategies not run now")
    args = parser.parse_args()
    results = Path(tempfile.mkdtemp(prefix="gfmfr-bench-"))
    rows = []
    workers, ray = parallel_clients()
    print(f"{'strategy':<16} {'s/round':>8} {'round 1':>8} {'peak GB':>8} {'wall s':>7}  "
          f"per round: client CPU s (train, eval; {workers} ClientApps in parallel), server s, "
          "rest = messaging")
    for strategy in args.strategies:
        row = run_one(args.federation, strategy, args.rounds, args.run_config, results)
        row["client_apps"], row["ray"] = workers, ray
        row["measured"] = f"{time.strftime('%Y-%m-%d')} at {code_version()}"
        rows.append(row)
        train, evaluate = (row["client_cpu_s"].get(k, 0.0) for k in ("train-seconds",
                                                                       "eval-seconds"))
        # aggregation runs as replies stream in, overlapped with client work: part of the rest
        server = sum(v for k, v in row["server_phases_s"].items() if k != "aggregate")
        row["messaging_s"] = row["seconds_per_round"] - server - (train + evaluate) / workers
        phases = ", ".join(f"{k} {v:.2f}" for k, v in row["server_phases_s"].items())
        print(f"{strategy:<16} {row['seconds_per_round']:8.2f} {row['first_round_s']:8.2f} "
              f"{row['peak_rss_gb']:8.2f} {row['wall_s']:7.1f}  client {train:.1f} + "
              f"{evaluate:.1f}, server {phases}, rest {row['messaging_s']:.2f}", flush=True)
    if args.json:
        if args.append and args.json.is_file():
            ran = {row["strategy"] for row in rows}
            rows = [r for r in json.loads(args.json.read_text()) if r["strategy"] not in ran] + rows
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
