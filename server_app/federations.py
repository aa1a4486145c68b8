"""``flower.toml`` (where runs go) parsed into typed federations, and bridged to Flower's config.

Flower reads SuperLink connections from ``$FLWR_HOME/config.toml``; ``flower.toml`` is the project's
single place to edit. ``connection_entry`` turns a federation into Flower's format,
``simulation_options`` into ``flwr run --federation-config`` values. A deployment federation also
says how ``gfmfr deploy`` starts its SuperLink and SuperNodes (certificates, node authentication,
node config): see ``server_app.deploy``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from server_app.superlink import CONTROL_FROM, parse_networks

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FLOWER_TOML = PROJECT_ROOT / "flower.toml"
KINDS = ("simulation", "deployment")
RUN_DIR = ".deploy"  # next to flower.toml: one folder per deployment started by `gfmfr deploy`


class FlowerTomlError(ValueError):
    """flower.toml is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class SimulationSettings:
    client_cpus: int = 1
    ray_cpus: int = 2
    ray_inline_bytes: int = 8 * 1024 * 1024
    ray_address: str = ""

    def environment(self) -> dict[str, str]:
        """Environment for the SuperLink process that starts the Simulation Runtime.

        ``RAY_ADDRESS`` is always set: without it ``ray.init()`` joins any cluster that
        ``ray start`` left on this machine (``/tmp/ray/ray_current_cluster``) and then refuses
        our ``num_cpus`` ("When connecting to an existing cluster, num_cpus and num_gpus must not
        be provided"). ``local`` makes Ray start its own instance.
        """
        return {"RAY_max_direct_call_object_size": str(self.ray_inline_bytes),
                "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
                "RAY_ADDRESS": self.ray_address or "local"}


AUTO = "auto"


@dataclass(frozen=True)
class Federation:
    """One ``[federations.<name>]`` table; paths are absolute (resolved against flower.toml)."""

    name: str
    kind: str  # simulation | deployment
    # simulation: SuperNodes (0 = "auto": one per user of the run's dataset, see
    # server_app.cli.sized); deployment: how many `gfmfr deploy up` starts
    num_supernodes: int = 0
    address: str = ""  # deployment: the SuperLink's host:port, as clients dial it
    bind: str = ""  # deployment: the interface the SuperLink listens on, on a server (--dry-run)
    control_from: str = CONTROL_FROM  # deployment: who may use the Control API (flwr)
    insecure: bool = False
    root_certificates: Path | None = None  # CA file that signed the SuperLink's certificate
    certificates: Path | None = None  # folder made by `gfmfr certs` (CA, server certificate, keys)
    node_auth: bool = False  # SuperLink admits only SuperNodes whose public key is registered
    node_config: dict[str, Any] = field(default_factory=dict)  # extra node config for every node
    run_config: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None  # where `gfmfr deploy` keeps pids, logs and node state

    @property
    def ca_file(self) -> Path | None:
        """The CA that clients trust: ``root-certificates``, else ``<certificates>/ca.crt``."""
        if self.root_certificates is not None or self.certificates is None:
            return self.root_certificates
        return self.certificates / "ca.crt"


@dataclass(frozen=True)
class FlowerToml:
    default: str
    simulation: SimulationSettings
    federations: dict[str, Federation]

    def federation(self, name: str | None) -> Federation:
        chosen = name or self.default
        if chosen not in self.federations:
            raise FlowerTomlError(f"no federation {chosen!r} in flower.toml; defined: "
                                  f"{', '.join(self.federations)}.")
        return self.federations[chosen]


TOP_KEYS = ("default", "simulation", "federations")
SIMULATION_KEYS = ("client-cpus", "ray-cpus", "ray-inline-bytes", "ray-address")
FEDERATION_KEYS = ("kind", "num-supernodes", "address", "bind", "control-from", "insecure",
                   "root-certificates", "certificates", "node-auth", "node-config", "run-config")


