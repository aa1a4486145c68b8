"""Real deployments on loopback: a SuperLink and 3 SuperNodes as separate processes.

Started the way users start them (``gfmfr deploy up``, ``gfmfr run``, ``gfmfr deploy down``) from a
flower.toml of the test's own, on free ports. Every process a test starts is stopped by pid in a
``finally``, also when the test fails. Success is what ``flwr ls`` reports, never the exit code of
``flwr run`` (0 even when a run fails).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from server_app import deploy, processes, run_config_lock, trusted_apps
from server_app import federations as fz
from server_app.certificates import write_node_keys
from server_app.cli import main as gfmfr
from strategies.checkpoint import load_checkpoint
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

USERS = 3
SMALL = (f'dataset = "synthetic", synthetic-users = {USERS}, synthetic-items = 30, '
         'synthetic-interactions = 6, local-epochs = 1, round-timeout = 300.0')


def flower_toml(tmp_path: Path, tls: bool, run_config: str) -> fz.Federation:
    """A flower.toml with one deployment federation ``d`` on a free port; returns it parsed."""
    security = 'certificates = "certs"\nnode-auth = true' if tls else "insecure = true"
    run_config += f', cache-dir = "{tmp_path / "cache"}", results-dir = "{tmp_path / "results"}"'
    path = tmp_path / "flower.toml"
    path.write_text(f'default = "d"\n[federations.d]\nkind = "deployment"\n'
                    f'address = "127.0.0.1:{processes.free_port()}"\n{security}\n'
                    f'num-supernodes = {USERS}\nrun-config = {{ {run_config} }}\n')
    return fz.load_flower_toml(path).federation("d")


@contextmanager
def deployed(fed: fz.Federation, toml: Path) -> Iterator[deploy.Deployment]:
    """``gfmfr deploy up`` ... ``gfmfr deploy down``; whatever was recorded is stopped."""
    try:
        assert gfmfr(["deploy", "up", fed.name, "--flower-toml", str(toml)]) == 0
        state = deploy.Deployment.load(fed.run_dir)
        yield state
        assert gfmfr(["deploy", "down", fed.name, "--flower-toml", str(toml)]) == 0
    finally:
        state = deploy.Deployment.load(fed.run_dir)
        if state is not None:
            processes.stop_all(state.pids())  # restarts change pids: reload the record


def start_run(toml: Path, *options: str) -> subprocess.Popen:
    """``gfmfr run d`` in its own process group, output captured."""
    return subprocess.Popen([sys.executable, "-m", "server_app.cli", "run", "d", "--flower-toml",
                             str(toml), *options], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(run: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for ``gfmfr run``; assert that ``flwr ls`` reported the run completed."""
    try:
        out, _ = run.communicate(timeout=timeout)
    finally:
        processes.stop(run.pid)
    run_id = processes.run_id_from_output(out)
    assert run_id is not None, out[-3000:]
    assert processes.run_status("d", run_id) == "finished:completed", out[-3000:]
    assert run.returncode == 0, out[-3000:]
    return out


def summary(tmp_path: Path) -> dict:
    (path,) = (tmp_path / "results").glob("*/summary.json")
    return json.loads(path.read_text())


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_readme_local_deployment_runs_gfmfr(flwr_env, tmp_path):
    """The README's path: the committed local-deployment's run config, nothing overridden but
    where files go (it once asked for 5 groups of 3 users and failed)."""
    committed = fz.load_flower_toml(ROOT / "flower.toml").federation("local-deployment")
    assert committed.num_supernodes == USERS
    values = ", ".join(f"{key} = {json.dumps(value)}" for key, value in
                       committed.run_config.items())
    fed = flower_toml(tmp_path, tls=False, run_config=values)
    with deployed(fed, tmp_path / "flower.toml") as state:
        finish(start_run(tmp_path / "flower.toml"), timeout=600)  # SecAgg+: 3 more exchanges
    rounds = {r["round"]: r for r in summary(tmp_path)["rounds"]}
    assert sorted(rounds) == [0, 1, 2, 3] and rounds[3]["trained"] == USERS
    assert summary(tmp_path)["config"]["strategy"] == "gfmfr"
    # auto: on in a deployment; every round's updates came back masked and were unmasked
    assert summary(tmp_path)["config"]["secure-aggregation"] == "true"
    assert all("secure-unmask" in r["server_seconds"] for n, r in rounds.items() if n > 0)

    for node in state.nodes:  # private state persisted on each node's own disk
        assert (node.state_dir / f"user-{node.index}.npz").is_file()


