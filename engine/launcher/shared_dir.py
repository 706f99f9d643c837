"""Do the nodes of a multi-node run see one run directory? A handshake through it, before anything starts.

Every node's launcher writes into the same ``--run-dir`` and only node 0 writes
the run's files, so the folder must be on a filesystem the nodes share. When
it is not, node 1 used to exit saying nothing while node 0 hung in the
rendezvous. Now node 0 writes a fresh nonce into ``RUN/.nodes/``, each other
node answers with it, and node 0 says go: a node that hears nothing within the
timeout stops with a message naming the directory, on every node.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from engine.contract.commandline import UsageError
from engine.contract.events import EventWriter
from engine.contract.files import atomic_write_text

FOLDER = ".nodes"
POLL_S = 0.2
# A nonce older than this when a node starts is a previous launch's: clocks across nodes agree far better (NTP).
STALE_S = 120.0
DEFAULT_TIMEOUT_S = 300.0
HINT = "every node needs the same --run-dir on a filesystem they all share (e.g. NFS)"


def check_nodes_share(
    run_root: Path, node_rank: int, nnodes: int, timeout: float, events: EventWriter | None = None
) -> None:
    """Return once every node has shown it sees ``run_root``; raise UsageError (after an event on node 0) if not."""
    if nnodes <= 1:
        return
    folder = run_root / FOLDER
    folder.mkdir(exist_ok=True)
    try:
        if node_rank == 0:
            _lead(folder, nnodes, timeout)
        else:
            _answer(folder, node_rank, timeout)
    except UsageError as exc:
        if events is not None:
            events.emit("error", 0, message=str(exc), where="launcher", fatal=True)
            events.emit("run_end", 0, reason="failed", message=str(exc))
        raise


def keep_fresh(run_root: Path) -> None:
    """Node 0, while its run goes on: renew the nonce's time, so that a node started again after it was lost
    (torchrun restarts the group and waits for it) still finds a nonce it takes for this launch's."""
    try:
        os.utime(run_root / FOLDER / "nonce")
    except OSError:
        pass  # the next renewal tries again; a node that joins meanwhile waits for it


def _lead(folder: Path, nnodes: int, timeout: float) -> None:
    for old in folder.iterdir():  # a previous launch's nonce and answers
        old.unlink(missing_ok=True)
    nonce = secrets.token_hex(16)
    _write(folder / "nonce", nonce)
    silent = set(range(1, nnodes))
    deadline = time.monotonic() + timeout
    while silent:
        silent = {rank for rank in silent if _read(folder / f"ack-{rank}") != nonce}
        if silent and time.monotonic() > deadline:
            names = ", ".join(str(r) for r in sorted(silent))
            raise UsageError(
                f"node(s) {names} gave no sign through {folder.parent} within {timeout:.0f} s: they see another "
                f"directory there, or were not started; {HINT}"
            )
        time.sleep(POLL_S)
    _write(folder / "go", nonce)


def _answer(folder: Path, rank: int, timeout: float) -> None:
    started = time.time()
    deadline = time.monotonic() + timeout
    answered = None
    while time.monotonic() < deadline:
        nonce = _read(folder / "nonce", newer_than=started - STALE_S)
        if nonce and nonce != answered:
            _write(folder / f"ack-{rank}", nonce)
            answered = nonce
        if answered and _read(folder / "go") == answered:
            return
        time.sleep(POLL_S)
    raise UsageError(
        f"node {rank}: no word from node 0 through {folder.parent} within {timeout:.0f} s: this node does not see "
        f"the run directory node 0 writes, or node 0 was not started; {HINT}"
    )


def _write(path: Path, text: str) -> None:
    atomic_write_text(path, text, fsync=False)  # whole or absent: a reader on another node never sees half a nonce


def _read(path: Path, newer_than: float | None = None) -> str | None:
    try:
        if newer_than is not None and path.stat().st_mtime < newer_than:
            return None
        with open(path) as f:
            return f.read(64).strip() or None
    except (OSError, UnicodeDecodeError):
        return None
