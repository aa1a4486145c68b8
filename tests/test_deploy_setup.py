"""Deployment set-up without starting anything: certificates, flower.toml deployments, commands, FAB."""

from __future__ import annotations

import dataclasses
import ipaddress
import shlex
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key
from flwr.app import Context, RecordDict
from flwr.common.config import parse_config_args
from flwr.common.constant import FAB_MAX_SIZE

from client_app.session import data_path
from server_app import deploy
from server_app import federations as fz
from server_app.certificates import generate
from server_app.processes import executable
from strategies.config import RunConfig
from tests.conftest import ROOT

DEPLOYMENTS = """
default = "tls"
[federations.plain]
kind = "deployment"
address = "127.0.0.1:9093"
insecure = true
num-supernodes = 2
node-config = { data-dir = "mydata", colour = "blue" }
[federations.tls]
kind = "deployment"
address = "server.example.org:9193"
certificates = "certs"
node-auth = true
"""


def load(tmp_path: Path, text: str = DEPLOYMENTS) -> fz.FlowerToml:
    path = tmp_path / "flower.toml"
    path.write_text(text)
    return fz.load_flower_toml(path)


def test_certificates_chain_names_and_key_formats(tmp_path):
    certs = generate(tmp_path / "c", hosts=["server.example.org", "10.0.0.5"], nodes=2)
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(certs.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "server.example.org"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                         ipaddress.ip_address("10.0.0.5")]
    private = load_ssh_private_key(certs.node_key(1).read_bytes(), None)
    public = load_ssh_public_key(certs.node_public_key(1).read_bytes())
    assert isinstance(private.curve, ec.SECP384R1) and private.public_key() == public
    for secret in (certs.ca_key, certs.server_key, certs.node_key(0)):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_certificates_again_keep_ca_and_registered_keys(tmp_path):
    first = generate(tmp_path, nodes=1)
    ca, key = first.ca_cert.read_bytes(), first.node_key(0).read_bytes()
    again = generate(tmp_path, hosts=["new.host"], nodes=2)
    assert again.ca_cert.read_bytes() == ca and again.node_key(0).read_bytes() == key
    assert again.node_key(1).exists()
    server = x509.load_pem_x509_certificate(again.server_cert.read_bytes())
    server.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))


def test_deployment_federations_parse(tmp_path):
    project = load(tmp_path)
    plain, tls = project.federations["plain"], project.federations["tls"]
    assert plain.node_config == {"data-dir": str(tmp_path / "mydata"), "colour": "blue"}
    assert tls.ca_file == tmp_path / "certs" / "ca.crt" and tls.node_auth
    assert tls.run_dir == tmp_path / fz.RUN_DIR / "tls"
    assert fz.connection_entry(tls, project.simulation) == {
        "address": "server.example.org:9193", "root-certificates": str(tmp_path / "certs/ca.crt")}
    assert fz.connection_entry(plain, project.simulation) == {"address": "127.0.0.1:9093",
                                                             "insecure": True}


@pytest.mark.parametrize("entry, words", [
    ('insecure = true\nnode-auth = true', "node-auth needs TLS"),
    ('insecure = true\ncertificates = "c"', "contradicts"),
    ('root-certificates = "ca.crt"\nnode-auth = true', "node-auth needs TLS"),
    ('insecure = true\ncontrol-from = "operator.example.org"', "not an IP address or network"),
])
def test_deployment_combinations_flower_refuses_are_refused_early(tmp_path, entry, words):
    with pytest.raises(fz.FlowerTomlError, match=words):
        load(tmp_path, f'[federations.d]\nkind = "deployment"\naddress = "h:1"\n{entry}\n')


def test_commands_match_the_federation(tmp_path):
    tls = load(tmp_path).federations["tls"]
    link = deploy.superlink_command(tls, host="0.0.0.0")
    assert link[link.index("--host") + 1] == "0.0.0.0" and link[link.index("--port") + 1] == "9193"
    assert "--enable-supernode-auth" in link and "--insecure" not in link
    assert link[link.index("--ssl-certfile") + 1] == str(tmp_path / "certs" / "server.pem")
    node = deploy.supernode_command(tls, 2, 3, 9100, tmp_path / "s")
    assert node[node.index("--superlink") + 1] == "server.example.org:9193"
    assert node[node.index("--auth-supernode-private-key") + 1] == str(
        tmp_path / "certs" / "keys" / "node-2")
    assert parse_config_args([node[node.index("--node-config") + 1]]) == {
        "partition-id": 2, "num-partitions": 3, "state-dir": str(tmp_path / "s")}
    plain = deploy.supernode_command(load(tmp_path).federations["plain"], 0, 2, 9100, tmp_path)
    assert "--insecure" in plain and "--auth-supernode-private-key" not in plain


