"""A deployment on this machine: one SuperLink and N SuperNodes on loopback, stopped by pid.

``gfmfr deploy up NAME`` reads deployment federation NAME of ``flower.toml`` and runs the same
commands a user runs on real machines (``superlink_command``, ``supernode_command``; ``--dry-run``
prints them); only the addresses differ. What it starts is recorded in
``<run-dir>/deployment.json`` (pids, ports), so ``gfmfr deploy down NAME`` stops it from any shell.
Each SuperNode gets a folder of its own, as if it were a machine of its own: ``nodes/node-<i>/``
with its log, its private state (node config ``state-dir``), its Flower home and its
``trusted-apps.txt``.

Only this app runs (issue 26): the SuperLink and every SuperNode run with ``--isolation
process`` beside a ``gfmfr superexec`` (``server_app/superexec.py``) that starts a ServerApp /
ClientApp only when the app's FAB hash is pinned in that machine's ``trusted-apps.txt``; ``up``
pins the hash of this checkout (``gfmfr app-hash``), ``gfmfr deploy pin NAME`` adds the current
one after a change. Each SuperExec is started after its SuperLink / SuperNode, with
``--parent-pid`` (it exits when they do), and recorded and stopped with them. Each pair shares a
fresh random secret (``superexec.secret``, Flower's ``--superexec-auth-secret-file``): the
Runtime API then hands tasks only to a SuperExec holding it, so a caller on the SuperLink's public
port cannot take the ServerApp's task (and with it the run's context and client updates).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from server_app import federations as fz
from server_app import processes, run_config_lock, trusted_apps
from server_app.certificates import Certificates, generate, write_file

STATE_FILE = "deployment.json"
REGISTRY_FILE = "node-registry.json"  # node id -> partition-id, for run-config node-registry
LOCKED_RUN_CONFIG = "locked-run-config.toml"  # server: run-config values no run may change
TRUSTED_APPS = "trusted-apps.txt"  # per machine: the FAB hashes its SuperExec runs
SUPEREXEC_SECRET = "superexec.secret"  # per machine: the Runtime API's shared secret (HMAC key)
SECRET_BYTES = 32
SUPERNODE_RUNTIME_PORT = 9094  # Flower's default Runtime API port of a SuperNode (--port)
RUN_DB_FOLDER = fz.RUN_DIR  # --dry-run: the SuperLink database under .deploy/<name>/
PathShow = Callable[[Path], str]  # how a command shows a path (absolute here, relative in --dry-run)
ONLINE_TIMEOUT = 90.0  # seconds for every SuperNode to connect after start-up
# A SuperNode that dies without saying goodbye (SIGKILL, power loss) stays "online" at the
# SuperLink until it misses two heartbeats (Flower: 2 x 30 s); until then the SuperLink refuses
# to activate the same key again, so a restart is retried for that long.
REACTIVATION_TIMEOUT = 90.0
CONNECTED = "SuperNode ID:"  # what a SuperNode logs once the SuperLink accepted it


@dataclass
class Node:
    """One local SuperNode; ``index`` is its partition-id, i.e. the user it holds."""

    index: int
    port: int  # its Runtime API port (its ClientApps connect to it): unique per machine
    folder: Path
    pid: int = 0
    node_id: int = 0  # as registered (node-auth only; else the SuperLink picks one per start)
    superexec_pid: int = 0  # its guarded SuperExec (starts its ClientApps)

    @property
    def log(self) -> Path:
        return self.folder / "supernode.log"

    @property
    def trusted_apps(self) -> Path:
        return self.folder / TRUSTED_APPS

    @property
    def state_dir(self) -> Path:
        return self.folder / "state"

    @property
    def secret(self) -> Path:
        return self.folder / SUPEREXEC_SECRET


@dataclass
class Deployment:
    """What ``up`` started, as saved in ``deployment.json``."""

    name: str
    folder: Path
    num_partitions: int
    superlink_pid: int = 0
    nodes: list[Node] = field(default_factory=list)
    superexec_pid: int = 0  # the SuperLink's guarded SuperExec (starts ServerApps)

    @property
    def superlink_log(self) -> Path:
        return self.folder / "superlink.log"

    @property
    def trusted_apps(self) -> Path:
        return self.folder / TRUSTED_APPS

    @property
    def secret(self) -> Path:
        return self.folder / SUPEREXEC_SECRET

    @property
    def locked_run_config(self) -> Path:
        return self.folder / LOCKED_RUN_CONFIG

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=str))
        os.replace(tmp, self.folder / STATE_FILE)

    @classmethod
    def load(cls, folder: Path) -> Deployment | None:
        path = folder / STATE_FILE
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        nodes = [Node(n["index"], n["port"], Path(n["folder"]), n["pid"], n.get("node_id", 0),
                      n.get("superexec_pid", 0)) for n in raw["nodes"]]
        return cls(raw["name"], Path(raw["folder"]), raw["num_partitions"], raw["superlink_pid"],
                   nodes, raw.get("superexec_pid", 0))

    def pids(self) -> list[int]:
        return [pid for pid in [*(p for n in self.nodes for p in (n.pid, n.superexec_pid)),
                                self.superlink_pid, self.superexec_pid] if pid]


# --- the commands (the same on real machines, with real addresses) -----------------------------
IN_MEMORY = ":flwr-in-memory:"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SERVER_PLACEHOLDER = "<server-host>"  # --dry-run of a loopback federation: the server's name/IP


def superlink_command(fed: fz.Federation, host: str | None = None, database: str = IN_MEMORY,
                      show: PathShow = str, secret: Path | None = None) -> list[str]:
    """``gfmfr superlink`` (Flower's SuperLink whose Control API answers only ``control-from``)
    for ``fed``; on a server, pass ``host="0.0.0.0"`` to listen on all.

    ``database`` is a file on a server (registrations and runs survive a SuperLink restart);
    ``gfmfr deploy up`` uses memory, so that every ``up`` registers its keys afresh. ``secret``:
    the file its SuperExec also reads (``superexec_command``); None = any caller may take tasks.
    """
    address_host, port = split_address(fed.address)
    command = [_exe("gfmfr", show), "superlink", "--control-from", fed.control_from,
               "--host", host or address_host, "--port", str(port),
               "--database", database, "--disable-runtime-dependency-installation",
               "--isolation", "process"]  # ServerApps: only through superexec_command's guard
    command += _secret_args(secret, show)
    if fed.insecure:
        return command + ["--insecure"]
    certs = certificates(fed)
    command += ["--ssl-ca-certfile", show(certs.ca_cert), "--ssl-certfile",
                show(certs.server_cert), "--ssl-keyfile", show(certs.server_key)]
    return command + (["--enable-supernode-auth"] if fed.node_auth else [])


def supernode_command(fed: fz.Federation, index: int, num_partitions: int, port: int | None,
                      state_dir: Path, key: Path | None = None, show: PathShow = str,
                      address: str | None = None, secret: Path | None = None) -> list[str]:
    """``flower-supernode`` holding user ``index``; ``key`` defaults to the node's own key.

    ``port`` (its ClientApp API) must be unique per machine; None = Flower's default. ``secret``:
    as for ``superlink_command`` (the node's Runtime API listens on loopback: other local users).
    """
    node_config = {"partition-id": index, "num-partitions": num_partitions,
                   "state-dir": show(state_dir),
                   **{k: show(Path(v)) if k.endswith("-dir") and v else v
                      for k, v in fed.node_config.items()}}
    command = [_exe("flower-supernode", show), "--superlink", address or fed.address,
               "--isolation", "process"]  # ClientApps: only through superexec_command's guard
    if port is not None:
        command += ["--port", str(port)]
    command += _secret_args(secret, show)
    command += ["--node-config", fz.run_config_arg(node_config)]
    if fed.insecure:
        command.append("--insecure")
    elif fed.ca_file is not None:
        command += ["--root-certificates", show(fed.ca_file)]
    if fed.node_auth:
        command += ["--auth-supernode-private-key",
                    show(key or certificates(fed).node_key(index))]
    return command


def superexec_command(runtime_address: str, trusted: Path, ca_file: Path | None = None,
                      parent_pid: int | str | None = None, show: PathShow = str,
                      secret: Path | None = None, locked: Path | None = None) -> list[str]:
    """``gfmfr superexec``: the SuperExec beside a SuperLink or SuperNode started with
    ``--isolation process``; it starts an app only if its FAB hash is pinned in ``trusted``.

    ``runtime_address`` is that process's Runtime API as dialled from the same machine: the
    SuperLink's own port (TLS: ``ca_file`` verifies it), a SuperNode's ``--port`` (plain HTTP on
    loopback). ``parent_pid``: exit when that process exits; ``secret``: the file that process
    was started with; ``locked``: the server's locked run config (``run_config_lock``).
    """
    command = [_exe("gfmfr", show), "superexec", "--trusted-apps", show(trusted)]
    command += ["--locked-run-config", show(locked)] if locked is not None else []
    command += ["--runtime-api-address", runtime_address, *_secret_args(secret, show)]
    command += ["--root-certificates", show(ca_file)] if ca_file is not None else ["--insecure"]
    return command + (["--parent-pid", str(parent_pid)] if parent_pid is not None else [])


def _secret_args(secret: Path | None, show: PathShow) -> list[str]:
    return [] if secret is None else ["--superexec-auth-secret-file", show(secret)]


def write_secret(path: Path) -> Path:
    """A fresh random Runtime API secret at ``path``, readable by its owner only (0600).

    Flower reads the file as raw bytes and derives the HMAC key from them; a SuperExec signs
    every ``AcquireTask`` with it, and the Runtime API refuses unsigned or wrongly signed ones.
    """
    write_file(path, secrets.token_bytes(SECRET_BYTES), private=True)
    return path


def superlink_runtime_address(fed: fz.Federation, host: str | None = None) -> str:
    """Where the SuperLink's SuperExec dials its Runtime API (the SuperLink's port, same host;
    all interfaces = loopback, as Flower's own SuperExec does)."""
    address_host, port = split_address(fed.address)
    bind = host or address_host
    if bind in ("0.0.0.0", "::", ""):
        bind = "127.0.0.1"
    return f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"


def register_command(fed: fz.Federation, index: int, show: PathShow = str) -> list[str]:
    """``flwr supernode register``: admit node ``index``'s public key (node-auth only)."""
    return [_exe("flwr", show), "supernode", "register",
            show(certificates(fed).node_public_key(index)), fed.name, "--format", "json"]


def dry_run(fed: fz.Federation, count: int, bind: str = "0.0.0.0") -> list[str]:
    """The shell commands for separate machines: the server, the operator's machine, each client.

    Every command runs in the project checkout of its machine; paths are relative to it (paths
    outside the checkout stay as they are). A loopback ``address`` is replaced by
    ``<server-host>``, to be filled in (and set as ``address`` in flower.toml).
    """
    base = project_dir(fed)

    def show(path: Path) -> str:
        path = Path(path)
        return os.path.relpath(path, base) if path.is_relative_to(base) else str(path)

    host, port = split_address(fed.address)
    if host in LOOPBACK:
        host = SERVER_PLACEHOLDER
    address = f"{host}:{port}"
    database = f"{RUN_DB_FOLDER}/{fed.name}/superlink.db"
    lines = ["# Run every command in the project checkout of its machine, venv activated.",
             f"# {SERVER_PLACEHOLDER}: the server's DNS name or IP; set address = \"{address}\" "
             "in flower.toml." if host == SERVER_PLACEHOLDER else
             f"# The SuperLink's address as clients dial it: {address}."]
    if fed.insecure:
        lines.append("# insecure = true: plain HTTP, for trying things only; anyone who reaches the "
                     "port can join and run apps (docs/deployment.md, threat model).")
    step = iter(range(1, 7))
    trusted = f"{RUN_DB_FOLDER}/{fed.name}/{TRUSTED_APPS}"
    secret = Path(f"{RUN_DB_FOLDER}/{fed.name}/{SUPEREXEC_SECRET}")
    locked = Path(f"{RUN_DB_FOLDER}/{fed.name}/{LOCKED_RUN_CONFIG}")
    registry = f"{RUN_DB_FOLDER}/{fed.name}/{REGISTRY_FILE}"
    new_secret = (f"(umask 077 && head -c {SECRET_BYTES} /dev/urandom > "
                  f"{shlex.quote(str(secret))})")
    if not fed.insecure:
        certs = certificates(fed)
        lines += [f"# {next(step)}. Operator's machine: CA, SuperLink certificate naming the server"
                  + (", one key pair per SuperNode" if fed.node_auth else ""),
                  shlex.join(["gfmfr", "certs", show(certs.folder), "--hosts", host]
                             + (["--nodes", str(count)] if fed.node_auth else [])),
                  f"#    copy {show(certs.ca_cert)}, {show(certs.server_cert)} and "
                  f"{show(certs.server_key)} to the server; {show(certs.ca_cert)} to every "
                  "client" + (f"; {show(certs.folder)}/keys/node-<i> to client i only"
                              if fed.node_auth else "")]
    ca = None if fed.insecure else certificates(fed).ca_cert
    lines += [f"# {next(step)}. Operator's machine: the app's FAB hash, the one app the machines "
              "will run; send it to the server and every client out of band (like the CA "
              "certificate; a client can check it with `gfmfr app-hash` on the same source)",
              "gfmfr app-hash",
              f"#    on the server and on each client: put it into {trusted} (one hash per line)"]
    lines += [f"# {next(step)}. Server machine: the SuperLink, its state in a file (registrations "
              "survive a restart), its Control API (flwr: runs, node keys) for this machine only "
              f"(--control-from, flower.toml's control-from: add the operator's machine if flwr "
              "runs elsewhere; the server dialling its own public address counts as that "
              "address), and beside it the SuperExec that starts only pinned ServerApps; the "
              "two share a random secret that no other caller of the port has",
              f"mkdir -p {shlex.quote(str(Path(database).parent))} && {new_secret} && "
              f"touch {shlex.quote(str(locked))}",
              shlex.join(superlink_command(fed, host=fed.bind or bind, database=database,
                                           show=show, secret=secret)) + " &",
              shlex.join(superexec_command(superlink_runtime_address(fed, fed.bind or bind),
                                           Path(trusted), ca, show=show, secret=secret,
                                           locked=locked))
              + " --parent-pid $!"]
    if fed.node_auth:
        lines += [f"# {next(step)}. Operator's machine (the server, or an address in "
                  "--control-from): write flower.toml's connections for flwr, then register each "
                  "SuperNode's public key",
                  "gfmfr sync"]
        lines += [shlex.join(register_command(fed, i, show=show)) for i in range(count)]
        lines += [f"#    on the server: write {registry} ({{\"<node-id>\": <i>, ...}} from the "
                  f"node-ids printed above), set node-registry = \"{registry}\" in the "
                  "federation's run-config in flower.toml, and lock it, so that no `flwr run` "
                  "can switch the binding of keys to users off:",
                  shlex.join(["echo", f"node-registry = {json.dumps(registry)}"]) + " > "
                  + shlex.quote(str(locked))]
    data = {} if "data-dir" in fed.node_config else {"data-dir": "data"}
    lines.append(f"# {next(step)}. Client machine i (one per user): its own data-dir (holding the "
                 f"dataset folder) and state-dir; beside the SuperNode the SuperExec that starts "
                 f"only ClientApps pinned in its {trusted}, the two sharing a secret of their own")
    client = replace(fed, node_config={**fed.node_config, **data})
    node_exec = shlex.join(superexec_command(f"127.0.0.1:{SUPERNODE_RUNTIME_PORT}",
                                             Path(trusted), show=show, secret=secret))
    for i in range(count):
        lines.append(f"mkdir -p {shlex.quote(str(secret.parent))} && {new_secret}")
        lines.append(shlex.join(supernode_command(client, i, count, None, Path("state"),
                                                  show=show, address=address, secret=secret))
                     + " &")
        lines.append(node_exec + " --parent-pid $!")
    lines += ["# Then, from the operator's machine:", shlex.join(["gfmfr", "run", fed.name])]
    return lines


# --- starting and stopping ---------------------------------------------------------------------
def up(fed: fz.Federation, count: int) -> Deployment:
    """Start the SuperLink and ``count`` SuperNodes; on any failure stop what was started."""
    folder = run_dir(fed)
    previous = Deployment.load(folder)
    if previous is not None and any(_is_flower(pid) for pid in previous.pids()):
        raise RuntimeError(f"deployment {fed.name} is already up ({folder / STATE_FILE}); stop it "
                           f"with: gfmfr deploy down {fed.name}")
    if not fed.insecure:
        _ensure_certificates(fed, count)
    fz.write_connections({fed.name: fz.connection_entry(fed, fz.SimulationSettings())})
    deployment = Deployment(fed.name, folder, count)
    nodes = [Node(i, processes.free_port(), folder / "nodes" / f"node-{i}") for i in range(count)]
    pin(fed, deployment, nodes, label="gfmfr deploy up")  # every machine's own file
    write_secret(deployment.secret)
    run_config_lock.write(deployment.locked_run_config, {})  # node-registry once it is written
    try:
        superlink = processes.start(superlink_command(fed, secret=deployment.secret),
                                    deployment.superlink_log,
                                    env={"FLWR_HOME": str(folder / "flwr-home")})
        deployment.superlink_pid = superlink.pid
        deployment.save()
        processes.wait_http(split_address(fed.address)[1], superlink, deployment.superlink_log,
                            ca_file=None if fed.insecure else fed.ca_file)
        deployment.superexec_pid = processes.start(
            superexec_command(superlink_runtime_address(fed), deployment.trusted_apps,
                              None if fed.insecure else certificates(fed).ca_cert, superlink.pid,
                              secret=deployment.secret, locked=deployment.locked_run_config),
            deployment.superlink_log, env={"FLWR_HOME": str(folder / "flwr-home")}).pid
        deployment.save()
        for node in nodes:
            if fed.node_auth:
                node.node_id = register(fed, node.index)
            node.pid = start_node(fed, node, count).pid
            deployment.nodes.append(node)
            deployment.save()
        wait_online(fed.name, deployment)
        if fed.node_auth:
            registry = write_registry(deployment)
            run_config_lock.write(deployment.locked_run_config, {"node-registry": str(registry)})
    except BaseException:
        down(deployment)
        raise
    return deployment


def write_registry(deployment: Deployment) -> Path:
    """``node-registry.json``: each registered node id -> the user (partition-id) its key was
    issued for. ``gfmfr run`` passes it as run-config ``node-registry``: the ServerApp then
    refuses any other node, and a node declaring another user (``server_app/nodes.py``)."""
    path = deployment.folder / REGISTRY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({str(n.node_id): n.index for n in deployment.nodes if n.node_id},
                              indent=1))
    os.replace(tmp, path)
    return path


def pin(fed: fz.Federation, deployment: Deployment, nodes: list[Node] | None = None,
        label: str = "gfmfr deploy pin") -> str:
    """Pin this checkout's FAB hash in the trusted-apps file of the SuperLink and of every
    SuperNode of ``deployment`` (``up`` writes them afresh, ``gfmfr deploy pin`` adds the hash
    after a change). Returns the hash. On real machines each owner edits their own file."""
    app_hash = trusted_apps.fab_hash(fz.PROJECT_ROOT)  # what `gfmfr run` submits
    line = trusted_apps.pin_text(app_hash, f"{label} {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}")
    fresh = nodes is not None
    for path in [deployment.trusted_apps, *(n.trusted_apps for n in
                                            (deployment.nodes if nodes is None else nodes))]:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fresh or not path.is_file():
            path.write_text("# FAB hashes this machine runs (gfmfr app-hash); docs/deployment.md\n"
                            + line)
        elif app_hash not in trusted_apps.load(path):
            with path.open("a") as handle:
                handle.write(line)
    return app_hash


def start_node(fed: fz.Federation, node: Node, num_partitions: int) -> subprocess.Popen:
    """The SuperNode, then its guarded SuperExec (``node.superexec_pid``), both logging into the
    node's log; returns the SuperNode's process."""
    node.state_dir.mkdir(parents=True, exist_ok=True)
    env = {"FLWR_HOME": str(node.folder / "flwr-home")}
    write_secret(node.secret)  # fresh at every start: the SuperNode and its SuperExec start together
    process = processes.start(supernode_command(fed, node.index, num_partitions, node.port,
                                                node.state_dir, secret=node.secret),
                              node.log, env=env)
    node.superexec_pid = processes.start(
        superexec_command(f"127.0.0.1:{node.port}", node.trusted_apps, parent_pid=process.pid,
                          secret=node.secret), node.log, env=env).pid
    return process


def restart_node(fed: fz.Federation, deployment: Deployment, index: int,
                 timeout: float = REACTIVATION_TIMEOUT) -> Node:
    """Stop SuperNode ``index`` (if alive) and start it again with the same config and state.

    A node that was killed is refused until the SuperLink has noticed it is gone (up to a minute):
    with its node id known (node-auth) we wait for that, else a refused start is retried until it
    is accepted or ``timeout`` passes.
    """
    node = next((n for n in deployment.nodes if n.index == index), None)
    if node is None:
        raise RuntimeError(f"deployment {deployment.name} has SuperNodes "
                           f"0..{len(deployment.nodes) - 1}, not {index}.")
    if not _is_flower(deployment.superlink_pid):
        raise RuntimeError(
            f"the SuperLink of deployment {deployment.name} is not running (pid "
            f"{deployment.superlink_pid}; log {deployment.superlink_log}): restart the whole "
            f"deployment with `gfmfr deploy down {deployment.name}` and `gfmfr deploy up "
            f"{deployment.name}`, then continue the run with `gfmfr run {deployment.name} -c "
            "\"resume=true run-name='<its run-name>'\"`.")
    processes.stop_all([pid for pid in (node.pid, node.superexec_pid) if _is_flower(pid)])
    deadline = time.monotonic() + timeout
    while node.node_id and node.node_id in online_nodes(fed.name):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the SuperLink still lists SuperNode {index} as online after "
                               f"{timeout:.0f} s")
        time.sleep(1.0)
    while True:
        offset = node.log.stat().st_size if node.log.exists() else 0
        process = start_node(fed, node, deployment.num_partitions)
        node.pid = process.pid
        deployment.save()
        if _connected(process, node.log, offset):
            return node
        # refused or not yet accepted: never leave a second copy
        processes.stop_all([process.pid, node.superexec_pid])
        if time.monotonic() > deadline:
            raise RuntimeError(f"SuperNode {index} was not accepted again within {timeout:.0f} s;"
                               f" log: {node.log}\n{processes.tail(node.log)}")
        time.sleep(3.0)


