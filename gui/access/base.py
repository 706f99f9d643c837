"""The run-access layer: everything the app reads from or does to a workspace goes through one
:class:`RunAccess`, so a workspace on another machine (SSH) gets every panel that a local one has.

Qt-free; every method blocks and is safe to call from a worker thread (the app calls them off the GUI
thread). Paths are POSIX strings on the machine that holds the workspace.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from engine.contract.errors import CommandError

__all__ = ["CommandError", "RunAccess", "Stat", "Unreachable", "open_access"]


@dataclass(frozen=True)
class Stat:
    size: int
    mtime: float
    is_dir: bool


class CommandTimeout(OSError):
    """A ``podium`` command on the workspace's machine did not finish in time (the machine is busy or the
    command hangs). An OSError, so every caller that reports a failed read reports this too."""


class Unreachable(OSError):
    """The workspace cannot be reached right now (network down, sshd gone). Not a failed run: callers show
    'disconnected, retrying' and try again; nothing read so far is lost (offsets stay where they were)."""


@runtime_checkable
class RunAccess(Protocol):
    url: str  # what the user typed: an absolute local path, or ssh://[user@]host[:port]/abs/path
    root: str  # the workspace root as a POSIX path on the machine that holds it
    remote: bool

    def label(self) -> str:
        """Short, for titles: "~/runs" or "gpu1:/data/runs"."""
        ...

    def stat(self, path: str) -> Stat | None:
        """None when missing."""
        ...

    def stat_many(self, paths: list[str]) -> list[Stat | None]:
        """``stat`` of each path, in one round trip where the workspace is remote."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Names; [] when missing."""
        ...

    def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
        """The bytes from ``offset``, at most ``size`` of them (-1: to the end); b"" past the end or when missing."""
        ...

    def read_many(self, paths: list[str], size: int) -> list[bytes | OSError]:
        """The first ``size`` bytes of each path (b"" when missing), or the OSError reading it raised, in one
        round trip where the workspace is remote; Unreachable for them all."""
        ...

    def write(self, path: str, data: bytes, private: bool = True) -> None:
        """Atomic replace (temp + rename): mode 0600, or the umask's mode when not ``private`` (notes that
        colleagues sharing the run folder read)."""
        ...

    def rename(self, path: str, new: str) -> None:
        """Atomic, on the machine that holds the workspace; OSError, naming the file, when refused."""
        ...

    def remove_tree(self, path: str) -> None:
        """A folder and all it holds, as far as it can (what remains is left: rename it out of the way first)."""
        ...

    def fetch(self, path: str) -> Path:
        """A local file with those bytes (local: the path itself; remote: a cached copy, refreshed when its
        size or mtime changed)."""
        ...

    def podium(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Runs the ``podium`` CLI on the machine that holds the workspace, e.g. ("control", RUN, "pause")."""
        ...

    def send_command(self, run: str, cmd: str, **args: Any) -> str:
        """Sends a command to a run and returns its id. Raises Unreachable when disconnected (a command is
        never queued silently) and CommandError, with the reason, when refused."""
        ...

    def launch(self, argv: list[str], run: str, log: str | None = None) -> int:
        """Starts ``podium run ...`` detached from this process (it outlives the app); the launcher's pid."""
        ...

    def signal_launcher(self, run: str, name: str, pid: int | None = None) -> int:
        """Sends signal ``name`` ("TERM" or "KILL") to the run's launcher and returns its pid: ``pid`` when this
        app started it on this machine, else the process launcher.json names, only when it verifiably is that
        launcher (checked on the host that holds the run). ProcessLookupError, saying why, when there is none."""
        ...

    def process_alive(self, run: str) -> bool | None:
        """From launcher.json's ProcessIdentity, checked on the host that holds the run (None: unknown)."""
        ...

    def close(self) -> None: ...


def open_access(url: str | os.PathLike[str]) -> RunAccess:
    """A local path gives a LocalAccess, ``ssh://...`` an SshAccess."""
    text = os.fspath(url)
    if text.startswith("ssh://"):
        from gui.access.ssh import SshAccess  # type: ignore[import-not-found,unused-ignore]

        access: RunAccess = SshAccess(text)
        return access
    from gui.access.local import LocalAccess

    return LocalAccess(text)
