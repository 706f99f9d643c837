"""launcher.json's record of the process that launched a run (:meth:`engine.contract.rundir.RunDir.launcher_identity`).

Apart from :mod:`engine.contract.rundir` so that the run directory's layout loads without pydantic and psutil.
"""

from __future__ import annotations

import socket
import time

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