def test_dry_run_prints_commands_for_separate_machines(tmp_path):
    """What one runs on real machines: all interfaces, a SuperLink database file, a certificate
    naming the server, `gfmfr sync` before registering, each node's own data-dir, and no path
    of this checkout (every command runs in the checkout of its own machine)."""
    tls = load(tmp_path).federations["tls"]
    lines = deploy.dry_run(tls, 2)
    commands = [shlex.split(x) for x in lines if not x.startswith("#")]
    assert not any(str(tmp_path) in x or str(ROOT) in x for x in lines)
    assert not any(word.startswith("/") and word != "/dev/urandom"
                   for command in commands for word in command)
    (certs,) = [c for c in commands if c[:2] == ["gfmfr", "certs"]]
    assert certs[certs.index("--hosts") + 1] == "server.example.org" and "--nodes" in certs
    (link,) = [c for c in commands if c[:2] == ["gfmfr", "superlink"]]
    assert link[link.index("--control-from") + 1] == fz.CONTROL_FROM
    assert link[link.index("--host") + 1] == "0.0.0.0"
    database = link[link.index("--database") + 1]
    assert database.endswith(".db") and not database.startswith(":")
    assert link[link.index("--ssl-certfile") + 1] == "certs/server.pem"
    order = [" ".join(c[:3]) for c in commands]
    sync, registers = order.index("gfmfr sync"), [i for i, c in enumerate(order)
                                                   if c == "flwr supernode register"]
    assert len(registers) == 2 and sync < min(registers)
    assert commands[registers[1]][3] == "certs/keys/node-1.pub"
    nodes = [c for c in commands if c[0] == "flower-supernode"]
    assert len(nodes) == 2 and all(n[n.index("--superlink") + 1] == tls.address for n in nodes)
    config = parse_config_args([nodes[1][nodes[1].index("--node-config") + 1]])
    assert config == {"partition-id": 1, "num-partitions": 2, "state-dir": "state",
                      "data-dir": "data"}
    assert nodes[1][nodes[1].index("--auth-supernode-private-key") + 1] == "certs/keys/node-1"
    assert commands[-1] == ["gfmfr", "run", "tls"]
    # issue 26: every machine runs only the pinned app: the SuperLink and each SuperNode in
    # process isolation, each started in the background with a guarded SuperExec beside it
    assert order.index("gfmfr app-hash") < order.index("mkdir -p .deploy/tls")
    assert all(c[c.index("--isolation") + 1] == "process" for c in [link, *nodes])
    guards = [i for i, c in enumerate(commands) if c[:2] == ["gfmfr", "superexec"]]
    assert len(guards) == 3 and all(commands[i - 1][-1] == "&" for i in guards)
    trusted = ".deploy/tls/trusted-apps.txt"
    for i in guards:
        guard = commands[i]
        assert guard[guard.index("--trusted-apps") + 1] == trusted and guard[-2:] == [
            "--parent-pid", "$!"]
    server_guard, node_guard = commands[guards[0]], commands[guards[1]]
    assert server_guard[server_guard.index("--runtime-api-address") + 1] == "127.0.0.1:9193"
    assert server_guard[server_guard.index("--root-certificates") + 1] == "certs/ca.crt"
    assert node_guard[node_guard.index("--runtime-api-address") + 1] == "127.0.0.1:9094"
    # each Runtime API takes tasks only from the SuperExec holding its machine's fresh secret
    secret = ".deploy/tls/superexec.secret"
    for command in [link, *nodes, *(commands[i] for i in guards)]:
        assert command[command.index("--superexec-auth-secret-file") + 1] == secret
    made = [i for i, x in enumerate(lines) if f"/dev/urandom > {secret}" in x]
    assert len(made) == 3 and all("umask 077" in lines[i] for i in made)
    assert made[0] < min(i for i, x in enumerate(lines) if x.startswith("gfmfr superlink"))
    # the server's SuperExec hands its ServerApps the locked run config: node-registry, once
    # the registrations are done (issue 26: our app with someone else's run config)
    locked = ".deploy/tls/locked-run-config.toml"
    assert server_guard[server_guard.index("--locked-run-config") + 1] == locked
    assert "--locked-run-config" not in node_guard
    last_register = max(i for i, x in enumerate(lines) if x.startswith("flwr supernode register"))
    assert lines.index(f"echo 'node-registry = \".deploy/tls/node-registry.json\"' > {locked}") > \
        last_register

    # a loopback address becomes a marked placeholder; a bind address and a node data-dir given
    # in flower.toml are used, relative to the checkout
    plain = load(tmp_path, DEPLOYMENTS.replace('insecure = true', 'insecure = true\n'
                                               'bind = "10.0.0.5"')).federations["plain"]
    lines = deploy.dry_run(plain, 1)
    (link,) = [shlex.split(x) for x in lines if x.startswith("gfmfr superlink")]
    assert link[link.index("--host") + 1] == "10.0.0.5"
    (node,) = [shlex.split(x) for x in lines if x.startswith("flower-supernode")]
    assert node[node.index("--superlink") + 1] == f"{deploy.SERVER_PLACEHOLDER}:9093"
    assert parse_config_args([node[node.index("--node-config") + 1]])["data-dir"] == "mydata"
    assert any(deploy.SERVER_PLACEHOLDER in x and x.startswith("#") for x in lines)