def down(deployment: Deployment) -> list[int]:
    """Stop every process of ``deployment`` by pid, all at once; returns the pids stopped."""
    stopped = [pid for pid in deployment.pids() if _is_flower(pid)]
    processes.stop_all(stopped)
    for node in deployment.nodes:
        node.pid = node.superexec_pid = 0
    deployment.superlink_pid = deployment.superexec_pid = 0
    deployment.save()
    return stopped


def register(fed: fz.Federation, index: int) -> int:
    """Register node ``index``'s public key with the SuperLink; returns its node id."""
    done = subprocess.run(register_command(fed, index), capture_output=True, text=True,
                          env=processes.environment(), check=False)
    try:
        return int(json.loads(done.stdout)["node-id"])
    except (ValueError, KeyError):
        raise RuntimeError(f"could not register SuperNode {index}: "
                           f"{(done.stdout + done.stderr).strip()[-500:]}") from None


def online_nodes(connection: str) -> list[int]:
    """Ids of the SuperNodes the SuperLink reports online (``flwr supernode list``)."""
    done = subprocess.run([processes.executable("flwr"), "supernode", "list", connection,
                           "--format", "json"], capture_output=True, text=True,
                          env=processes.environment(), check=False)
    try:
        nodes = json.loads(done.stdout)["nodes"]
    except (ValueError, KeyError):
        return []
    return [int(n["node-id"]) for n in nodes if n.get("status") == "online"]


