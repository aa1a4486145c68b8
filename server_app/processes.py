"""Starting and stopping Flower processes (SuperLink, SuperNodes) by pid, and checking runs.

Every process is started in its own session so that stopping it also stops the children it spawns
(SuperExec, the simulation process, Ray); nothing started here outlives ``stop``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

QUIET_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
             "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}


def executable(name: str) -> str:
    """A Flower command from this environment's bin folder, so an unactivated venv works too."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment plus Flower's quiet settings, with our bin folder first on PATH.

    SuperLink and SuperNode start ``flower-superexec`` by name: without our bin folder on PATH an
    unactivated venv fails there (or, worse, finds another Flower install).
    """
    env = {**os.environ, **QUIET_ENV, **(extra or {})}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (Linux; the IANA range elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def _bindable(port: int) -> bool:
    for host in ("127.0.0.1", "0.0.0.0"):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port nothing listens on, chosen outside the kernel's ephemeral range.

    A port the kernel picked for us (bind to 0) is an ephemeral one: between picking it and the
    SuperNode binding it, any outgoing connection (gRPC, HTTP) may be given it as its source port,
    and the SuperNode fails with "address already in use" (seen in CI). Ports below the ephemeral
    range are never handed to outgoing connections; distinct within this process.
    """
    low, high = _ephemeral_range()
    lowest, highest = (20000, low - 1) if low > 21000 else (high + 1, 65535)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(lowest, highest)
        if port not in _HANDED_OUT and _bindable(port):
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free port in {lowest}-{highest}: close some listening processes.")


def start(command: list[str], log_file: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start ``command`` in a new session (so ``stop`` reaches its children), logging to a file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                env=environment(env), cwd=cwd, start_new_session=True)


def stop(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL what is left after ``grace`` seconds."""
    stop_all([pid], grace)


def stop_all(pids: list[int], grace: float = 10.0) -> None:
    """``stop`` for several process groups at once: they shut down in parallel."""
    groups = {}
    for pid in pids:
        try:
            groups[pid] = os.getpgid(pid)
        except ProcessLookupError:
            pass
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pgid in groups.values():
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while groups and time.monotonic() < deadline:
            for pid, pgid in list(groups.items()):
                try:
                    os.waitpid(pid, os.WNOHANG)  # reap our own child so it does not linger
                except ChildProcessError:
                    pass
                if not _group_alive(pgid):
                    del groups[pid]
            time.sleep(0.1)
        if not groups:
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_http(port: int, process: subprocess.Popen, log_file: Path, timeout: float = 60.0,
              ca_file: Path | None = None) -> None:
    """Wait until the SuperLink's HTTP API answers (over TLS when ``ca_file`` is given)."""
    scheme = "https" if ca_file else "http"
    verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file else False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the SuperLink exited with code {process.returncode}; log: "
                               f"{log_file}\n{tail(log_file)}")
        try:
            if httpx.get(f"{scheme}://127.0.0.1:{port}/health", timeout=0.5,
                         verify=verify).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the SuperLink did not answer on port {port} within {timeout:.0f} s; "
                       f"log: {log_file}\n{tail(log_file)}")


def check_superlink(address: str, ca_file: Path | None, timeout: float = 10.0) -> None:
    """Before ``flwr run``: raise a one-line RuntimeError if the SuperLink at ``address`` cannot
    be reached, or (with ``ca_file``: TLS) its certificate does not verify against that CA or does
    not name the host dialled. Flower reports all of these as "check your network connection"."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            if ca_file is None:
                return
            context = ssl.create_default_context(cafile=str(ca_file))
            with context.wrap_socket(sock, server_hostname=host):
                return
    except ssl.SSLCertVerificationError as error:
        raise RuntimeError(
            f"TLS: the SuperLink at {address} presented a certificate that {ca_file} does not "
            f"accept ({error.verify_message}): use the ca.crt of the CA that signed server.pem, "
            f"and a certificate that names {host} (`gfmfr certs DIR --hosts {host}`)") from None
    except ssl.SSLError as error:
        raise RuntimeError(f"TLS handshake with the SuperLink at {address} failed ({error}): is "
                           "it started with --ssl-certfile, and is the address right?") from None
    except OSError as error:
        raise RuntimeError(f"cannot reach the SuperLink at {address} ({error.strerror or error}):"
                           " is it running, and is its port open to this machine?") from None


RUN_ID = re.compile(r"Successfully started run (\d+)")


def run_id_from_output(text: str) -> int | None:
    match = RUN_ID.search(text)
    return int(match.group(1)) if match else None


def run_status(connection: str, run_id: int, env: dict[str, str] | None = None) -> str:
    """Status of a run as Flower reports it (e.g. ``finished:completed``), via ``flwr ls``."""
    command = [executable("flwr"), "ls", connection, "--run-id", str(run_id), "--format", "json"]
    out = subprocess.run(command, capture_output=True, text=True, env=environment(env),
                         check=False)
    try:
        runs = json.loads(out.stdout)["runs"]
        return str(runs[0]["status"])
    except (ValueError, KeyError, IndexError):
        return f"unknown ({(out.stdout + out.stderr).strip()[-300:]})"


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
