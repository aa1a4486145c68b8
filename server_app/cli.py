"""``gfmfr``: run the app where ``flower.toml`` says, and keep Flower's config in step with it.

    gfmfr run [FEDERATION] [-c "key=value ..."]   run on a federation of flower.toml
    gfmfr sync                                     write flower.toml's federations into
                                                   $FLWR_HOME/config.toml

For a simulated federation ``run`` starts a private SuperLink (own port, Ray settings from
``[simulation]``), runs the app, checks that Flower reports ``finished:completed`` and stops every
process it started. For a deployment it submits the run to the SuperLink named in flower.toml.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from server_app import federations as fz
from server_app import processes

SIMULATION_CONNECTION = "gfmfr-simulation"


def executable(name: str) -> str:
    """A Flower command from this environment's bin folder, so an unactivated venv works too."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gfmfr", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the app on a federation of flower.toml")
    run.add_argument("federation", nargs="?", help="federation name (default: flower.toml's)")
    run.add_argument("-c", "--run-config", default="", help='overrides, e.g. "seed=1 lr=0.05"')
    run.add_argument("--flower-toml", type=Path, default=fz.FLOWER_TOML)
    sync = sub.add_parser("sync", help="write flower.toml's federations into Flower's config")
    sync.add_argument("--flower-toml", type=Path, default=fz.FLOWER_TOML)
    args = parser.parse_args(argv)
    try:
        project = fz.load_flower_toml(args.flower_toml)
        if args.command == "sync":
            path = sync_connections(project)
            print(f"wrote {len(project.federations)} federations to {path}")
            return 0
        return run_federation(project, args.federation, args.run_config)
    except (fz.FlowerTomlError, RuntimeError) as error:
        print(f"gfmfr: {error}", file=sys.stderr)
        return 2


def sync_connections(project: fz.FlowerToml) -> Path:
    return fz.write_connections({name: fz.connection_entry(fed, project.simulation)
                                 for name, fed in project.federations.items()})


def run_federation(project: fz.FlowerToml, name: str | None, overrides: str) -> int:
    """Run the app on one federation; return 0 only if Flower reports the run completed."""
    fed = project.federation(name)
    command = [executable("flwr"), "run", str(fz.PROJECT_ROOT)]
    for values in (fz.run_config_arg(fed.run_config), overrides):  # later flags win
        if values:
            command += ["--run-config", values]
    if fed.kind == "deployment":
        sync_connections(project)
        return _submit(command[:3] + [fed.name] + command[3:] + ["--stream"], fed.name)
    port = processes.free_port()
    fz.write_connections({SIMULATION_CONNECTION: {"address": f"127.0.0.1:{port}",
                                                  "insecure": True}})
    log_dir = Path(tempfile.mkdtemp(prefix="gfmfr-superlink-"))
    superlink = processes.start(
        [executable("flower-superlink"), "--insecure", "--simulation", "--isolation", "subprocess",
         "--host", "127.0.0.1", "--port", str(port), "--database", ":flwr-in-memory:",
         "--disable-runtime-dependency-installation"],
        log_dir / "superlink.log", env=project.simulation.environment())
    try:
        processes.wait_http(port, superlink, log_dir / "superlink.log")
        command[3:3] = [SIMULATION_CONNECTION]
        command += ["--stream", "--federation-config",
                    fz.simulation_options(fed, project.simulation)]
        return _submit(command, SIMULATION_CONNECTION)
    finally:
        processes.stop(superlink.pid)


def _submit(command: list[str], connection: str) -> int:
    """Run ``flwr run`` streaming its output, then ask Flower how the run ended."""
    env = {**os.environ, **processes.QUIET_ENV}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env) as proc:
        seen = []
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if len(seen) < 200:
                seen.append(line)
    run_id = processes.run_id_from_output("".join(seen))
    if run_id is None:
        print("gfmfr: flwr run did not start a run (see its output above)", file=sys.stderr)
        return 1
    status = processes.run_status(connection, run_id)
    print(f"gfmfr: run {run_id} ended as {status}")
    return 0 if status == "finished:completed" else 1


if __name__ == "__main__":
    sys.exit(main())
