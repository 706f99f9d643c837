"""A trial's process: the command line it runs, who owns it, and its death with its controller.

Each trial is a ``podium run`` in its own session; the controller (the study's
worker) that started it is recorded on the trial as host, pid and process start
time, so another worker can tell a dead controller from a live one on this host.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.contract.commandline import engine_command
from engine.contract.rundir import pid_alive


def trial_command(base: Path, run_dir: Path, nproc: int, overrides: list[str]) -> list[str]:
    """The launcher command line of one trial: the same ``podium run`` a user types."""
    cmd = engine_command("run", "-c", str(base), "-r", str(run_dir), "--nproc", str(nproc), "--no-progress")
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def process_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot: tells a live pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def controller_identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid())}


def controller_alive(identity: dict[str, Any]) -> bool | None:
    """True/False for a controller on this host; None when it ran elsewhere (cannot be checked)."""
    if identity.get("host") != socket.gethostname():
        return None
    pid = int(identity.get("pid", -1))
    if not pid_alive(pid):
        return False
    started = identity.get("start")
    return started is None or process_start(pid) == started


def die_with_parent(parent: int) -> Callable[[], None]:
    """In the trial's launcher, before exec: get SIGTERM when the controller dies, even by SIGKILL.

    The launcher answers SIGTERM by terminating its run, so a killed
    controller leaves no orphan training behind. Linux only (prctl).
    """

    def setup() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the controller died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup
