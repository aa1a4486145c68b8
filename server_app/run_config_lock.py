"""Run-config values a deployment's operator fixes for every run (issue 26).

The app's FAB hash pins the code (``server_app/trusted_apps.py``), not the run config that
``flwr run`` passes: anyone who reaches the SuperLink's Control API can submit the genuine app
with ``node-registry=''`` and so switch off the binding of node keys to users, or point
``results-dir`` elsewhere on the server. The operator writes the values no caller may change
into a TOML file on the server (``key = value`` lines, run-config names); ``gfmfr superexec
--locked-run-config FILE`` hands its path to every ServerApp it starts (the environment variable
``GFMFR_LOCKED_RUN_CONFIG``, inherited by ``flwr-serverapp``), and the ServerApp refuses a run
whose config differs in any of them before it loads anything. ``gfmfr deploy up`` locks
``node-registry`` on a node-auth deployment.

Fail closed: a file that is named but missing or malformed refuses every run.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from logging import ERROR
from pathlib import Path

from flwr.common import log

ENV = "GFMFR_LOCKED_RUN_CONFIG"
Value = str | int | float | bool


class RunConfigLocked(ValueError):
    """The run's config differs from the operator's locked values (or they cannot be read)."""


def load(path: Path) -> dict[str, Value]:
    """The locked values; a clear error for a missing, unreadable or malformed file."""
    try:
        values = tomllib.loads(Path(path).read_text())
    except OSError as error:
        raise RunConfigLocked(f"cannot read the locked run config {path}: {error.strerror}; "
                              "write it (key = value lines) or start gfmfr superexec without "
                              "--locked-run-config") from None
    except tomllib.TOMLDecodeError as error:
        raise RunConfigLocked(f"the locked run config {path} is not TOML ({error}); write "
                              "key = value lines, e.g. node-registry = \"/srv/registry.json\"") \
            from None
    nested = sorted(k for k, v in values.items() if not isinstance(v, Value))
    if nested:
        raise RunConfigLocked(f"the locked run config {path} has values that are no run-config "
                              f"values (tables or lists): {', '.join(nested)}")
    return values


def write(path: Path, values: Mapping[str, Value]) -> Path:
    """``values`` as the TOML file ``load`` reads (strings quoted, TOML's escapes)."""
    def show(value: Value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(value)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# run-config values no `flwr run` may change (docs/deployment.md)\n"
                   + "".join(f"{key} = {show(value)}\n" for key, value in values.items()))
    os.replace(tmp, path)
    return path


def check(run_config: Mapping[str, Value], environ: Mapping[str, str] = os.environ) -> None:
    """Refuse ``run_config`` if it differs from the locked values the environment names.

    The submitter sees the keys and the values it sent in the run's status; the locked values
    (often server paths) and the file's path go to the server's log only."""
    where = environ.get(ENV, "")
    if not where:
        return
    try:
        locked = load(Path(where))
    except RunConfigLocked as error:
        log(ERROR, "%s", error)
        raise RunConfigLocked("the server's locked run config cannot be read: every run is "
                              "refused until its operator fixes it (see the server's log)") from None
    unknown = sorted(k for k in locked if k not in run_config)
    if unknown:
        log(ERROR, "locked run config %s names keys this app does not have: %s", where,
            ", ".join(unknown))
        raise RunConfigLocked(f"the server locks run-config keys this app does not have "
                              f"({', '.join(unknown)}): every run is refused until its operator "
                              "fixes it")
    differ = {k: v for k, v in locked.items() if run_config[k] != v}
    if differ:
        submitted = ", ".join(f"{k}={run_config[k]!r}" for k in differ)
        log(ERROR, "refused run: %s differs from the locked run config %s (%s)", submitted, where,
            ", ".join(f"{k}={v!r}" for k, v in differ.items()))
        raise RunConfigLocked(f"refused: the server's operator locked run-config values this run "
                              f"changes ({submitted}). Submit it without them (gfmfr run NAME).")
