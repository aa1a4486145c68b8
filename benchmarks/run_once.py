"""Run the app once in one process (no Ray, no SuperLink): ``python -m benchmarks.run_once -c "k=v"``.

The same ServerApp, strategies and ClientApp as ``gfmfr run``, one SuperNode per user of the
dataset, on one core. Used by ``benchmarks.compare --engine inprocess`` to run several
configurations side by side on a small machine.
"""

from __future__ import annotations

import argparse

from server_app.inprocess import run_dataset_inprocess
from strategies.config import parse_overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--run-config", default="")
    args = parser.parse_args()
    run_dataset_inprocess(parse_overrides(args.run_config))


if __name__ == "__main__":
    main()
