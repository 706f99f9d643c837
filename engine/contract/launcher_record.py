"""launcher.json's record of the process that launched a run (:meth:`engine.contract.rundir.RunDir.launcher_identity`).

Apart from :mod:`engine.contract.rundir` so that the run directory's layout loads without pydantic and psutil.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, Field

from engine.contract.rundir import pid_alive


class ProcessIdentity(BaseModel):
    """A process as launcher.json records it: a pid alone can be reused by an unrelated process after
    the launcher is gone (or be written into a crafted run directory), its start time and command line
    cannot."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    host: str
    pid: int = Field(gt=0, lt=2**31)
    time: float | None = None
    started: float | None = None  # psutil's create_time; records written before it carry none
    cmdline: list[str] = []

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        try:
            proc = psutil.Process(pid)
            started, cmdline = proc.create_time(), proc.cmdline()
        except psutil.Error:
            started, cmdline = None, []
        return cls(host=socket.gethostname(), pid=pid, time=time.time(), started=started, cmdline=cmdline)

    def alive(self) -> bool | None:
        """Whether the process still runs (None on another host, where it cannot be checked)."""
        if self.host != socket.gethostname():
            return None
        if self.started is None:
            return pid_alive(self.pid)
        return self.process() is not None

    def process(self) -> psutil.Process | None:
        if self.host != socket.gethostname() or self.started is None:
            return None
        try:
            proc = psutil.Process(self.pid)
            same = abs(proc.create_time() - self.started) < 0.05 and proc.cmdline() == self.cmdline
            return proc if same and proc.status() != psutil.STATUS_ZOMBIE else None
        except psutil.Error:
            return None


# How a launcher's command line names podium: ``python -m engine`` (engine_command), the ``podium`` script,
# or a checkout's ``python main.py``.
_PODIUM_MODULES = {"engine", "engine.launcher.entry", "engine.launcher.cli"}
_PODIUM_SCRIPTS = {"podium", "main.py"}
_INTERPRETER_OPTIONS_WITH_VALUE = {"-X", "-W"}
# The folder ``podium run`` names when not given one (engine/launcher/cli.py, entry.py), from the time it parsed
# its arguments: that much after the process started.
_DEFAULT_RUN = "run-%Y%m%d-%H%M%S"
_DEFAULT_RUN_NAMED_WITHIN_S = 60.0


def private_file(path: Path) -> bool:
    """Whether only this user can have written ``path``: a plain file of theirs that group and others cannot
    write (as control.jsonl's rule): else anyone could name any process in it."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def launches(proc: psutil.Process, run_root: Path) -> bool:
    """Whether ``proc`` is a podium launcher of the run in ``run_root``: its command line is ``podium run``
    with a ``-r/--run-dir`` that, from its working directory, is that folder. Pid, start time and command line
    alone can be copied from /proc into a crafted launcher.json; what the process itself runs cannot."""
    try:
        args = podium_arguments(proc.cmdline())
        if args is None:
            return False
        return _names_run(args, proc.cwd(), proc.create_time(), run_root)
    except (psutil.Error, OSError, RuntimeError):  # gone, not ours to inspect, or a path that cannot resolve
        return False


def podium_arguments(cmdline: list[str]) -> list[str] | None:
    """The arguments ``cmdline`` gives the podium command, or None when it runs something else."""
    if not cmdline:
        return None
    program = os.path.basename(cmdline[0])
    if program == "podium":
        return cmdline[1:]
    if not program.lower().startswith("python"):  # macOS's framework build runs .../MacOS/Python
        return None
    i = 1
    while i < len(cmdline):
        arg = cmdline[i]
        if arg.startswith("-m"):
            module, rest = (arg[2:], i + 1) if len(arg) > 2 else (cmdline[i + 1] if i + 1 < len(cmdline) else "", i + 2)
            return cmdline[rest:] if module in _PODIUM_MODULES else None
        if arg in _INTERPRETER_OPTIONS_WITH_VALUE:
            i += 2
        elif arg.startswith("-c") or arg == "-":
            return None
        elif arg.startswith("-"):
            i += 1
        else:
            return cmdline[i + 1 :] if os.path.basename(arg) in _PODIUM_SCRIPTS else None
    return None


def _names_run(args: list[str], cwd: str, started: float, run_root: Path) -> bool:
    """Whether ``podium ARGS``, started in ``cwd`` at ``started``, trains in ``run_root``."""
    if args and args[0] != "run":
        return False
    value = None
    rest = iter(args[1:])
    for arg in rest:
        name, equals, attached = arg.partition("=")
        if arg == "--":
            break
        if name.startswith("--ru") and "--run-dir".startswith(name):  # argparse takes unique prefixes
            value = attached if equals else next(rest, None)
        elif arg.startswith("-r"):
            value = arg[2:] or next(rest, None)
    root = run_root.resolve()
    if value is not None:
        return Path(cwd, value).resolve() == root
    # No folder given: podium names one runs/run-<time> under its working directory, just after it started.
    try:
        named = time.mktime(time.strptime(root.name, _DEFAULT_RUN))
    except ValueError:
        return False
    return root.parent == Path(cwd, "runs").resolve() and -1.0 <= named - started <= _DEFAULT_RUN_NAMED_WITHIN_S