def load_flower_toml(path: Path = FLOWER_TOML) -> FlowerToml:
    """Parse and check ``flower.toml``; errors name the key and the fix."""
    if not path.is_file():
        raise FlowerTomlError(f"{path} not found: run from the project checkout.")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise FlowerTomlError(f"{path} is not valid TOML: {error}") from None
    _check_keys(path, raw)
    sim = raw.get("simulation", {})
    settings = SimulationSettings(
        client_cpus=int(sim.get("client-cpus", 1)), ray_cpus=int(sim.get("ray-cpus", 2)),
        ray_inline_bytes=int(sim.get("ray-inline-bytes", 8 * 1024 * 1024)),
        ray_address=str(sim.get("ray-address", "")))
    federations = {}
    for name, entry in raw.get("federations", {}).items():
        kind = entry.get("kind")
        if kind not in KINDS:
            raise FlowerTomlError(f"{path}: federations.{name}.kind must be one of "
                                  f"{', '.join(KINDS)}, got {kind!r}.")
        size = entry.get("num-supernodes", AUTO if kind == "simulation" else 0)
        if kind == "simulation" and size != AUTO and (isinstance(size, bool) or
                                                      not isinstance(size, int) or size < 1):
            raise FlowerTomlError(f"{path}: federations.{name}.num-supernodes must be \"auto\" "
                                  f"(one per user of its dataset) or a number >= 1, got {size!r}.")
        if kind == "deployment":
            _check_deployment(path, name, entry)
        federations[name] = Federation(
            name=name, kind=kind, num_supernodes=0 if size == AUTO else int(size),
            address=str(entry.get("address", "")), bind=str(entry.get("bind", "")),
            control_from=str(entry.get("control-from", CONTROL_FROM)),
            insecure=bool(entry.get("insecure", False)),
            root_certificates=_path(path, entry.get("root-certificates")),
            certificates=_path(path, entry.get("certificates")),
            node_auth=bool(entry.get("node-auth", False)),
            node_config=_node_config(path, entry.get("node-config", {})),
            run_config=dict(entry.get("run-config", {})),
            run_dir=path.parent.resolve() / RUN_DIR / name if kind == "deployment" else None)
    default = str(raw.get("default", next(iter(federations), "")))
    if default not in federations:
        raise FlowerTomlError(f"{path}: default = {default!r} names no federation.")
    return FlowerToml(default, settings, federations)


def _check_keys(path: Path, raw: dict[str, Any]) -> None:
    """Refuse keys nobody reads: a ``ray-address`` that lands in the last federation table (a
    line appended at the end of the file) would otherwise be ignored in silence."""
    tables = [("", raw, TOP_KEYS), ("[simulation]", raw.get("simulation", {}), SIMULATION_KEYS)]
    tables += [(f"[federations.{name}]", entry, FEDERATION_KEYS)
               for name, entry in raw.get("federations", {}).items()]
    for where, table, known in tables:
        for key in table:
            if key in known:
                continue
            hint = " (it belongs in [simulation])" if key in SIMULATION_KEYS else ""
            raise FlowerTomlError(f"{path}: unknown key {key!r} {where or 'at the top'}{hint}; "
                                  f"known there: {', '.join(known)}.")


def _check_deployment(path: Path, name: str, entry: dict[str, Any]) -> None:
    """The combinations Flower refuses at start-up, refused here with the fix."""
    where = f"{path}: federations.{name}"
    if not entry.get("address"):
        raise FlowerTomlError(f"{where} needs the SuperLink's address.")
    tls = entry.get("certificates") or entry.get("root-certificates")
    if entry.get("insecure") and tls:
        raise FlowerTomlError(f"{where}: insecure = true contradicts certificates: drop one.")
    if entry.get("node-auth") and not entry.get("certificates"):
        raise FlowerTomlError(f"{where}: node-auth needs TLS and node keys: set certificates = "
                              "\"<folder from gfmfr certs>\".")
    try:
        parse_networks(str(entry.get("control-from", CONTROL_FROM)))
    except ValueError as error:
        raise FlowerTomlError(f"{where}.control-from: {error}") from None
    if not isinstance(entry.get("node-config", {}), dict):
        raise FlowerTomlError(f"{where}.node-config must be a table, e.g. "
                              "{ data-dir = \"data\" }.")