def test_deploy_refuses_a_simulation_federation(tmp_path):
    project = fz.load_flower_toml(ROOT / "flower.toml")
    with pytest.raises(fz.FlowerTomlError, match="not a deployment"):
        deploy.up(project.federation("synthetic"), 1)


def test_the_repository_flower_toml_still_parses_and_syncs(tmp_path):
    project = fz.load_flower_toml(ROOT / "flower.toml")
    entries = {n: fz.connection_entry(f, project.simulation)
               for n, f in project.federations.items()}
    path = fz.write_connections(entries, home=tmp_path)
    assert fz.tomllib.loads(path.read_text())["superlink"]["tls-deployment"][
        "root-certificates"] == str(ROOT / "certs" / "ca.crt")


def test_node_data_dir_wins_over_the_run_config(tmp_path, monkeypatch):
    monkeypatch.delenv("GFMFR_DATA_DIR", raising=False)
    cfg = RunConfig.from_run_config({"data-dir": "shared"})
    own = Context(run_id=1, node_id=1, node_config={"data-dir": str(tmp_path)},
                  state=RecordDict(), run_config={})
    plain = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    assert data_path(own, cfg) == tmp_path
    assert data_path(plain, cfg) == Path("shared").resolve()


def test_app_bundle_stays_small_and_holds_no_data_keys_or_state(tmp_path):
    subprocess.run([executable("flwr"), "build", "--app", str(ROOT)], cwd=tmp_path,
                   capture_output=True, check=True)
    (fab,) = tmp_path.glob("*.fab")
    assert fab.stat().st_size < FAB_MAX_SIZE
    names = zipfile.ZipFile(fab).namelist()
    banned = (".deploy/", "certs/", "data/", "results/", ".flwr/")
    assert not [n for n in names if n.startswith(banned) or n.endswith((".npz", ".key", ".pub"))]


def test_a_ray_cluster_gets_no_cpu_count_of_ours():
    fed = fz.Federation("s", "simulation", num_supernodes=5)
    local, cluster = fz.SimulationSettings(), fz.SimulationSettings(ray_address="head:6379")
    assert "init-args-num-cpus=2" in fz.simulation_options(fed, local)
    assert "init-args" not in fz.simulation_options(fed, cluster)  # Ray refuses num_cpus there
    assert "init-args" not in fz.connection_entry(fed, cluster)["options"]["backend"]
    assert cluster.environment()["RAY_ADDRESS"] == "head:6379"


