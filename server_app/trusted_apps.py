"""Which apps a machine runs: the FAB hashes its owner pinned (issue 26).

A Flower app reaches a SuperNode (and the SuperLink) as a FAB, a zip of the app's files; Flower
names it by ``sha256(FAB bytes)``, and every task it asks a SuperExec to run carries that hash.
``gfmfr superexec --trusted-apps FILE`` (``server_app/superexec.py``) runs a task only when its
hash is in FILE. This module is the decision, free of Flower processes:

* the file: one hash per line (64 hex digits, as ``gfmfr app-hash`` prints), anything after the
  hash on its line is a free label, ``#`` starts a comment, blank lines are ignored;
* a missing, unreadable, empty (no hash) or malformed file is an error that names the file and the
  line; the SuperExec refuses to start on it, and a file broken later refuses every task
  (fail closed);
* ``TrustedApps.check`` re-reads the file when it changes, so pinning a new version of the app
  (``gfmfr app-hash >> FILE``) needs no restart.

The hash is deterministic: Flower builds the FAB from the files ``.gitignore`` does not exclude,
sorted, with a fixed zip timestamp (``flwr/cli/build.py``: ``build_fab_from_disk``,
``write_to_zip``), so ``flwr run .`` of the same source always submits the same hash and
``fab_hash`` below computes it without submitting anything. Any change to a file of the bundle
(code, ``pyproject.toml``, Markdown) gives a new hash, which must be pinned again.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

HASH = re.compile(r"[0-9a-f]{64}")


class TrustedAppsError(ValueError):
    """The trusted-apps file is missing, unreadable, empty or malformed."""


def parse(text: str, source: str = "trusted-apps file") -> frozenset[str]:
    """The pinned hashes in ``text``; raises ``TrustedAppsError`` naming ``source`` and the line."""
    hashes = set()
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        word = words[0].lower()
        if not HASH.fullmatch(word):
            raise TrustedAppsError(
                f"{source} line {number}: {words[0][:80]!r} is not a FAB hash (64 hex digits, "
                "as `gfmfr app-hash` prints)")
        hashes.add(word)
    if not hashes:
        raise TrustedAppsError(f"{source} pins no app: add the hash that `gfmfr app-hash` prints "
                               "for the app this machine may run")
    return frozenset(hashes)


def load(path: Path) -> frozenset[str]:
    """The pinned hashes of the file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrustedAppsError(f"trusted-apps file {path} does not exist: write the hash that "
                               "`gfmfr app-hash` prints for the app into it") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TrustedAppsError(f"trusted-apps file {path} cannot be read: {error}") from None
    return parse(text, f"trusted-apps file {path}")


def refusal(fab_hash: str | None, trusted: frozenset[str], source: str) -> str | None:
    """None when ``fab_hash`` is pinned, else why the task is refused (naming the hash)."""
    if not fab_hash:
        return (f"refused a task that names no FAB hash: only apps pinned in {source} run "
                "here; nothing was installed or run")
    if fab_hash.lower() in trusted:
        return None
    return (f"refused app with FAB hash {fab_hash}: it is not pinned in {source}; nothing of it "
            "was installed or run (pin it there only if you trust its code)")


class TrustedApps:
    """The trusted-apps file of one machine, re-read whenever it changes.

    ``check(fab_hash)`` returns None (run it) or the refusal. While the file is missing or broken
    every hash is refused, with the file's problem as the reason.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._hashes: frozenset[str] = frozenset()
        self._error: str | None = None
        self.reload()

    def reload(self) -> None:
        self._stamp = self._file_stamp()
        try:
            self._hashes, self._error = load(self.path), None
        except TrustedAppsError as error:
            self._hashes, self._error = frozenset(), str(error)

    def _file_stamp(self) -> tuple[int, int] | None:
        """(modification time, size) of the file, None while it cannot be read."""
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    @property
    def hashes(self) -> frozenset[str]:
        return self._hashes

    @property
    def error(self) -> str | None:
        return self._error

    def check(self, fab_hash: str | None) -> str | None:
        stamp = self._file_stamp()
        if stamp != self._stamp or stamp is None:
            self.reload()
        if self._error is not None:
            return f"refused app with FAB hash {fab_hash or '(none)'}: {self._error}"
        return refusal(fab_hash, self._hashes, f"trusted-apps file {self.path}")


def fab_hash(app: Path) -> str:
    """The FAB hash ``flwr run <app>`` submits: sha256 of the bundle Flower builds from ``app``."""
    from flwr.cli.build import build_fab_from_disk

    return hashlib.sha256(build_fab_from_disk(Path(app))).hexdigest()


def pin_text(app_hash: str, label: str = "") -> str:
    """One line of a trusted-apps file."""
    return f"{app_hash}  {label}".rstrip() + "\n"
