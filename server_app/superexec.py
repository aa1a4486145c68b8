"""``gfmfr superexec --trusted-apps FILE <flower-superexec arguments>``: Flower's SuperExec that
runs only pinned apps (issue 26).

In Flower 1.42 every ClientApp (on a SuperNode) and every ServerApp (on the SuperLink) is started
by a SuperExec: its loop (``flwr.supercore.superexec.run_superexec.run_superexec``) acquires a
Task from the Runtime API, and the Task carries the app's ``fab_hash`` *before*
``plugin.launch_task`` starts ``flwr-clientapp`` / ``flwr-serverapp``, which install and execute
the FAB. ``GuardedExecPlugin.launch_task`` runs Flower's own ``AutoExecPlugin.launch_task`` for a
hash pinned in FILE and refuses every other task, so nothing of a foreign app is installed or
executed on the machine. A SuperNode / SuperLink started with ``--isolation process`` starts no
SuperExec of its own; this one is started beside it (``gfmfr deploy up`` does, with
``--parent-pid``).

How the plugin is injected: ``run_superexec`` builds its plugin as ``AutoExecPlugin(...)``, a name
it looks up in its own module at call time, and offers no hook for another plugin. We replace that
one name in that module, in this process only, and then call Flower's own ``flower-superexec``
entry point (``flwr.supercore.cli.flower_superexec.flower_superexec``) with the remaining
arguments. Everything else is Flower's unchanged: argument parsing, TLS, SuperExec auth, the
executor, the health server, the parent-process monitor, signal handling and the polling loop; a
loop of our own would have to copy all of it and drift from it. If a Flower upgrade renames
the class or stops using that name, ``install`` refuses to start (fail closed) instead of running
an unguarded SuperExec; ``pyproject.toml`` pins ``flwr==1.42.0``.

A refused task must still be answered: a SuperNode waits for each message's reply before it
pulls the next message (``flwr/supernode/start_client_internal.py``: ``_push_messages``), and a
claimed but never started task returns to pending after 30 s, so an unanswered foreign message
would stall the node for good. So the guard does what ``flwr-clientapp`` does when an app fails
to load (``flwr.supernode.runtime.run_clientapp``: ``pull_task_input``, ``push_message``,
``push_task_output``): it pulls the message (data, not code; the FAB's bytes come along and are
dropped), pushes an ``Error`` reply whose reason names the hash, and finishes the task as failed.
For a ServerApp (SuperLink) finishing the task as failed fails the run, with the reason as its
details. The refusal is logged as ``[gfmfr] refused app with FAB hash <hash>: ...`` (naming the
trusted-apps file); what the submitter sees names the hash but no path of the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from logging import ERROR, INFO
from pathlib import Path

from flwr.app import Error, Message
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.task_pb2 import Task  # pylint: disable=E0611
from flwr.supercore import log
from flwr.supercore.constant import TaskType
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supercore.superexec import run_superexec as flower_loop
from flwr.supercore.superexec.executor import LaunchResult
from flwr.supercore.superexec.plugin import AutoExecPlugin
from flwr.supercore.tls import validate_and_resolve_root_certificates
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

from server_app import run_config_lock
from server_app.trusted_apps import TrustedApps

PREFIX = "[gfmfr]"


class GuardedExecPlugin(AutoExecPlugin):
    """``AutoExecPlugin`` that launches only tasks whose FAB hash is pinned in ``trusted``."""

    trusted: TrustedApps | None = None  # set by ``install``

    def launch_task(self, token: str, task: Task) -> LaunchResult:
        fab_hash = getattr(task, "fab_hash", "") or ""
        reason = (self.trusted.check(fab_hash) if self.trusted is not None
                  else "refused: no trusted-apps file was loaded")
        if reason is None:
            return super().launch_task(token, task)
        log(ERROR, "%s %s (task %d, run %d, %s)", PREFIX, reason, task.task_id, task.run_id,
            task.type)
        # what the submitter sees (run details, the error reply): no local paths
        public = (f"refused app with FAB hash {fab_hash or '(none)'}: it is not pinned on this "
                  f"{'SuperNode' if task.type == TaskType.CLIENT_APP else 'SuperLink'}; nothing "
                  "of it was installed or run")
        try:
            self._answer_refused(token, task, public)
        except Exception as error:  # noqa: BLE001 - the refusal stands; the reply is best effort
            log(ERROR, "%s could not answer the refused task %d: %r", PREFIX, task.task_id, error)
        return LaunchResult.failed(reason)

    def _answer_refused(self, token: str, task: Task, reason: str) -> None:
        """Answer the refused task the way ``flwr-clientapp`` answers an app it cannot load."""
        retry = make_simple_http_retry_invoker()
        retry.max_tries = 3
        client = RuntimeHttpClient.from_server_address(
            server_address=self.runtime_api_address,
            insecure=self.insecure,
            root_certificates=validate_and_resolve_root_certificates(
                self.root_certificates_path, self.insecure),
            interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"
                                                        if task.type == TaskType.CLIENT_APP
                                                        else "SuperExec"),
                          RuntimeTokenHttpInterceptor(token)],
            retry_invoker=retry)
        try:
            if task.type == TaskType.CLIENT_APP:
                message, context, _run, _fab = pull_task_input(client)  # FAB: bytes, dropped
                reply = Message(Error(code=ErrorCode.LOAD_CLIENT_APP_EXCEPTION, reason=reason),
                                reply_to=message)
                push_message(client, reply, context)
            push_task_output(client, None, SubStatus.FAILED, reason)
        finally:
            client.close()


def install(trusted: TrustedApps) -> None:
    """Make Flower's ``run_superexec`` build ``GuardedExecPlugin`` (this process only)."""
    if getattr(flower_loop, "AutoExecPlugin", None) is not AutoExecPlugin or \
            not callable(getattr(flower_loop, "run_superexec", None)):
        raise SystemExit(f"gfmfr superexec: {flower_loop.__name__} no longer builds its plugin "
                         "as AutoExecPlugin (Flower changed): refusing to start an unguarded "
                         "SuperExec")
    GuardedExecPlugin.trusted = trusted
    flower_loop.AutoExecPlugin = GuardedExecPlugin


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gfmfr superexec",
        description="Flower's SuperExec, running only apps whose FAB hash is pinned in FILE.",
        epilog="Every other argument goes to flower-superexec (see flower-superexec --help).")
    parser.add_argument("--trusted-apps", type=Path, required=True, metavar="FILE",
                        help="the FAB hashes this machine runs, one per line "
                             "(`gfmfr app-hash` prints this app's)")
    parser.add_argument("--locked-run-config", type=Path, metavar="FILE",
                        help="server: run-config values no run may change (TOML key = value; "
                             "every ServerApp started here refuses a run that differs)")
    args, rest = parser.parse_known_args(argv)
    trusted = TrustedApps(args.trusted_apps)
    if trusted.error is not None:
        print(f"gfmfr superexec: {trusted.error}", file=sys.stderr)
        return 2
    if args.locked_run_config is not None:
        try:
            locked = run_config_lock.load(args.locked_run_config)
        except run_config_lock.RunConfigLocked as error:
            print(f"gfmfr superexec: {error}", file=sys.stderr)
            return 2
        # inherited by every flwr-serverapp this process starts; read again at each run's start
        os.environ[run_config_lock.ENV] = str(args.locked_run_config.resolve())
        log(INFO, "%s ServerApps started here refuse runs that change: %s", PREFIX,
            ", ".join(sorted(locked)) or "(nothing locked yet)")
    install(trusted)
    from flwr.supercore.cli.flower_superexec import flower_superexec

    log(INFO, "%s SuperExec runs only apps pinned in %s: %s", PREFIX, trusted.path,
        ", ".join(sorted(h[:12] for h in trusted.hashes)))
    sys.argv = ["gfmfr superexec", *rest]
    flower_superexec()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