def _node_config(flower_toml: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Node config for local SuperNodes; folders (keys ending in ``-dir``) made absolute."""
    return {key: str(_path(flower_toml, value)) if key.endswith("-dir") and value else value
            for key, value in values.items()}


def _path(flower_toml: Path, value: Any) -> Path | None:
    return None if not value else (flower_toml.parent / str(value)).expanduser().resolve()


def simulation_options(fed: Federation, settings: SimulationSettings) -> str:
    """``flwr run --federation-config`` value for a simulated federation.

    On a Ray cluster (``ray-address``) the cluster's own CPUs count: Ray refuses ``num_cpus``
    when it joins an existing cluster, so it is left out.
    """
    options = (f"num-supernodes={fed.num_supernodes} "
               f"client-resources-num-cpus={settings.client_cpus}")
    return options if settings.ray_address else f"{options} init-args-num-cpus={settings.ray_cpus}"


def connection_entry(fed: Federation, settings: SimulationSettings) -> dict[str, Any]:
    """Flower's ``[superlink.<name>]`` table for a federation."""
    if fed.kind == "simulation":
        backend: dict[str, Any] = {"client-resources": {"num-cpus": settings.client_cpus}}
        if not settings.ray_address:  # see simulation_options
            backend["init-args"] = {"num-cpus": settings.ray_cpus}
        return {"address": ":local:", "options": {"num-supernodes": fed.num_supernodes,
                                                  "backend": backend}}
    entry: dict[str, Any] = {"address": fed.address}
    if fed.insecure:
        entry["insecure"] = True
    if fed.ca_file is not None:
        entry["root-certificates"] = str(fed.ca_file)
    return entry


def root_certificates_problem(fed: Federation) -> str | None:
    """Why a TLS deployment's CA file cannot be used, as one line with the fix; None if it can.

    Without it ``flwr`` only says "check your network connection"; a client machine that was never
    given ``ca.crt`` is the usual cause.
    """
    path = fed.ca_file
    if fed.kind != "deployment" or fed.insecure or path is None:
        return None
    fix = (f"copy the deployment's ca.crt there (from the operator; `gfmfr certs` makes it) or "
           f"point root-certificates of [federations.{fed.name}] in flower.toml at it")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return f"federation {fed.name}: its CA file {path} does not exist: {fix}."
    except OSError as error:
        return f"federation {fed.name}: its CA file {path} cannot be read ({error.strerror}): {fix}."
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return f"federation {fed.name}: its CA file {path} holds no PEM certificate: {fix}."
    return None


def flwr_home() -> Path:
    return Path(os.environ.get("FLWR_HOME") or Path.home() / ".flwr").expanduser()


def write_connections(entries: dict[str, dict[str, Any]], home: Path | None = None) -> Path:
    """Merge ``entries`` into ``$FLWR_HOME/config.toml``, keeping every other connection."""
    path = (home or flwr_home()) / "config.toml"
    config: dict[str, Any] = {}
    if path.is_file():
        config = tomllib.loads(path.read_text())
    superlink = config.setdefault("superlink", {})
    superlink.setdefault("default", "local")
    superlink.setdefault("local", {"address": ":local:"})
    superlink.update(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(tomli_w.dumps(config))
    os.replace(tmp, path)
    return path


def run_config_arg(values: dict[str, Any]) -> str:
    """A ``--run-config`` string from a dict, with TOML-quoted values."""
    return " ".join(f"{k}={tomli_w.dumps({'v': v}).strip()[4:]}" for k, v in values.items())