def test_auto_sized_simulation_fits_a_dataset_of_ones_own(tmp_path, capsys):
    """num-supernodes = "auto": one SuperNode per user left after loading, no editing."""
    import numpy as np

    from server_app.cli import main, sized

    rng = np.random.default_rng(0)
    rows = ["userId,itemId,rating,timestamp"]
    for user in range(12):
        count = 2 if user < 2 else 6  # two users too short: dropped
        rows += [f"{user},{item},5,{t}" for t, item in enumerate(rng.choice(20, count, False))]
    (tmp_path / "inter.csv").write_text("\n".join(rows) + "\n")
    np.save(tmp_path / "text_features.npy", rng.normal(size=(20, 4)).astype(np.float32))
    np.save(tmp_path / "image_features.npy", rng.normal(size=(20, 3)).astype(np.float32))
    project = fz.load_flower_toml(ROOT / "flower.toml")
    fed = sized(project.federation("gfmfr"), f"data-dir='{tmp_path}'")
    assert fed.num_supernodes == 10
    assert "num-supernodes=10" in fz.simulation_options(fed, project.simulation)
    # gfmfr data check says what a run will see, before anything trains
    assert main(["data", "check", "gfmfr", "-c", f"data-dir='{tmp_path}'"]) == 0
    out = capsys.readouterr().out
    assert "users 10 (dropped 2 with fewer than 3" in out and "runs 10 SuperNodes" in out
    # a folder without the data: one line that names it, no traceback
    for command in ("run", "data check"):
        argv = [*command.split(), "gfmfr", "-c", f"data-dir='{tmp_path / 'nowhere'}'"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "nowhere" in err and "Traceback" not in err


def test_restart_after_a_superlink_crash_says_how_to_recover(tmp_path):
    """With the SuperLink gone a restarted SuperNode would never be accepted (and each retry left
    another copy running): refuse, and name the commands that recover the run."""
    fed = load(tmp_path).federations["plain"]
    state = deploy.Deployment("plain", tmp_path, 1, superlink_pid=0,
                              nodes=[deploy.Node(0, 9100, tmp_path / "node-0")])
    with pytest.raises(RuntimeError, match="SuperLink of deployment plain is not running") as err:
        deploy.restart_node(fed, state, 0)
    assert "gfmfr deploy up plain" in str(err.value) and "resume=true" in str(err.value)
    assert not (tmp_path / "node-0").exists()  # nothing was started


def test_a_missing_or_unusable_ca_fails_early_naming_the_file(tmp_path, capsys):
    """A client machine without ca.crt: one line naming the file and the fix, before `flwr` says
    "check your network connection"."""
    from server_app.cli import main

    load(tmp_path)
    toml = str(tmp_path / "flower.toml")
    ca = tmp_path / "certs" / "ca.crt"
    for content in (None, b"not a certificate\n"):
        if content is not None:
            ca.parent.mkdir(exist_ok=True)
            ca.write_bytes(content)
        for argv in (["run", "tls"], ["sync"]):
            assert main([*argv, "--flower-toml", toml]) == 2
            err = capsys.readouterr().err.strip()
            assert str(ca) in err and "copy the deployment's ca.crt" in err, err
            assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_tls_problems_are_named_as_tls_problems(tmp_path):
    """The SuperLink's certificate from another CA, or not naming the host dialled, and a port
    nobody listens on: each a one-line error of its own, not "check your network"."""
    import socket
    import ssl
    import threading

    from server_app.processes import check_superlink, free_port

    served, other = generate(tmp_path / "a"), generate(tmp_path / "b")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(served.server_cert, served.server_key)
    listener = socket.create_server(("0.0.0.0", 0))  # also 127.0.0.2, which it does not name
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(3):
            connection, _ = listener.accept()
            try:
                context.wrap_socket(connection, server_side=True).close()
            except (ssl.SSLError, OSError):
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        check_superlink(f"127.0.0.1:{port}", served.ca_cert)  # the right CA: passes
        with pytest.raises(RuntimeError, match="^TLS: .*certificate") as wrong_ca:
            check_superlink(f"127.0.0.1:{port}", other.ca_cert)
        assert str(other.ca_cert) in str(wrong_ca.value)
        with pytest.raises(RuntimeError, match="gfmfr certs DIR --hosts 127.0.0.2"):
            check_superlink(f"127.0.0.2:{port}", served.ca_cert)  # not in the certificate
    finally:
        listener.close()
    with pytest.raises(RuntimeError, match="cannot reach the SuperLink"):
        check_superlink(f"127.0.0.1:{free_port()}", served.ca_cert)


def test_node_registry_binds_keys_to_users(tmp_path):
    """A registered key is good for its own user only; a key outside the registry for none."""
    from server_app.cli import registry_override
    from server_app.nodes import FederationError, claim_refused, load_registry

    state = deploy.Deployment("tls", tmp_path, 2, nodes=[deploy.Node(0, 1, tmp_path, 0, 111),
                                                         deploy.Node(1, 2, tmp_path, 0, 222)])
    registry = load_registry(str(deploy.write_registry(state)))
    assert registry == {111: 0, 222: 1}
    assert claim_refused(111, 0, registry) == "" and claim_refused(5, 0, None) == ""
    assert "registered for user 1" in claim_refused(222, 0, registry)  # another user's slot
    assert "not in the node registry" in claim_refused(333, 1, registry)  # self-registered key
    (tmp_path / "bad.json").write_text('{"1": 0, "2": 0}')
    with pytest.raises(FederationError, match="one user to several node ids"):
        load_registry(str(tmp_path / "bad.json"))
    # gfmfr run passes the file `deploy up` wrote, unless told otherwise
    project = load(tmp_path)
    tls = dataclasses.replace(project.federations["tls"], run_dir=tmp_path)
    assert parse_config_args([registry_override(tls, "")]) == {
        "node-registry": str(tmp_path / deploy.REGISTRY_FILE)}
    assert registry_override(tls, "node-registry='x.json'") == ""
    assert registry_override(project.federations["plain"], "") == ""
