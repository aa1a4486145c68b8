"""Writing a run's results: ``summary.json`` (config, best round, metrics, rounds) and ``rounds.csv``."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

from strategies.config import RunConfig
from strategies.history import RunHistory
from strategies.protocol import RANKING_METRICS


def run_directory(cfg: RunConfig, backbone: str) -> Path:
    """``results-dir/run-name``; without a run-name a dated one that no earlier run holds (two
    runs started in the same second get ``-2``, ``-3``, ...)."""
    results = Path(cfg.results_dir).expanduser().resolve()
    if cfg.run_name:
        return results / cfg.run_name
    stem = f"{cfg.dataset}-{cfg.strategy}-{backbone}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = results / stem, 1
    while candidate.exists():
        n += 1
        candidate = results / f"{stem}-{n}"
    return candidate


def summary(cfg: RunConfig, history: RunHistory, backbone: str, dataset: str,
            total_seconds: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    best = history.best()
    return {
        "config": {**cfg.as_dict(), "backbone": backbone},
        "dataset": dataset,
        "best_round": history.best_round,
        "select_metric": cfg.select_metric,
        "val": best.val if best else None,
        "test": best.test if best else None,
        **({"cold": best.cold} if best and best.cold else {}),
        "early_stopped_after": history.stopped_after,
        "seconds_per_round": history.seconds_per_round(),
        "total_seconds": total_seconds,
        "rounds": [r.as_dict() for _, r in sorted(history.rounds.items())],
        **(extra or {}),
    }


def write_results(directory: Path, content: dict[str, Any]) -> Path:
    """Write ``summary.json`` and ``rounds.csv`` into ``directory`` atomically; return the summary path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "summary.json"
    _atomic_write(path, json.dumps(content, indent=2, default=float))
    columns = ["round", "seconds", "trained", "failed", "rejected", "train_loss", "kd_loss",
               "kd_weight", "evaluated_users"]
    splits = ("val", "test", "cold") if "cold" in content else ("val", "test")
    columns += [f"{split}_{m}" for split in splits for m in RANKING_METRICS]
    rows = []
    for r in content["rounds"]:
        row = {c: r.get(c) for c in columns[:9]}
        for split in splits:
            for m in RANKING_METRICS:
                row[f"{split}_{m}"] = (r.get(split) or {}).get(m)
        rows.append(row)
    tmp = directory / "rounds.csv.tmp"
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, directory / "rounds.csv")
    return path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