def wait_online(connection: str, deployment: Deployment, timeout: float = ONLINE_TIMEOUT
                ) -> None:
    """Wait until every SuperNode of ``deployment`` is online; fail with the log of a dead one."""
    deadline = time.monotonic() + timeout
    while len(online_nodes(connection)) < len(deployment.nodes):
        for node in deployment.nodes:
            if not _is_flower(node.pid):
                raise RuntimeError(f"SuperNode {node.index} exited; log: {node.log}\n"
                                   f"{processes.tail(node.log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all {len(deployment.nodes)} SuperNodes came online within "
                               f"{timeout:.0f} s; logs in {deployment.folder / 'nodes'}")
        time.sleep(1.0)


# --- helpers -----------------------------------------------------------------------------------
def certificates(fed: fz.Federation) -> Certificates:
    if fed.certificates is None:
        raise fz.FlowerTomlError(f"federation {fed.name} uses TLS but names no certificates "
                                 "folder: set certificates = \"certs\" (made by gfmfr certs).")
    return Certificates(fed.certificates)


def project_dir(fed: fz.Federation) -> Path:
    """The folder of the flower.toml that defined ``fed`` (``run_dir`` is ``<it>/.deploy/<name>``)."""
    return run_dir(fed).parent.parent


def _exe(name: str, show: PathShow) -> str:
    """A Flower command: from this venv locally, by name (from PATH) in printed commands."""
    return processes.executable(name) if show is str else name


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise fz.FlowerTomlError(f"address {address!r} is not HOST:PORT.")
    return host.strip("[]"), int(port)


