"""``gfmfr``: run the app where ``flower.toml`` says, and keep Flower's config in step with it.

    gfmfr run [FEDERATION] [-c "key=value ..."]   run on a federation of flower.toml
    gfmfr sync                                     write flower.toml's federations into
                                                   $FLWR_HOME/config.toml
    gfmfr deploy up NAME [--nodes N] [--dry-run]  start deployment NAME's SuperLink and N
                                                   SuperNodes on this machine
    gfmfr deploy restart NAME NODE                 restart one SuperNode (same config and state)
    gfmfr deploy down NAME                         stop them, by pid
    gfmfr deploy pin NAME                          let them run the app as it is now (after edits)
    gfmfr certs DIR [--hosts H ...] [--nodes N]    test CA, SuperLink certificate, node keys
    gfmfr app-hash [--app DIR]                     the FAB hash `flwr run` submits for this app
                                                   (pin it on every machine: trusted-apps file)
    gfmfr superexec --trusted-apps FILE ...        Flower's SuperExec, running pinned apps only
                                                   (server_app/superexec.py)
    gfmfr superlink [--control-from NETS] ...      Flower's SuperLink whose Control API answers
                                                   only the operator (server_app/superlink.py)
    gfmfr data check [FEDERATION] [-c ...]         load a dataset as a run would and describe it
    gfmfr tune [DATASET] [-c ...] [--trials N]     tune the recipe on the validation split
                                                   (server_app/tuning.py; --help for options)
    gfmfr compare --runs RUN ... --out DIR         strategies and variants over seeds: one table
                                                   (server_app/comparison.py; --help for options)
    gfmfr report RUN_DIR ... --out DIR             learning curves (PNG) and a table of runs

For a simulated federation ``run`` starts a private SuperLink (own port, Ray settings from
``[simulation]``; with ``ray-address`` it first checks the Ray cluster there), runs the app,
checks that Flower reports ``finished:completed`` and stops every process it started. For a
deployment it submits the run to the SuperLink named in flower.toml.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from server_app import certificates, deploy, processes, trusted_apps
from server_app import federations as fz
from server_app.processes import executable

SIMULATION_CONNECTION = "gfmfr-simulation"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["superexec"]:  # every other argument is flower-superexec's
        from server_app import superexec

        return superexec.main(argv[1:])
    if argv[:1] == ["superlink"]:  # every other argument is flower-superlink's
        from server_app import superlink

        return superlink.main(argv[1:])
    if argv[:1] == ["tune"]:
        from server_app import tuning

        try:
            tuning.main(argv[1:])
        except ValueError as error:
            print(f"gfmfr: {error}", file=sys.stderr)
            return 2
        return 0
    args = _parser().parse_args(argv)
    try:
        if args.command == "compare":
            from server_app import comparison

            return comparison.main(args, "gfmfr " + shlex.join(argv))
        if args.command == "report":
            from server_app import run_report

            return run_report.main(args, "gfmfr " + shlex.join(argv))
        if args.command == "certs":
            certs = certificates.generate(args.folder, args.hosts, args.nodes)
            print(f"certificates in {certs.folder}: ca.crt, server.pem, server.key"
                  + (f", keys/node-0..{args.nodes - 1}(.pub)" if args.nodes else ""))
            return 0
        if args.command == "app-hash":
            print(trusted_apps.fab_hash(args.app))
            return 0
        project = fz.load_flower_toml(args.flower_toml)
        if args.command == "sync":
            path = sync_connections(project)
            print(f"wrote {len(project.federations)} federations to {path}")
            problems = [p for f in project.federations.values()
                        if (p := fz.root_certificates_problem(f))]
            for problem in problems:
                print(f"gfmfr: {problem}", file=sys.stderr)
            return 2 if problems else 0
        if args.command == "deploy":
            return deploy_command(project, args)
        if args.command == "data":
            print(check_data(project.federation(args.federation), args.run_config))
            return 0
        return run_federation(project, args.federation, args.run_config)
    except (fz.FlowerTomlError, RuntimeError, ValueError) as error:
        print(f"gfmfr: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gfmfr", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the app on a federation of flower.toml")
    run.add_argument("federation", nargs="?", help="federation name (default: flower.toml's)")
    run.add_argument("-c", "--run-config", default="", help='overrides, e.g. "seed=1 lr=0.05"')
    sync = sub.add_parser("sync", help="write flower.toml's federations into Flower's config")
    dep = sub.add_parser("deploy", help="start/stop a deployment's SuperLink and SuperNodes here")
    dep.add_argument("action", choices=("up", "down", "restart", "pin"))
    dep.add_argument("federation", help="a deployment federation of flower.toml")
    dep.add_argument("node", nargs="?", type=int, help="restart: the SuperNode (partition-id)")
    dep.add_argument("--nodes", type=int, help="up: SuperNodes to start (default: num-supernodes)")
    dep.add_argument("--dry-run", action="store_true", help="up: print the commands, start none")
    for command in (run, sync, dep):
        command.add_argument("--flower-toml", type=Path, default=fz.FLOWER_TOML)
    data = sub.add_parser("data", help="check a dataset before anything trains")
    data.add_argument("action", choices=("check",))
    data.add_argument("federation", nargs="?", help="federation whose dataset to check")
    data.add_argument("-c", "--run-config", default="", help='overrides, e.g. "data-dir=\'x\'"')
    data.add_argument("--flower-toml", type=Path, default=fz.FLOWER_TOML)
    from server_app import comparison

    comparison.add_arguments(sub.add_parser("compare", help="compare strategies over seeds",
                                            description=comparison.__doc__.split("\n\n")[0]))
    from server_app import run_report

    run_report.add_arguments(sub.add_parser("report", help="plot runs' learning curves",
                                            description=run_report.__doc__.split("\n\n")[0]))
    app_hash = sub.add_parser("app-hash", help="print the FAB hash `flwr run` submits for the "
                              "app: the line to pin in each machine's trusted-apps file")
    app_hash.add_argument("--app", type=Path, default=fz.PROJECT_ROOT,
                          help="the app's folder (default: this project)")
    certs = sub.add_parser("certs", help="make a test CA, SuperLink certificate and node keys")
    certs.add_argument("folder", type=Path)
    certs.add_argument("--hosts", nargs="*", default=[],
                       help="host names / IPs clients dial (127.0.0.1 and localhost always)")
    certs.add_argument("--nodes", type=int, default=0, help="SuperNode key pairs to make")
    return parser


def deploy_command(project: fz.FlowerToml, args: argparse.Namespace) -> int:
    """``gfmfr deploy up|down|restart``: everything started is recorded and stopped by pid."""
    fed = project.federation(args.federation)
    if args.action == "up":
        count = fed.num_supernodes if args.nodes is None else args.nodes
        if args.dry_run:
            print("\n".join(deploy.dry_run(fed, count)))
            return 0
        started = deploy.up(fed, count)
        print(f"deployment {fed.name}: SuperLink {fed.address} (pid {started.superlink_pid}), "
              f"{count} SuperNodes (pids {', '.join(str(n.pid) for n in started.nodes)}); logs "
              f"and state in {started.folder}\nrun it:  gfmfr run {fed.name}\n"
              f"stop it: gfmfr deploy down {fed.name}")
        return 0
    state = deploy.Deployment.load(deploy.run_dir(fed))
    if state is None:
        raise RuntimeError(f"deployment {fed.name} was never started here (no "
                           f"{fed.run_dir}/{deploy.STATE_FILE}).")
    if args.action == "down":
        print(f"stopped pids {deploy.down(state)}")
        return 0
    if args.action == "pin":
        app_hash = deploy.pin(fed, state)
        print(f"pinned FAB hash {app_hash} for the SuperLink and {len(state.nodes)} SuperNodes of "
              f"{fed.name} ({deploy.TRUSTED_APPS} in {state.folder} and each node's folder)")
        return 0
    if args.node is None:
        raise RuntimeError("gfmfr deploy restart NAME NODE: which SuperNode (its partition-id)?")
    node = deploy.restart_node(fed, state, args.node)
    print(f"SuperNode {node.index} runs again (pid {node.pid}); log {node.log}")
    return 0


def sync_connections(project: fz.FlowerToml) -> Path:
    entries = {}
    for name, fed in project.federations.items():
        try:
            entries[name] = fz.connection_entry(sized(fed), project.simulation)
        except ValueError as error:  # e.g. the own-data federation before its data is there
            print(f"gfmfr: left out federation {name}: {error}", file=sys.stderr)
    return fz.write_connections(entries)


def sized(fed: fz.Federation, overrides: str = "") -> fz.Federation:
    """A simulated federation with ``num-supernodes = "auto"`` sized to its dataset: one
    SuperNode per user left after loading (users with fewer than 3 interactions are dropped), so
    a dataset of one's own runs without editing flower.toml."""
    if fed.kind != "simulation" or fed.num_supernodes:
        return fed
    from dataclasses import replace

    from datasets.registry import load_dataset

    cfg = run_config_of(fed, overrides)
    users = load_dataset(cfg.dataset, cfg.data_path(), cfg.cache_path(),
                         cfg.synthetic_spec()).n_users
    print(f"gfmfr: federation {fed.name}: {users} SuperNodes, one per user of {cfg.dataset} "
          f"({cfg.data_path()})", flush=True)
    return replace(fed, num_supernodes=users)


