"""ServerApp: parse the run config, build the strategy from the registry, run it, write results."""

from __future__ import annotations

import random
import shlex
import time
from logging import INFO, WARNING
from pathlib import Path

import numpy as np
import torch
from flwr.app import Context
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.superlink.grid import InMemoryGrid

from datasets.registry import load_dataset
from server_app import linkstate_index, run_config_lock
from server_app.nodes import connect_nodes, load_registry
from server_app.results import run_directory, summary, write_results
from server_app.run_log import encoder_progress_in_log, without_flower_history
from server_app.windowed_grid import WindowedGrid
from strategies.backbones.registry import build_backbone
from strategies.config import RunConfig
from strategies.fedrec import FedRecStrategy
from strategies.records import to_record
from strategies.registry import backbone_name, hyper, strategy_spec

linkstate_index.install()  # the simulation's engine shares this process's LinkState
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> FedRecStrategy:
    """Run one federated job; returns the strategy (its ``history``) for callers in-process."""
    run_config_lock.check(dict(context.run_config))  # a deployment's operator-fixed values
    cfg = RunConfig.from_run_config(dict(context.run_config))
    spec, backbone = strategy_spec(cfg), backbone_name(cfg)
    seed_everything(cfg.seed)
    dataset = load_dataset(cfg.dataset, cfg.data_path(), cfg.cache_path(), cfg.synthetic_spec())
    log(INFO, "%s", dataset.describe())
    spec.strategy.check(cfg, dataset)
    run_dir = run_directory(cfg, backbone)
    check_run_dir(run_dir, cfg.resume)  # before nodes connect and features are encoded
    in_simulation = simulated(grid)
    if cfg.resume:
        FedRecStrategy.check_resumable(run_dir / "checkpoint.npz", cfg, in_simulation)
    template = build_backbone(backbone, dataset.n_items, hyper(cfg), cfg.seed)
    users = connect_nodes(grid, dataset.n_users, cfg.dataset, cfg.min_nodes or dataset.n_users,
                          cfg.node_wait, cfg.round_timeout, load_registry(cfg.node_registry))
    cfg = cfg.resolve_secure_aggregation(in_simulation, len(users))
    if cfg.secure:
        log(INFO, "secure aggregation (SecAgg+): on")
    else:
        log(INFO, "secure aggregation (SecAgg+): off%s", " (a simulation: one machine holds every "
            "user's data; secure-aggregation=true to measure it)" if in_simulation else "")
    with encoder_progress_in_log():  # GFMFR encodes item content here, once
        strategy = spec.strategy.for_run(cfg, template, dataset, users)
    budget = cfg.ldp_budget()
    if budget is not None:
        log(INFO, "local DP: %s noise of scale %.4g on updates clipped to %s %.4g: epsilon %.4g "
            "per round, %.4g over %d rounds (delta %.2g, %s)", budget.mechanism, budget.scale,
            budget.as_dict()["clip_norm"], budget.clip, budget.epsilon_round, budget.epsilon,
            budget.rounds, budget.delta, budget.as_dict()["accountant"])
    elif cfg.ldp_noise:
        log(WARNING, "local DP noise without ldp-clip: the update is unbounded, so the noise "
            "buys no finite privacy budget; set ldp-clip (or use ldp-epsilon)")
    log(INFO, "strategy %s (%s), backbone %s", cfg.strategy, spec.description, backbone)
    strategy.checkpoint_path = run_dir / "checkpoint.npz"
    shared, done = template.shared_arrays(), 0
    if cfg.resume:
        done, shared = strategy.resume()
        log(INFO, "resuming %s after round %d of %d", run_dir.name, done, cfg.num_server_rounds)
    start = time.perf_counter()
    if cfg.max_in_flight:
        grid = WindowedGrid(grid, cfg.max_in_flight)
    if done < cfg.num_server_rounds:
        with without_flower_history():  # the run ends with its result, not Flower's dump
            strategy.start(grid, to_record(shared), num_rounds=cfg.num_server_rounds - done,
                           timeout=cfg.round_timeout)
    content = summary(cfg, strategy.history, backbone, dataset.describe(),
                      time.perf_counter() - start,
                      {"data_path": str(cfg.data_path()),
                       **({"privacy": budget.as_dict()} if budget is not None else {})})
    path = write_results(run_dir, content)
    _log_final(content, path)
    return strategy


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Fail before anything trains: a results folder that cannot be written, or a new run that
    would overwrite an earlier run's results or the checkpoint of an unfinished one (which only
    ``resume=true`` continues)."""
    finished = (run_dir / "summary.json").is_file()
    if finished and not resume:
        raise ValueError(f"{run_dir} holds the results of a finished run; a new run would "
                         "overwrite them. Choose another run-name (or leave it empty for a dated "
                         "one), or move that folder away first.")
    if (run_dir / "checkpoint.npz").is_file() and not finished and not resume:
        raise ValueError(f"{run_dir} holds the checkpoint of an unfinished run; a new run would "
                         "overwrite it. Set resume=true to continue it, or choose another "
                         "run-name.")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"cannot write results to {run_dir} ({error.strerror or error}); set "
                         "results-dir to a folder you can write to.") from None


def simulated(grid: Grid) -> bool:
    """A simulation's grid (Flower's Ray engine, or the in-process one): every user's data is on
    this machine. A deployment's grid talks to SuperNodes on users' own devices."""
    return isinstance(grid, InMemoryGrid) or getattr(grid, "SIMULATED", False)


def seed_everything(seed: int) -> None:
    """One seed drives Python's ``random`` (Flower samples with it), numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _log_final(content: dict, path: Path) -> None:
    """The run's last lines: the result, where its files are and how to plot them."""
    folder = path.parent
    if content["best_round"] is None:
        log(INFO, "no evaluation was recorded")
    else:
        fmt = lambda m: " ".join(f"{k} {v:.4f}" for k, v in m.items())  # noqa: E731
        log(INFO, "best validation round %d (%s)", content["best_round"], content["select_metric"])
        log(INFO, "  val : %s", fmt(content["val"]))
        log(INFO, "  test: %s", fmt(content["test"]))
        if content.get("cold"):
            log(INFO, "  cold: %s (new items, ranked among new items)", fmt(content["cold"]))
    if content["seconds_per_round"] is not None:
        log(INFO, "%.2f s per round, %.1f s in all", content["seconds_per_round"],
            content["total_seconds"])
    log(INFO, "results in %s (summary.json, rounds.csv)", folder)
    log(INFO, "learning curves: gfmfr report %s --out %s", shlex.quote(str(folder)),
        shlex.quote(str(folder / "report")))