@pytest.fixture(scope="module")
def tls_deployment(tmp_path_factory) -> Iterator[tuple[fz.Federation, deploy.Deployment, Path]]:
    """One TLS deployment with node authentication (3 registered nodes) for the tests below."""
    tmp_path = tmp_path_factory.mktemp("tls")
    with pytest.MonkeyPatch.context() as env:
        for key, value in {**processes.QUIET_ENV, "FLWR_HOME": str(tmp_path / "flwr-home")}.items():
            env.setenv(key, value)
        # 7 rounds: the run goes on while node 1 is down, and a slow restart (a loaded machine,
        # up to 60 s until the SuperLink lets the key back in) must still find rounds left to
        # train in (about 40 s each under SecAgg+); with 4 it once found none
        fed = flower_toml(tmp_path, tls=True, run_config=SMALL + ', strategy = "fedrap", '
                          'num-server-rounds = 7')
        with deployed(fed, tmp_path / "flower.toml") as state:
            yield fed, state, tmp_path


def test_unregistered_supernodes_are_refused(tls_deployment, tmp_path):
    fed, state, _ = tls_deployment
    rogue_key = tmp_path / "rogue-key"
    write_node_keys(rogue_key, rogue_key.with_suffix(".pub"))
    keyless = dataclasses.replace(fed, node_auth=False)  # TLS, but no key at all
    rogues = []
    try:
        for i, (federation, key) in enumerate([(fed, rogue_key), (keyless, None)]):
            command = deploy.supernode_command(federation, 0, USERS, processes.free_port(),
                                               tmp_path / f"state-{i}", key=key)
            rogues.append(processes.start(command, tmp_path / f"rogue-{i}.log",
                                          env={"FLWR_HOME": str(tmp_path / f"home-{i}")}))
        codes = [rogue.wait(timeout=60) for rogue in rogues]
    finally:
        processes.stop_all([r.pid for r in rogues])
    keyed_log, keyless_log = ((tmp_path / f"rogue-{i}.log").read_text() for i in (0, 1))
    assert codes[0] != 0 and "Failed to activate SuperNode" in keyed_log
    assert codes[1] != 0 and "Failed to initialize the connection to the SuperLink" in keyless_log
    assert "No SuperNode found with the given public key" in state.superlink_log.read_text()
    assert sorted(deploy.online_nodes(fed.name)) == sorted(n.node_id for n in state.nodes)


def test_tls_run_completes_after_a_supernode_is_killed_and_restarted(tls_deployment):
    """Node 1 crashes (SIGKILL) after its first training reply and comes back with the same key
    and disk, under SecAgg+ (on by default in a deployment).

    Node authentication keeps its node id, so the server keeps addressing it; its ``context.state``
    (its SecAgg+ keys too) died with it, so its private parameters must come from ``state-dir``.
    The SuperLink notices the crash only after two missed heartbeats (up to 60 s): meanwhile the
    unmask stage waits for node 1, then recovers without it; the later rounds train it again and
    unmask. No exchange may wait out round-timeout (300 s here): a round that did would take
    longer than that (measured: 68-83 s for the round hit by the crash, 36-46 s for the others, on
    2 loaded cores; docs/privacy.md, "Secure aggregation").
    """
    fed, state, tmp_path = tls_deployment
    victim = state.nodes[1]
    state_file = victim.state_dir / "user-1.npz"
    run = start_run(tmp_path / "flower.toml")
    try:
        # SecAgg+'s key exchanges are train messages too: wait for the training itself (its
        # private state on disk), then for the reply that follows it
        wait_for(state_file.is_file, 240, "node 1's first local training")
        trained_at = victim.log.stat().st_size
        wait_for(lambda: _replied_to_train(victim.log, trained_at), 60, "node 1's train reply")
        os.killpg(victim.pid, signal.SIGKILL)
        offset = victim.log.stat().st_size
        deploy.restart_node(fed, state, 1)
        restarted_at = time.time()
        out = finish(run, timeout=1200)  # 7 secure rounds: about 6 min on 2 loaded cores
    finally:
        processes.stop(run.pid)
    after = victim.log.read_bytes()[offset:].decode(errors="replace")
    assert "restored the private state of user 1 " in after and str(victim.state_dir) in after
    assert state_file.stat().st_mtime > restarted_at  # trained again after the restart
    result = summary(tmp_path)
    assert result["config"]["secure-aggregation"] == "true"
    rounds = [r for r in result["rounds"] if r["round"] > 0]
    assert rounds[-1]["trained"] == USERS, out[-3000:]
    # every round, the crash round and those after the restart included, was unmasked
    assert all("secure-unmask" in r["server_seconds"] for r in rounds), out[-3000:]
    timeout = result["config"]["round-timeout"]
    assert max(r["seconds"] for r in rounds) < timeout, [r["seconds"] for r in rounds]