def check_data(fed: fz.Federation, overrides: str = "") -> str:
    """``gfmfr data check``: load a federation's dataset and its split as a run would, and say
    what a run will see (or raise the loader's one-line error)."""
    from datasets.registry import load_dataset, load_split

    cfg = run_config_of(fed, overrides)
    data = load_dataset(cfg.dataset, cfg.data_path(), cfg.cache_path(), cfg.synthetic_spec())
    split = load_split(cfg.dataset, cfg.data_path(), cfg.cache_path(), cfg.seed,
                       cfg.synthetic_spec(), cfg.cold_items)
    catalog = data.catalog
    no_text = sum(not text.strip() for text in catalog.texts) if "text" not in catalog.features \
        else 0
    lines = [f"{cfg.dataset} in {cfg.data_path()}: OK",
             f"  users {data.n_users} (dropped {data.dropped_users} with fewer than 3 "
             f"interactions), items {data.n_items}, interactions {data.n_interactions} "
             f"({data.duplicates} repeated ones dropped)",
             f"  items without image {catalog.n_missing_images}, without text {no_text}",
             f"  split: {split.train.size} training interactions, one validation and one test "
             f"item per user" + ("" if data.timestamps is not None else
                                 " (no timestamps: seeded random hold-out)")]
    if split.cold is not None:
        lines.append(f"  new items (cold-items={cfg.cold_items}): {int(split.cold.sum())}, "
                     f"{split.cold_test.size} held-out interactions")
    if fed.kind == "simulation":
        lines.append(f"  a simulation runs {sized(fed, overrides).num_supernodes} SuperNodes")
    return "\n".join(lines)