def run_dir(fed: fz.Federation) -> Path:
    if fed.kind != "deployment" or fed.run_dir is None:
        raise fz.FlowerTomlError(f"federation {fed.name} is a {fed.kind}, not a deployment: "
                                 "`gfmfr deploy` starts deployment federations only.")
    return fed.run_dir


def _ensure_certificates(fed: fz.Federation, count: int) -> None:
    certs = certificates(fed)
    keys = [certs.node_key(i) for i in range(count)] if fed.node_auth else []
    if not all(p.exists() for p in [certs.ca_cert, certs.server_cert, certs.server_key, *keys]):
        generate(certs.folder, nodes=count if fed.node_auth else 0)


def _connected(process: subprocess.Popen, log: Path, offset: int, timeout: float = 60.0
               ) -> bool:
    """True once the node logs that it was accepted, False if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log.open("rb") as handle:
            handle.seek(offset)
            if CONNECTED.encode() in handle.read():
                return True
        if process.poll() is not None:
            return False
        time.sleep(0.5)
    return False


def _is_flower(pid: int) -> bool:
    """True if ``pid`` is a live Flower process or one of our wrappers of Flower's (``gfmfr
    superexec``, ``gfmfr superlink``): never signal a pid the OS has since reused."""
    if pid <= 0:
        return False
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    except ChildProcessError:
        pass
    if not Path("/proc/self").is_dir():  # no /proc (macOS): all we can check is "exists"
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"flower-super" in cmdline or any(f"gfmfr\0{name}\0".encode() in cmdline
                                             for name in ("superexec", "superlink"))
