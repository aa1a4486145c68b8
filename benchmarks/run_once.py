"""Run the app once in one process (no Ray, no SuperLink): ``python -m benchmarks.run_once -c "k=v"``.

The same ServerApp, strategies and ClientApp as ``gfmfr run``, one SuperNode per user of the
dataset, on one core. Used by ``benchmarks.compare --engine inprocess`` to run several
configurations side by side on a small machine.
"""

from __future__ import annotations

import argparse

from datasets.registry import load_dataset
from server_app.inprocess import run_inprocess
from strategies.config import RunConfig, parse_overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--run-config", default="")
    args = parser.parse_args()
    run_config = parse_overrides(args.run_config)
    cfg = RunConfig.from_run_config(run_config)
    users = load_dataset(cfg.dataset, cfg.data_path(), cfg.cache_path(),
                         cfg.synthetic_spec()).n_users
    run_inprocess({**run_config, "max-in-flight": 0}, users, record=False)


if __name__ == "__main__":
    main()