def run_config_of(fed: fz.Federation, overrides: str = ""):
    """The run config a run on ``fed`` gets: pyproject defaults, the federation's, ``-c``."""
    import tomllib

    from strategies.config import RunConfig, parse_overrides

    pyproject = tomllib.loads((fz.PROJECT_ROOT / "pyproject.toml").read_text())
    defaults = pyproject["tool"]["flwr"]["app"]["config"]
    return RunConfig.from_run_config({**defaults, **fed.run_config, **parse_overrides(overrides)})


def run_federation(project: fz.FlowerToml, name: str | None, overrides: str) -> int:
    """Run the app on one federation; return 0 only if Flower reports the run completed."""
    fed = sized(project.federation(name), overrides)
    command = [executable("flwr"), "run", str(fz.PROJECT_ROOT)]
    for values in (registry_override(fed, overrides), fz.run_config_arg(fed.run_config),
                   overrides):  # later flags win
        if values:
            command += ["--run-config", values]
    if fed.kind == "deployment":
        if problem := fz.root_certificates_problem(fed):
            raise RuntimeError(problem)
        sync_connections(project)
        processes.check_superlink(fed.address, fed.ca_file)
        check_pinned(fed)
        return _submit(command[:3] + [fed.name] + command[3:] + ["--stream"], fed.name)
    if project.simulation.ray_address:
        check_ray_cluster(project.simulation)
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


def registry_override(fed: fz.Federation, overrides: str) -> str:
    """``node-registry='<file>'`` for a node-auth deployment that ``gfmfr deploy up`` started
    here (it wrote the file), unless flower.toml or ``-c`` name one; else ""."""
    from strategies.config import parse_overrides

    if fed.kind != "deployment" or not fed.node_auth or fed.run_dir is None:
        return ""
    path = fed.run_dir / deploy.REGISTRY_FILE
    if not path.is_file() or "node-registry" in {**fed.run_config, **parse_overrides(overrides)}:
        return ""
    return fz.run_config_arg({"node-registry": str(path)})


def check_pinned(fed: fz.Federation) -> None:
    """Before submitting to a deployment that ``gfmfr deploy up`` started here: the app's FAB
    hash must be pinned in its trusted-apps file, else every node would refuse the run (one line
    with the fix instead of a failed run)."""
    if fed.run_dir is None or not (path := fed.run_dir / deploy.TRUSTED_APPS).is_file():
        return
    app_hash = trusted_apps.fab_hash(fz.PROJECT_ROOT)
    try:
        pinned = trusted_apps.load(path)
    except trusted_apps.TrustedAppsError as error:
        raise RuntimeError(str(error)) from None
    if app_hash not in pinned:
        raise RuntimeError(
            f"the app's FAB hash is {app_hash}, which deployment {fed.name} does not run: a file "
            f"of the app changed since `gfmfr deploy up` pinned {path}. If the change is yours, "
            f"pin it on the server and every client (here: `gfmfr deploy pin {fed.name}`), or "
            f"restart the deployment.")


def check_ray_cluster(settings: fz.SimulationSettings) -> None:
    """Before a run on a Ray cluster: say what it offers, or raise with the fix (about 2 s)."""
    from server_app import ray_cluster

    nodes = ray_cluster.check(settings.ray_address, settings.client_cpus,
                              settings.ray_inline_bytes)
    print(f"gfmfr: {ray_cluster.describe(nodes, settings.ray_address, settings.client_cpus)}",
          flush=True)
    for warning in ray_cluster.warnings(nodes, settings.ray_inline_bytes):
        print(f"gfmfr: warning: {warning}", file=sys.stderr, flush=True)


def _submit(command: list[str], connection: str) -> int:
    """Run ``flwr run`` streaming its output, then ask Flower how the run ended."""
    env = processes.environment()
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
