"""Tune the training recipe on the validation split: ``gfmfr tune`` (Optuna, resumable).

    gfmfr tune ml-100k-mm --trials 24 --rounds 30 --out docs/tuning/ml-100k-mm-fcf \
        -c "strategy='fcf'"

Every trial is a real run of the app (the same ServerApp, strategies and ClientApp as ``gfmfr run``,
in one process, ``server_app.inprocess``) with the trial's values over ``-c``. Its score is the best
*validation* ``select-metric`` over its rounds; test metrics are never read (a test runs the tuner
on two datasets that differ only in their test items and checks it does exactly the same). The
study lives in ``<out>/study.db``, so an interrupted study resumes; ``<out>/trials.csv`` and
``<out>/study.json`` (search space, every trial, chosen values) are rewritten after every trial.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any

from strategies.config import parse_overrides
from strategies.protocol import VAL

# run-config key -> (kind, low, high) or ("categorical", choices); log scale for rates
SEARCH_SPACE: dict[str, tuple] = {
    "lr": ("log", 1e-3, 5e-2),
    "item-lr": ("log", 1e-3, 5e-2),
    "server-lr": ("log", 1.0, 10.0),
    "local-epochs": ("int", 1, 5),
}


def parse_space(text: str) -> dict[str, tuple]:
    """``key=log:1e-3:1e-1 key2=int:1:5 key3=cat:a|b`` -> a search space."""
    space = {}
    for item in text.split():
        key, _, spec = item.partition("=")
        kind, *rest = spec.split(":")
        if kind == "cat":
            space[key] = ("categorical", tuple(_literal(v) for v in rest[0].split("|")))
        elif kind in ("log", "float", "int") and len(rest) == 2:
            cast = int if kind == "int" else float
            space[key] = (kind, cast(rest[0]), cast(rest[1]))
        else:
            raise ValueError(f"bad search space entry {item!r}: use key=log:LOW:HIGH, "
                             "key=float:LOW:HIGH, key=int:LOW:HIGH or key=cat:A|B")
    return space


def _literal(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def suggest(trial: Any, space: dict[str, tuple]) -> dict[str, Any]:
    values = {}
    for key, spec in space.items():
        kind = spec[0]
        if kind == "categorical":
            values[key] = trial.suggest_categorical(key, list(spec[1]))
        elif kind == "int":
            values[key] = trial.suggest_int(key, spec[1], spec[2])
        else:
            values[key] = trial.suggest_float(key, spec[1], spec[2], log=kind == "log")
    return values


def validation_score(run_config: dict[str, Any]) -> tuple[float, int | None]:
    """Run the app in-process; return (best validation select-metric, its round). Reads nothing
    but validation metrics."""
    from server_app.inprocess import run_dataset_inprocess
    from strategies.config import RunConfig

    cfg = RunConfig.from_run_config(run_config)
    strategy = run_dataset_inprocess(run_config)
    history = strategy.history
    best = history.best()
    if best is None:
        return float("-inf"), None
    return float(getattr(best, VAL)[cfg.select_metric]), history.best_round


def tune(base: dict[str, Any], space: dict[str, tuple], trials: int, out: Path,
         seed: int = 0) -> dict:
    """Run (or resume) the study; write and return its record."""
    import optuna

    from strategies.config import RunConfig

    unknown = sorted(set(space) - set(RunConfig().as_dict()))
    if unknown:
        raise ValueError(f"the search space names unknown run-config keys: {', '.join(unknown)} "
                         "(see the README's run-config table)")
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="gfmfr", direction="maximize", load_if_exists=True,
        storage=f"sqlite:///{(out / 'study.db').resolve()}",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, trials)))

    def objective(trial: Any) -> float:
        values = suggest(trial, space)
        score, best_round = validation_score({**base, **values,
                                              "run-name": f"trial-{trial.number}"})
        trial.set_user_attr("best_round", best_round)
        print(f"trial {trial.number}: {values} -> val {score:.4f} (round {best_round})",
              flush=True)
        return score

    def write(study_: Any, _trial: Any = None) -> None:
        write_study(study_, base, space, out)

    done = len([t for t in study.trials if t.state.name == "COMPLETE"])
    if done < trials:
        study.optimize(objective, n_trials=trials - done, callbacks=[write])
    write(study)
    return json.loads((out / "study.json").read_text())


def write_study(study: Any, base: dict[str, Any], space: dict[str, tuple], out: Path) -> None:
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    rows = [{"trial": t.number, **t.params, "val": t.value,
             "best_round": t.user_attrs.get("best_round")} for t in complete]
    if rows:
        with (out / "trials.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    best = study.best_trial if complete else None
    record = {"objective": f"best validation {base.get('select-metric', 'HR@50')} over the rounds",
              "fixed": base, "search_space": {k: list(v) for k, v in space.items()},
              "trials": rows,
              "best": None if best is None else {"trial": best.number, "params": best.params,
                                                 "val": best.value}}
    (out / "study.json").write_text(json.dumps(record, indent=1, default=str))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gfmfr tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", default="ml-100k-mm")
    parser.add_argument("-c", "--run-config", default="", help="fixed run-config overrides")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=30, help="num-server-rounds of each trial")
    parser.add_argument("--space", default="", help="search space, e.g. "
                        "\"lr=log:1e-3:5e-2 local-epochs=int:1:5\"; default: the recipe's keys")
    parser.add_argument("--out", type=Path, default=Path("results/tuning"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler")
    args = parser.parse_args(argv)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    base = {"dataset": args.dataset, "num-server-rounds": args.rounds,
            "results-dir": str(args.out / "runs"), **parse_overrides(args.run_config)}
    space = parse_space(args.space) if args.space else SEARCH_SPACE
    record = tune(base, space, args.trials, args.out, args.seed)
    if record["best"] is not None:
        print(f"best trial {record['best']['trial']}: {record['best']['params']} "
              f"(validation {record['best']['val']:.4f}); study in {args.out}")


if __name__ == "__main__":
    main()
