"""The Ray cluster path (``[simulation] ray-address``): the checks, and a real two-node cluster.

The slow test starts a head and a worker node as two ``ray start --block`` processes (each its own
raylet, ports and temp dir, so nothing joins another cluster on this machine), runs ``gfmfr run``
against the head and reads each node's worker logs to see where ClientApps ran. It stops only the
two process groups it started.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server_app import federations as fz
from server_app import processes, ray_cluster
from server_app.processes import executable
from server_app.ray_cluster import RayNode
from tests.conftest import ROOT

INLINE = 8 * 1024 * 1024


def test_a_local_simulation_never_joins_a_cluster_left_by_ray_start():
    """Without RAY_ADDRESS, ray.init() joins /tmp/ray/ray_current_cluster and refuses num_cpus."""
    assert fz.SimulationSettings().environment()["RAY_ADDRESS"] == "local"
    cluster = fz.SimulationSettings(ray_address="head:6379").environment()
    assert cluster["RAY_ADDRESS"] == "head:6379"
    assert cluster["RAY_max_direct_call_object_size"] == str(INLINE)


def test_a_ray_address_outside_the_simulation_table_is_refused(tmp_path: Path):
    path = tmp_path / "flower.toml"
    path.write_text((ROOT / "flower.toml").read_text() + '\nray-address = "127.0.0.1:6390"\n')
    with pytest.raises(fz.FlowerTomlError, match="'ray-address'.*belongs in \\[simulation\\]"):
        fz.load_flower_toml(path)


def test_an_unreachable_cluster_fails_in_one_line():
    address = f"127.0.0.1:{processes.free_port()}"
    with pytest.raises(RuntimeError, match=f"no Ray cluster answers at {address}"):
        ray_cluster.check(address, client_cpus=1, inline_bytes=INLINE)
    with pytest.raises(RuntimeError, match="not HOST:PORT"):
        ray_cluster.check("head", client_cpus=1, inline_bytes=INLINE)


def test_a_clientapp_must_fit_on_one_node():
    nodes = [RayNode("a" * 56, "10.0.0.1", 2.0, INLINE), RayNode("b" * 56, "10.0.0.2", 3.0, INLINE)]
    assert ray_cluster.parallel_clientapps(nodes, 1) == 5
    assert ray_cluster.parallel_clientapps(nodes, 2) == 2  # 3 CPUs hold one 2-CPU ClientApp
    assert ray_cluster.fit_error(nodes, "h:1", 3) is None
    error = ray_cluster.fit_error(nodes, "h:1", 4)  # 5 CPUs in all, but no node has 4
    assert error is not None and "2, 3 CPUs but client-cpus = 4" in error
    assert "no alive node" in str(ray_cluster.fit_error([], "h:1", 1))


def test_a_node_started_without_the_inline_limit_is_named():
    nodes = [RayNode("a" * 56, "10.0.0.1", 2.0, INLINE), RayNode("b" * 56, "10.0.0.2", 2.0,
                                                                    100 * 1024)]
    (warning,) = ray_cluster.warnings(nodes, INLINE)
    assert "10.0.0.2 (bbbbbbbb, 102400 B)" in warning and "10.0.0.1" not in warning
    assert f"RAY_max_direct_call_object_size={INLINE}" in warning
    assert ray_cluster.warnings(nodes[:1], INLINE) == []


@dataclass
class RayClusterHere:
    address: str
    node_dirs: list[Path]  # each raylet's --temp-dir
    session: str  # the cluster's session folder name, the same on every node

    def nodes_that_ran(self, actor_class: str) -> list[Path]:
        """Nodes whose worker logs hold an actor of this class (Ray heads each worker's log with
        ``:actor_name:<class>``; every raylet logs into its own temp dir)."""
        marker = f":actor_name:{actor_class}"
        return [d for d in self.node_dirs
                if any(marker in log.read_text(errors="replace")
                       for log in (d / self.session / "logs").glob("worker-*.out"))]


def _ray_start(args: list[str], temp_dir: Path, log: Path) -> subprocess.Popen:
    """``ray start --block`` as README says (inline limit in its environment), on free ports."""
    ports = {flag: processes.free_port() for flag in (
        "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
        "--runtime-env-agent-port")}
    command = [executable("ray"), "start", *args, "--num-cpus", "1", "--temp-dir", str(temp_dir),
               "--disable-usage-stats", "--block"]
    for flag, port in ports.items():
        command += [flag, str(port)]
    return processes.start(command, log, env={"RAY_max_direct_call_object_size": str(INLINE),
                                              "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"})


def _wait_started(proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Ray runtime started" in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise RuntimeError(f"ray start did not come up: {log}\n{processes.tail(log)}")


@pytest.fixture(scope="module")
def two_node_ray_cluster() -> Iterator[RayClusterHere]:
    """A head and a worker node, one CPU each, under a short temp dir (Ray's socket paths must
    fit 107 bytes), never /tmp/ray: no other ``ray.init()`` on this machine finds this cluster
    unless it is given ``RAY_TMPDIR=<root>``, where the head's ``ray/ray_current_cluster`` lies."""
    root = Path(tempfile.mkdtemp(prefix="gfmfr-ray-"))
    head_dir, worker_dir = root / "ray", root / "worker"
    port = processes.free_port()
    started = []
    try:
        head = _ray_start(["--head", "--port", str(port), "--include-dashboard", "false",
                           "--dashboard-port", str(processes.free_port()),
                           "--ray-client-server-port", str(processes.free_port())],
                          head_dir, root / "head.log")
        started.append(head.pid)
        _wait_started(head, root / "head.log")
        worker = _ray_start(["--address", f"127.0.0.1:{port}"], worker_dir, root / "worker.log")
        started.append(worker.pid)
        _wait_started(worker, root / "worker.log")
        session = (head_dir / "session_latest").resolve().name
        yield RayClusterHere(f"127.0.0.1:{port}", [head_dir, worker_dir], session)
    finally:
        processes.stop_all(started[::-1])  # the worker first, then the head with its GCS
        shutil.rmtree(root, ignore_errors=True)


