"""The SLURM job of the open run: its queue state, and cancelling it while it waits. Qt-free.

The run's host answers (``podium slurm status RUN --json`` through the workspace's
:class:`~gui.access.RunAccess`), so a run on a cluster's login node works from a laptop too.
Every call runs on a worker thread; :meth:`SlurmWatch.poll`, called from the GUI's timer,
only collects finished answers and starts the next one when it is due.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gui.access import RunAccess

JOB_FILE = "slurm.json"  # written by `podium run --slurm` (engine/launcher/slurm.py)
WAITING = ("PENDING", "CONFIGURING", "REQUEUE_HOLD", "REQUEUED")
ACTIVE = (*WAITING, "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT")
POLL_S = 15.0  # squeue is the controller's load: a person watching needs no more
CALL_TIMEOUT_S = 45.0


@dataclass(frozen=True)
class SlurmJob:
    """What ``podium slurm status --json`` said; ``state`` None when SLURM could not tell (``note`` says why)."""

    job_id: str
    state: str | None
    reason: str = ""
    elapsed: str = ""
    time_limit: str = ""
    start: str = ""
    nodes: str = ""
    note: str = ""

    @classmethod
    def parse(cls, text: str) -> SlurmJob:
        """From the CLI's JSON; raises ValueError naming what is wrong (the host's answer is not trusted)."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("job_id"), str):
            raise ValueError("podium slurm status --json did not answer with a job")
        state = data.get("state")
        fields = {
            k: str(data.get(k) or "")[:200] for k in ("reason", "elapsed", "time_limit", "start", "nodes", "note")
        }
        return cls(data["job_id"][:40], str(state)[:40] if state else None, **fields)

    @property
    def waiting(self) -> bool:
        return self.state in WAITING

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def label(self) -> str:
        """Short, for the status bar: "SLURM 123: pending (Priority)"."""
        if self.state is None:
            return f"SLURM {self.job_id}: {'left the queue' if 'left the queue' in self.note else 'unknown'}"
        reason = f" ({self.reason})" if self.reason and self.waiting else ""
        return f"SLURM {self.job_id}: {self.state.lower().replace('_', ' ')}{reason}"

    def details(self) -> str:
        """Longer, for the run information pane and the tooltip."""
        if self.state is None:
            return f"job {self.job_id}: {self.note or 'SLURM does not know it'}"
        parts = [f"job {self.job_id}", self.state + (f" ({self.reason})" if self.reason else "")]
        if self.elapsed and not self.waiting:
            parts.append(f"{self.elapsed} used of {self.time_limit or '?'}")
        if self.start:
            parts.append(("expected to start " if self.waiting else "started ") + self.start)
        if self.nodes:
            parts.append(f"on {self.nodes}")
        return " · ".join(parts)


class SlurmWatch:
    """Follows the SLURM job of one run at a time; ``version`` changes whenever what it shows does."""

    def __init__(self, poll_s: float = POLL_S):
        self.poll_s = poll_s
        self.access: RunAccess | None = None
        self.run: str | None = None
        self.job: SlurmJob | None = None
        self.error = ""  # why the state is not known now (the host's message)
        self.message = ""  # the outcome of the last cancel, for the status bar
        self.version = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-slurm")
        self._status: Future[tuple[str, Any]] | None = None
        self._cancel: Future[str] | None = None
        self._due = 0.0

    def follow(self, access: RunAccess | None, run: str | None) -> None:
        """Show the job of ``run`` (None: no run); answers still on their way for another run are dropped."""
        if (access, run) == (self.access, self.run):
            return
        self.access, self.run = access, run
        self.job, self.error, self.message = None, "", ""
        self._status = self._cancel = None
        self._due = 0.0
        self.version += 1

    def poll(self) -> bool:
        """Take the answers that came, ask again when due; whether anything shown changed."""
        changed = False
        if self._cancel is not None and self._cancel.done():
            self.message = self._cancel.result()
            self._cancel = None
            self._due = 0.0  # show what the cancel did now
            changed = True
        if self._status is not None and self._status.done():
            changed |= self._take(*self._status.result())
            self._status = None
        if self._status is None and self.run is not None and time.monotonic() >= self._due:
            self._due = time.monotonic() + self.poll_s
            self._status = self._pool.submit(self._ask, self.access, self.run)
        if changed:
            self.version += 1
        return changed

    def cancel(self) -> bool:
        """Cancel the job while it waits (``podium slurm cancel``); False when it is not waiting."""
        if self.job is None or not self.job.waiting or self._cancel is not None or self.run is None:
            return False
        self._cancel = self._pool.submit(self._cancel_job, self.access, self.run)
        self.message = f"cancelling SLURM job {self.job.job_id}…"
        self.version += 1
        return True

    @property
    def cancelling(self) -> bool:
        return self._cancel is not None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _take(self, kind: str, value: Any) -> bool:
        before = (self.job, self.error)
        if kind == "job":
            self.job, self.error = value, ""
        elif kind == "none":
            self.job, self.error = None, ""
        else:
            self.error = value
        if self.job is not None and not self.job.active and self.job.state is not None:
            self._due = float("inf")  # it ended: SLURM has nothing more to say about it
        return (self.job, self.error) != before

    @staticmethod
    def _ask(access: RunAccess | None, run: str) -> tuple[str, Any]:
        if access is None:
            return "none", None
        try:
            if access.stat(f"{run}/{JOB_FILE}") is None:
                return "none", None  # not a SLURM run
            result = access.podium("slurm", "status", run, "--json", timeout=CALL_TIMEOUT_S)
        except Exception as exc:  # Unreachable, a timeout, a host without podium: shown, asked again later
            return "error", f"cannot ask the host: {exc}"
        if result.returncode != 0:
            return "error", _last_line(result.stderr) or f"podium slurm status exited {result.returncode}"
        try:
            return "job", SlurmJob.parse(result.stdout)
        except ValueError as exc:
            return "error", f"podium slurm status: {exc}"

    @staticmethod
    def _cancel_job(access: RunAccess | None, run: str) -> str:
        if access is None:
            return "no workspace to cancel the SLURM job in"
        try:
            result = access.podium("slurm", "cancel", run, timeout=CALL_TIMEOUT_S)
        except Exception as exc:
            return f"could not cancel the SLURM job: {exc}"
        if result.returncode == 0:
            return _last_line(result.stdout)
        return " ".join(result.stderr.split())[:300] or f"podium slurm cancel exited {result.returncode}"


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].removeprefix("error: ")[:300] if lines else ""
