"""Alias of ``gfmfr compare`` (``server_app/comparison.py``): ``python -m benchmarks.compare ARGS``
runs ``gfmfr compare ARGS``, so the commands recorded in older tables under ``docs/results/`` still
run as written."""

import sys

from server_app.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