def gfmfr_run(toml: Path, run_config: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server_app.cli", "run", "--flower-toml",
                           str(toml), "-c", run_config], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False, env=processes.environment(env))


@pytest.mark.slow
def test_gfmfr_run_spreads_clientapps_over_a_two_node_ray_cluster(two_node_ray_cluster, flwr_env,
                                                                 tmp_path: Path):
    cluster = two_node_ray_cluster
    toml = tmp_path / "flower.toml"
    toml.write_text('default = "cluster"\n[simulation]\nclient-cpus = 1\n'
                    f'ray-address = "{cluster.address}"\n'
                    '[federations.cluster]\nkind = "simulation"\nnum-supernodes = "auto"\n'
                    'run-config = { dataset = "synthetic", synthetic-users = 20 }\n')
    done = gfmfr_run(toml, f"num-server-rounds=2 results-dir='{tmp_path}'")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ended as finished:completed" in done.stdout
    assert f"Ray cluster {cluster.address}: 2 node(s), 2 CPUs, 2 ClientApps" in done.stdout
    assert "has not reached" not in done.stderr  # both nodes got the inline limit
    assert len(cluster.nodes_that_ran("ClientAppActor")) == 2, done.stdout[-3000:]


@pytest.mark.slow
def test_a_local_run_ignores_a_cluster_that_ray_start_left_on_the_machine(two_node_ray_cluster,
                                                                         flwr_env, tmp_path):
    """The failure of issue 27: with the cluster as this machine's default (what a plain
    ``ray start --head`` leaves in /tmp/ray), a local run's ``ray.init(num_cpus=...)`` joined it
    and Ray refused: "When connecting to an existing cluster, num_cpus ... must not be given"."""
    root = two_node_ray_cluster.node_dirs[0].parent
    assert (root / "ray" / "ray_current_cluster").is_file()
    toml = tmp_path / "flower.toml"
    toml.write_text('default = "local"\n[simulation]\nclient-cpus = 1\nray-cpus = 1\n'
                    '[federations.local]\nkind = "simulation"\nnum-supernodes = "auto"\n'
                    'run-config = { dataset = "synthetic", synthetic-users = 6 }\n')
    done = gfmfr_run(toml, f"num-server-rounds=1 results-dir='{tmp_path}'",
                     env={"RAY_TMPDIR": str(root)})
    assert "ended as finished:completed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
