"""The runs list: one incremental summary per run directory of a workspace. Qt-free.

A runs list refreshed every few seconds over runs with millions of events
cannot re-read each run's event file, so each run keeps a tail reader that decodes only the few event types
the list shows (the bulk, metrics lines, is skipped at substring-search
speed) and reads the file's last line for the latest step and time. The
state itself is still decided by :func:`engine.contract.rundir.derive_state`, fed with
the few events it looks at, so the list and the CLI never disagree.
"""

from __future__ import annotations

import math
import os
import posixpath
import time
from pathlib import Path
from typing import TYPE_CHECKING

from engine.contract.rundir import RunDir, RunSummary, derive_state
from gui.access import RunAccess, open_access

if TYPE_CHECKING:  # the event models load in the watcher's thread with the first run, not on the way to the window
    from engine.contract.events import Record, RunEnd, RunStart, Status

_SUMMARY_TYPES = ("run_start", "status", "run_end", "eval")
# Bytes per read. The scan runs in a thread beside the GUI's, and a substring
# search holds the GIL for the whole slice: small slices, and the GIL handed
# back between them, keep the window from waiting on it while a run floods.
_SLICE = 256 << 10
_TAIL = 64 << 10  # bytes read back from the end to find the last line, at first
_MAX_LINE = 64 << 20


class RunTracker:
    def __init__(self, path: Path, access: RunAccess | None = None):
        self.run = RunDir(path)
        self.access = access if access is not None else open_access(self.run.root.parent)
        self.events = str(self.run.events)
        from gui.models.typed_reader import TypedEventReader

        self.reader = TypedEventReader(self.run.events, _SUMMARY_TYPES, access)
        self._forget()

    def _forget(self) -> None:
        self.first: Record | None = None
        self.start: RunStart | None = None
        self.last: Record | None = None
        self.last_status: Status | None = None
        self.end: RunEnd | None = None
        self.step = 0
        self.best_val: float | None = None
        self.last_val: float | None = None

    def update(self, now: float | None = None) -> RunSummary:
        from engine.contract.events import Eval, RunEnd, RunStart, Status

        before = self.reader.offset
        events: list[Record] = []
        restarted = False
        while True:
            time.sleep(0)
            chunk = self.reader.read_new(_SLICE)
            if self.reader.restarted:  # replaced or truncated: a new run in the same folder
                self._forget()
                events, restarted = [], True
            events += chunk
            if not self.reader.behind:
                break
        if self.reader.offset != before or restarted:
            if self.first is None:
                self.first = self._first_event()
            self.last = self._last_event(self.reader.offset) or self.last
        self.step = max([self.step, *(e["step"] for e in events), *([self.last["step"]] if self.last else [])])
        for event in events:
            match event:
                case RunStart():
                    self.start, self.end = event, None
                case Status():
                    self.last_status = event
                case RunEnd():
                    self.end = event
                case Eval(val_loss=float() as val) if math.isfinite(val):
                    self.best_val = val if self.best_val is None else min(self.best_val, val)
                    self.last_val = val
        return self._summary(now)

    def _first_event(self) -> Record | None:
        from engine.contract.events import decode_event

        head = self.access.read(self.events, 0, _TAIL)
        return decode_event(head.split(b"\n", 1)[0]) if head else None

    def _last_event(self, end: int) -> Record | None:
        """The event on the last complete line before byte ``end`` (read back
        until the line's start: a ``data`` event listing skipped files is long)."""
        tail = _TAIL
        while True:
            start = max(0, end - tail)
            data = self.access.read(self.events, start, end - start)
            complete = data[: data.rfind(b"\n")]
            if b"\n" in complete or start == 0 or tail >= _MAX_LINE:
                break
            tail *= 4
        from engine.contract.events import decode_event

        return decode_event(complete.rsplit(b"\n", 1)[-1]) if complete else None

    def _summary(self, now: float | None) -> RunSummary:
        # derive_state looks for the last run_end, then the last status, then
        # the time of the last event: those three are all it needs.
        few = [e for e in (self.last_status, self.last) if e is not None]
        if self.end is not None:
            few.append(self.end)
        start = self.start or self.first
        return RunSummary(
            path=self.run.root,
            name=self.run.root.name,
            state=derive_state(few, self.access.process_alive(str(self.run.root)), now),
            start_time=float(start["time"]) if start else None,
            step=self.step,
            total_steps=self.start.total_steps if self.start else None,
            best_val_loss=self.best_val,
            last_event_time=float(self.last["time"]) if self.last else None,
            end_reason=self.end.reason if self.end else None,
            last_val_loss=self.last_val,
        )


class WorkspaceIndex:
    """Summaries of every run under a folder, kept up to date by ``refresh``; every read goes through the
    workspace's access (a folder given as a path is read locally)."""

    def __init__(self, root: str | os.PathLike[str] | RunAccess):
        self.access = root if isinstance(root, RunAccess) else open_access(root)
        self.root = Path(self.access.root)
        self._trackers: dict[str, RunTracker] = {}

    def refresh(self, now: float | None = None) -> list[RunSummary]:
        found: list[RunSummary] = []
        seen = set()
        for name in sorted(self.access.listdir(self.access.root)):
            path = posixpath.join(self.access.root, name)
            if not self._is_run(path):
                continue
            seen.add(path)
            tracker = self._trackers.get(path)
            if tracker is None:
                tracker = self._trackers[path] = RunTracker(Path(path), self.access)
            found.append(tracker.update(now))
        for gone in set(self._trackers) - seen:
            del self._trackers[gone]
        return sorted(found, key=lambda r: r.start_time or 0.0, reverse=True)

    def _is_run(self, path: str) -> bool:
        """A folder holding an event file or a config (what RunDir.exists asks of a local one)."""
        st = self.access.stat(path)
        if st is None or not st.is_dir:
            return False
        return any(self.access.stat(posixpath.join(path, name)) is not None for name in ("events.jsonl", "config.yaml"))