def _replied_to_train(log: Path, offset: int = 0) -> bool:
    text = log.read_bytes()[offset:].decode(errors="replace") if log.exists() else ""
    sending = text.find("Sending: train message")
    return sending >= 0 and "Sent successfully" in text[sending:]


def test_a_self_registered_key_cannot_take_a_users_slot(tls_deployment):
    """The attack of issue 26: with only the address and ca.crt, register a key of one's own (Flower
    1.42 allows it) and start a SuperNode declaring user 0. The node registry that `deploy up`
    wrote and `gfmfr run` passes refuses it; the run completes with the three genuine users."""
    fed, state, tmp_path = tls_deployment
    key = tmp_path / "self-registered"
    write_node_keys(key, key.with_suffix(".pub"))
    flwr = processes.executable("flwr")
    done = subprocess.run([flwr, "supernode", "register", str(key.with_suffix(".pub")), fed.name,
                           "--format", "json"], capture_output=True, text=True,
                          env=processes.environment(), check=False)
    rogue_id = int(json.loads(done.stdout)["node-id"])
    rogue = processes.start(deploy.supernode_command(fed, 0, USERS, processes.free_port(),
                                                     tmp_path / "rogue-state", key=key),
                            tmp_path / "rogue.log", env={"FLWR_HOME": str(tmp_path / "rogue")})
    try:
        wait_for(lambda: rogue_id in deploy.online_nodes(fed.name), 60, "the rogue node online")
        run = subprocess.Popen([sys.executable, "-m", "server_app.cli", "run", "d", "--flower-toml",
                                str(tmp_path / "flower.toml"), "-c", "num-server-rounds=1"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
        out = finish(run)
    finally:
        processes.stop(rogue.pid)
        subprocess.run([flwr, "supernode", "unregister", str(rogue_id), fed.name],
                       capture_output=True, env=processes.environment(), check=False)
    refusal = f"refused SuperNode {rogue_id}: its key is not in the node registry"
    assert refusal in out + state.superlink_log.read_text(errors="replace"), out[-3000:]
    newest = max((tmp_path / "results").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    assert json.loads(newest.read_text())["rounds"][-1]["trained"] == USERS
    assert "Receiving: train" not in (tmp_path / "rogue.log").read_text(errors="replace")


FOREIGN_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "foreignapp"
version = "1.0.0"
dependencies = ["flwr>=1.42"]

[tool.hatch.build.targets.wheel]
packages = ["foreignapp"]

[tool.flwr.app]
publisher = "mallory"

[tool.flwr.app.components]
serverapp = "foreignapp.server:app"
clientapp = "foreignapp.client:app"

[tool.flwr.app.config]
marker-dir = "MARKERS"
"""
FOREIGN_CLIENT = """from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.query()
def query(msg: Message, context: Context) -> Message:
    for folder in (context.node_config.get("state-dir"), context.run_config["marker-dir"]):
        Path(str(folder)).mkdir(parents=True, exist_ok=True)
        (Path(str(folder)) / f"FOREIGN-MARKER-{context.node_id}").write_text("ran")
    return Message(RecordDict({"c": ConfigRecord({"ran": 1})}), reply_to=msg)
"""
FOREIGN_SERVER = """from pathlib import Path

from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    folder = Path(str(context.run_config["marker-dir"]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "FOREIGN-SERVER-MARKER").write_text("ran")
    grid.send_and_receive([Message(RecordDict(), dst_node_id=node, message_type="query")
                           for node in grid.get_node_ids()], timeout=90)
"""


def write_foreign_app(folder: Path, markers: Path) -> Path:
    """A minimal Flower app of someone else's: its ServerApp and ClientApp leave marker files
    (the ClientApp in its node's ``state-dir``, where the users' private state lives)."""
    package = folder / "foreignapp"
    package.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(FOREIGN_PYPROJECT.replace("MARKERS", str(markers)))
    (package / "__init__.py").write_text("")
    (package / "client.py").write_text(FOREIGN_CLIENT)
    (package / "server.py").write_text(FOREIGN_SERVER)
    return folder


def test_a_superexec_without_the_secret_gets_no_task(tls_deployment, tmp_path):
    """Issue 26, the Runtime API: the SuperLink serves it on the public port, so anyone with the
    address and ca.crt could run a SuperExec of their own and take the ServerApp's task (the
    run's context and every client update). Every Runtime API of a deployment takes tasks only
    from a SuperExec signed with its machine's secret: Flower's own SuperExec without it, or with
    another secret, is refused by the SuperLink and by a SuperNode, and ours keep running."""
    fed, state, _ = tls_deployment
    wrong = deploy.write_secret(tmp_path / "wrong.secret")
    ca = deploy.certificates(fed).ca_cert
    targets = [(state.superlink_log, ["--runtime-api-address", deploy.superlink_runtime_address(fed),
                                      "--root-certificates", str(ca)]),
               (state.nodes[0].log, ["--runtime-api-address", f"127.0.0.1:{state.nodes[0].port}",
                                     "--insecure"])]
    refused = "SuperExec authentication failed"
    offsets = [log.stat().st_size for log, _ in targets]
    rogues = []
    try:
        for i, (_, address) in enumerate(targets):
            for j, secret in enumerate([[], ["--superexec-auth-secret-file", str(wrong)]]):
                rogues.append(processes.start([processes.executable("flower-superexec"), *address,
                                               *secret], tmp_path / f"rogue-{i}-{j}.log"))
        codes = [rogue.wait(timeout=60) for rogue in rogues]  # still polling = it was let in
    finally:
        processes.stop_all([r.pid for r in rogues])
    assert codes == [0, 0, 0, 0]  # Flower's SuperExec stops once the Runtime API refuses it
    for (log, _), offset in zip(targets, offsets, strict=True):
        assert log.read_bytes()[offset:].decode(errors="replace").count(refused) >= 2, log
    assert secrets_private(state)
    assert all(deploy._is_flower(pid) for pid in state.pids())  # ours: still there, still let in


def test_our_app_with_the_registry_switched_off_is_refused(tls_deployment):
    """Issue 26, "our app with someone else's run config": the FAB hash pins the code, not the
    run config, so anyone reaching the Control API could submit the genuine app with
    `node-registry=''` and let any registered key take any user's slot. `deploy up` locks
    node-registry on the server (`locked-run-config.toml`, read by every ServerApp its SuperExec
    starts): such a run fails at once, saying which value it changed; the deployment goes on."""
    fed, state, _ = tls_deployment
    assert "node-registry" in run_config_lock.load(state.locked_run_config)
    done = subprocess.run([processes.executable("flwr"), "run", str(ROOT), fed.name,
                           "--run-config", "node-registry=''"], capture_output=True, text=True,
                          env=processes.environment(), check=False)
    run_id = processes.run_id_from_output(done.stdout + done.stderr)
    assert run_id is not None, done.stdout + done.stderr
    wait_for(lambda: str(_run_info(fed.name, run_id).get("status", "")).startswith("finished"),
             120, "the run to be refused")
    info = _run_info(fed.name, run_id)
    assert info["status"] == "finished:failed", info
    assert "locked" in info["status-details"] and "node-registry=''" in info["status-details"]
    assert str(state.folder) not in info["status-details"]  # no server path to the submitter


def test_the_control_api_answers_only_the_operator(tls_deployment):
    """Issue 26, the first attack: with the address and ca.crt anyone could register a key,
    unregister a genuine node or stop a run, since Flower 1.42's open-source Control API has no
    authentication and shares the SuperNodes' port. `gfmfr superlink` answers the Control API
    only for flower.toml's `control-from` (default the server itself): from another address
    (127.0.0.2 here, a loopback address outside it) every Control call is refused with 403
    before Flower sees it, the same call from 127.0.0.1 reaches Flower, and the SuperNodes
    (Fleet API) and our SuperExec (Runtime API) are unaffected."""
    fed, state, _ = tls_deployment
    assert fed.control_from == fz.CONTROL_FROM
    port = deploy.split_address(fed.address)[1]
    ca = str(deploy.certificates(fed).ca_cert)
    nodes = deploy.online_nodes(fed.name)

    def post(source: str, path: str) -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=source, verify=ca)
        with httpx.Client(transport=transport, timeout=30) as client:
            return client.post(f"https://127.0.0.1:{port}{path}", content=b"",
                               headers={"content-type": "application/protobuf"})

    for path in ("/v1/control/register-node", "/v1/control/unregister-node",
                 "/v1/control/stop-run", "/v1/control/start-run", "/v1/control/list-nodes",
                 "/v1/control/stream-logs", "/docs"):
        outsider = post("127.0.0.2", path)
        assert outsider.status_code == 403 and "operator" in outsider.json()["detail"], path
    assert post("127.0.0.1", "/v1/control/list-nodes").status_code != 403  # reaches Flower
    assert "refused /v1/control/unregister-node from 127.0.0.2" in \
        state.superlink_log.read_text(errors="replace")
    assert deploy.online_nodes(fed.name) == nodes  # `flwr` from the server works, nodes stay
    assert all(deploy._is_flower(pid) for pid in state.pids())


def secrets_private(state: deploy.Deployment) -> bool:
    """Every machine's secret exists, is readable by its owner only, and differs from the rest."""
    files = [state.secret, *(n.secret for n in state.nodes)]
    return (all(f.stat().st_mode & 0o077 == 0 and f.stat().st_size == deploy.SECRET_BYTES
                for f in files) and len({f.read_bytes() for f in files}) == len(files))


def _run_info(connection: str, run_id: int) -> dict:
    done = subprocess.run([processes.executable("flwr"), "ls", connection, "--run-id",
                           str(run_id), "--format", "json"], capture_output=True, text=True,
                          env=processes.environment(), check=False)
    try:
        return json.loads(done.stdout)["runs"][0]
    except (ValueError, KeyError, IndexError):
        return {}


def test_a_foreign_app_runs_neither_on_the_server_nor_on_a_supernode(tls_deployment, tmp_path):
    """The attack of issue 26: with only the address and ca.crt, `flwr run` an app of one's own.
    Every machine's guarded SuperExec (`gfmfr superexec`) refuses its FAB hash before installing
    anything: the SuperLink's fails the run; and where the server trusts it (a careless or
    compromised operator), each SuperNode's still refuses it and answers with an error, so no
    ClientApp of it runs and the nodes go on: a genuine run completes afterwards.

    It runs after the kill-and-restart test, which needs node 1's state-dir still empty."""
    fed, state, home = tls_deployment
    markers = tmp_path / "markers"
    app = write_foreign_app(tmp_path / "foreignapp", markers)
    foreign = trusted_apps.fab_hash(app)
    refusal = f"[gfmfr] refused app with FAB hash {foreign}"

    def submit() -> int:
        done = subprocess.run([processes.executable("flwr"), "run", str(app), fed.name],
                              capture_output=True, text=True, env=processes.environment(),
                              check=False)
        run_id = processes.run_id_from_output(done.stdout + done.stderr)
        assert run_id is not None, done.stdout + done.stderr
        return run_id

    def ended(run_id: int) -> bool:
        return str(_run_info(fed.name, run_id).get("status", "")).startswith("finished")

    # 1. the server refuses: the run fails at once, saying why; nothing ran anywhere
    run_id = submit()
    wait_for(lambda: ended(run_id), 60, "the foreign run to be refused")
    info = _run_info(fed.name, run_id)
    assert info["status"] == "finished:failed" and foreign in info["status-details"], info
    assert refusal in state.superlink_log.read_text(errors="replace")
    assert not markers.exists()

    # 2. the server trusts it: its ServerApp runs and sends every SuperNode a message, each
    #    node's SuperExec refuses it and replies with an error
    original = state.trusted_apps.read_text()
    offsets = {node.index: node.log.stat().st_size for node in state.nodes}

    def refused_by(node: deploy.Node) -> bool:
        return refusal in node.log.read_bytes()[offsets[node.index]:].decode(errors="replace")

    try:
        with state.trusted_apps.open("a") as handle:
            handle.write(trusted_apps.pin_text(foreign, "test: the server trusts it"))
        run_id = submit()
        wait_for(lambda: all(refused_by(n) for n in state.nodes), 120, "every node's refusal")
        wait_for(lambda: ended(run_id), 120, "the foreign ServerApp to end")
    finally:
        state.trusted_apps.write_text(original)
    assert (markers / "FOREIGN-SERVER-MARKER").is_file()  # the server ran what it trusted
    assert not list(markers.glob("FOREIGN-MARKER-*"))  # no ClientApp of it ran
    assert not [p for n in state.nodes for p in n.state_dir.glob("FOREIGN-MARKER-*")]
    for node in state.nodes:  # each refusal was answered: the node sent a reply and went on
        assert "Sent successfully" in node.log.read_bytes()[offsets[node.index]:].decode(
            errors="replace")

    # 3. the refused messages stalled no node: the genuine app still runs everywhere
    finish(start_run(home / "flower.toml", "-c", "num-server-rounds=1"))
    newest = max((home / "results").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    assert json.loads(newest.read_text())["rounds"][-1]["trained"] == USERS


def _processes_of(fed: fz.Federation, state: deploy.Deployment) -> list[str]:
    """Command lines of live processes that belong to the deployment: its SuperLink's address,
    a SuperNode's ClientApp API port, or a path under its folder."""
    marks = [fed.address, str(state.folder), *(f"127.0.0.1:{n.port}" for n in state.nodes)]
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(mark in cmdline for mark in marks):
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="reads processes from /proc")
def test_superlink_crash_then_down_up_and_resume(flwr_env, tmp_path):
    """Issue 26, crash recovery as docs/deployment.md tells it: the SuperLink dies mid-run;
    `deploy restart` of a node is refused with the recovery commands (it once started another
    SuperNode copy on each try); `deploy down` stops every process of the deployment, ClientApps
    included; `deploy up` and `gfmfr run -c "resume=true run-name=..."` continue the run from
    the server's checkpoint, with every user's private state restored from its state-dir."""
    # FCF (a private user vector) without SecAgg+: the quickest rounds; what is tested is the
    # recovery, and the SecAgg+ kill test above covers secure rounds
    fed = flower_toml(tmp_path, tls=False, run_config=SMALL + ', num-server-rounds = 3, '
                      'strategy = "fcf", secure-aggregation = "false"')
    toml = tmp_path / "flower.toml"
    checkpoint = tmp_path / "results" / "crashed" / "checkpoint.npz"
    with deployed(fed, toml) as state:
        assert _processes_of(fed, state)  # the check sees the running deployment
        run = start_run(toml, "-c", "run-name='crashed'")
        try:
            wait_for(lambda: _checkpoint_round(checkpoint) >= 1 or run.poll() is not None, 300,
                     "round 1's checkpoint")
            assert run.poll() is None, run.communicate()[0][-3000:]  # it ended before the crash
            os.killpg(state.superlink_pid, signal.SIGKILL)
            wait_for(lambda: not deploy._is_flower(state.superlink_pid), 30, "the SuperLink to die")
        finally:
            processes.stop(run.pid)
        crashed_at = _checkpoint_round(checkpoint)
        assert crashed_at < 3, "the run ended before the crash: nothing left to resume"
        restart = subprocess.run([sys.executable, "-m", "server_app.cli", "deploy", "restart",
                                  "d", "1", "--flower-toml", str(toml)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=120)
        assert restart.returncode != 0
        assert "is not running" in restart.stderr and "gfmfr deploy up d" in restart.stderr
        assert "resume=true" in restart.stderr
        assert [n.pid for n in deploy.Deployment.load(fed.run_dir).nodes] == \
            [n.pid for n in state.nodes]  # no new copy recorded (or started)
    deadline = time.monotonic() + 20  # a killed group's last children may take a moment
    while (left := _processes_of(fed, state)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, left

    with deployed(fed, toml) as state:
        offsets = {node.index: node.log.stat().st_size for node in state.nodes}
        finish(start_run(toml, "-c", "resume=true run-name='crashed'"))
        done = json.loads((checkpoint.parent / "summary.json").read_text())
        assert done["config"]["resume"] is True
        assert [r["round"] for r in done["rounds"]] == list(range(4))  # 0: before training
        assert all(r["trained"] == USERS for r in done["rounds"] if r["round"] > crashed_at)
        for node in state.nodes:  # each user went on from its own saved parameters
            log = node.log.read_bytes()[offsets[node.index]:].decode(errors="replace")
            assert f"restored the private state of user {node.index}" in log, log[-2000:]


def _checkpoint_round(path: Path) -> int:
    """The last round saved in the server's checkpoint (-1: none yet; 0: before training)."""
    try:
        return load_checkpoint(path)[1]["history"]["rounds"][-1]["round"]
    except (FileNotFoundError, OSError, ValueError, KeyError, IndexError):
        return -1
