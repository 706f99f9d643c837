"""One run as the GUI sees it: the run directory read into a model, the
engine process it may have launched, and the commands it sends.

:class:`RunSession` is the only object that touches a run's files or
process, and it does so through the workspace's :class:`~gui.access.RunAccess`.
Its :class:`~gui.models.run_reader.RunReader` polls ``events.jsonl`` and
``engine.log`` in a thread (a stat per pass when nothing changed; no
file-watcher, because watchers miss appends on network mounts, where headless
runs live), decodes them and makes metrics ready columns there; the GUI
thread only appends those to the :class:`~gui.models.run_model.RunModel` and
tells widgets by typed signals. A workspace that cannot be reached shows as
"disconnected, retrying" in the feed until it comes back.

Runs are started detached (``RunAccess.launch``): the engine is its own
session and outlives the window, which is what "leave it running headless"
needs. Liveness comes from the pid (ours, or the one in ``launcher.json``).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6 import QtCore

from engine.contract.commandline import engine_command
from engine.contract.rundir import RunDir, pid_alive
from gui.access import RunAccess, open_access
from gui.models import parse_worker
from gui.models.run_model import TERMINAL_STATES, Command, IngestResult, RunModel
from gui.models.run_reader import ReadBatch, RunReader
from gui.stop_escalation import StopEscalation

# An unanswered command after this long is reported (the engine answers
# between steps, so only a hung or very slow step delays it this much).
ACK_WARN_S = 60.0
DRAIN_MS = 15


def engine_argv(
    config: str | os.PathLike[str], run_dir: str | os.PathLike[str], nproc: int, overrides: Sequence[str] = ()
) -> list[str]:
    """The ``podium run`` command line the GUI uses: the same path as headless runs."""
    argv = engine_command("run", "-c", str(config), "-r", str(run_dir), "--nproc", str(nproc))
    for item in overrides:
        argv += ["--set", item]
    return argv


@dataclass
class ReadPosition:
    """How far the model has taken the run's event file: bytes applied, and bytes known to be waiting."""

    offset: int = 0
    behind: int = 0


class RunSession(QtCore.QObject):
    updated = QtCore.Signal()  # new events were ingested (data and/or state)
    stateChanged = QtCore.Signal(str)
    ackReceived = QtCore.Signal(object)  # Command with its outcome
    commandSent = QtCore.Signal(object)  # Command
    anomalyRaised = QtCore.Signal(object)  # engine.contract.events.Anomaly
    logLines = QtCore.Signal(list)  # list[str] from engine.log (and the launcher's output)
    ended = QtCore.Signal(str)  # terminal state
    caughtUp = QtCore.Signal()  # everything written so far has been ingested
    connectionChanged = QtCore.Signal(str)  # why the workspace cannot be reached; "" once it can again
    _arrived = QtCore.Signal()  # from the reader thread: batches are waiting
    _sentRemote = QtCore.Signal(object)  # from a sending thread: (cmd, args, command id or the error)

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        parent: QtCore.QObject | None = None,
        *,
        poll_ms: int = 20,
        pid: int | None = None,
        launch_log: str | os.PathLike[str] | None = None,
        access: RunAccess | None = None,
    ):
        super().__init__(parent)
        self.run = RunDir(run_dir)
        # A run opened by its path alone is read locally, its folder's parent the workspace.
        self.access = access if access is not None else open_access(self.run.root.absolute().parent)
        self.model = RunModel(self.run.root)
        self.pid = pid  # set when this GUI launched the engine
        self.launched_here = pid is not None
        self.reader = ReadPosition()
        self._reader = RunReader(
            self.access,
            str(self.run.root),
            self.process_alive,
            os.fspath(launch_log) if launch_log else None,
            poll_ms / 1000,
            parse_worker.shared(),
        )
        self.log_tail = self._reader.log
        # The log lines already handed to the window (logLines), for a pane that starts showing this run: the
        # tail's own last lines are read in the reader's thread, some not handed over yet, and replaying those
        # showed them twice once they arrived.
        self.log_shown: collections.deque[str] = collections.deque(maxlen=self.log_tail.last_lines.maxlen)
        self.stop_grace_s = 30.0  # after the stop command, before SIGTERM (gui/stop_escalation.py)
        self.term_grace_s = 10.0  # after SIGTERM, before SIGKILL
        self._last_state = ""
        self._caught_up_once = False
        self._ack_warned: set[str] = set()
        self._stopper = StopEscalation(self)
        self._posted = threading.Event()
        self._disconnected_shown: str | None = None
        self._arrived.connect(self._on_arrived, QtCore.Qt.ConnectionType.QueuedConnection)
        # Batches are applied at most every DRAIN_MS: each update costs the views a refresh, and the plots
        # draw at most 30 times a second anyway.
        self._next_drain = 0.0
        self._drain_timer = QtCore.QTimer(self, singleShot=True)
        self._drain_timer.timeout.connect(self.poll)
        self._sentRemote.connect(lambda sent: self._sent_one(*sent), QtCore.Qt.ConnectionType.QueuedConnection)
        self._sender: ThreadPoolExecutor | None = None  # a remote workspace's commands, sent in order
        self._alive_timer = QtCore.QTimer(self)
        self._alive_timer.setInterval(500)
        self._alive_timer.timeout.connect(self._check_process)

    # --------------------------------------------------------------- launch

    @classmethod
    def launch(
        cls,
        run_dir: str | os.PathLike[str],
        argv: list[str],
        parent: QtCore.QObject | None = None,
        launch_log: str | os.PathLike[str] | None = None,
        access: RunAccess | None = None,
        **kwargs: Any,
    ) -> RunSession:
        """Start ``argv`` detached through the workspace's access, its stdout/stderr appended to ``launch_log``."""
        if launch_log is None:
            cache = Path(
                QtCore.QStandardPaths.writableLocation(QtCore.QStandardPaths.StandardLocation.GenericCacheLocation)
            )
            launch_log = cache / "podium" / "launch" / f"{Path(run_dir).name}-{int(time.time())}.log"
        Path(launch_log).parent.mkdir(parents=True, exist_ok=True)
        Path(launch_log).touch()
        access = access if access is not None else open_access(Path(run_dir).absolute().parent)
        pid = access.launch(argv, os.fspath(run_dir), os.fspath(launch_log))
        session = cls(run_dir, parent, pid=pid, launch_log=launch_log, access=access, **kwargs)
        session.model.alive = True
        return session

    # ---------------------------------------------------------------- reading

    def start(self) -> None:
        """Begin following the run (the reader thread reads what is there at once)."""
        self._reader.start(self._deliver)
        self._alive_timer.start()

    def close(self) -> None:
        """Stop following; the engine (if any) is left alone."""
        self._alive_timer.stop()
        self._reader.stop()
        if self._sender is not None:
            self._sender.shutdown(wait=False)

    @property
    def caught_up(self) -> bool:
        """Whether everything the file held when it was opened has been read (what follows is news)."""
        return self._caught_up_once

    @property
    def disconnected(self) -> str | None:
        """Why the workspace cannot be reached now (None: it can)."""
        return self._reader.disconnected

    @property
    def state(self) -> str:
        return self.model.state()

    def _deliver(self) -> None:
        # The reader thread's news, coalesced: one queued call however many batches wait.
        if not self._posted.is_set():
            self._posted.set()
            self._arrived.emit()

    def _on_arrived(self) -> None:
        wait_ms = (self._next_drain - time.monotonic()) * 1000
        if wait_ms <= 0:
            self.poll()
        elif not self._drain_timer.isActive():
            self._drain_timer.start(int(wait_ms) + 1)

    def poll(self) -> None:
        """Apply what the reader has read (on the GUI thread: appends and signals only)."""
        self._next_drain = time.monotonic() + DRAIN_MS / 1000
        self._posted.clear()
        batches = self._reader.take()
        if batches:
            self._apply(batches)

    def catch_up(self) -> None:
        """Read and ingest everything written so far, now (before a screenshot, or judging a dead engine)."""
        self._reader.read_once(None)
        self.poll()

    def _apply(self, batches: list[ReadBatch]) -> None:
        result: IngestResult | None = None
        lines: list[str] = []
        for batch in batches:
            if batch.items:
                r = self.model.apply(batch.items)
                result = r if result is None else result.merge(r)
            if batch.rejected:
                self.model.note_rejected(batch.rejected, batch.garbage)
            lines += batch.log_lines
            if batch.alive_checked:
                self._judge_alive(batch.alive)
            self._note_connection(batch)
        last = batches[-1]
        self.reader.offset, self.reader.behind = last.offset, last.behind
        self.model.backlog = last.behind
        # Read to the end of a file that was there (a first pass at an unreachable server sees no size).
        self.model.read_through = self.model.read_through or (
            not last.behind and last.offset > 0 and last.disconnected is None
        )
        if lines:
            self.log_shown.extend(lines)
            self.logLines.emit(lines)
        if result is not None:
            for command in result.acks:
                self.ackReceived.emit(command)
            for event in result.anomalies:
                self.anomalyRaised.emit(event)
        self.updated.emit()
        self._emit_state()
        if not last.behind and last.disconnected is None and not self._caught_up_once:
            self._caught_up_once = True
            self.caughtUp.emit()

    def _note_connection(self, batch: ReadBatch) -> None:
        if batch.disconnected == self._disconnected_shown:
            return
        if batch.disconnected is None:
            self.model.note("info", "reconnected", f"reading {self.access.label()} again from where it stopped")
            self.connectionChanged.emit("")
        else:
            self.model.note("warning", "disconnected, retrying", batch.disconnected)
            self.connectionChanged.emit(batch.disconnected)
        self._disconnected_shown = batch.disconnected

    def _judge_alive(self, alive: bool | None) -> None:
        if alive is False and self.model.alive is not False and self.model.end is None:
            self.model.exit_note = "the engine process exited without ending the run"
        self.model.alive = alive

    def _emit_state(self) -> None:
        state = self.model.state()
        if state != self._last_state:
            self._last_state = state
            self.stateChanged.emit(state)
            if state in TERMINAL_STATES:
                for series in self.model.series.values():
                    series.trim()
                self.ended.emit(state)

    # -------------------------------------------------------------- liveness

    def process_alive(self) -> bool | None:
        if self.pid is not None and not self.access.remote:
            return pid_alive(self.pid)
        return self.access.process_alive(str(self.run.root))

    def _check_process(self) -> None:
        alive = self.model.alive
        now = time.time()
        if self.model.is_live(now):
            for command in self.model.pending_commands():
                if now - command.sent > ACK_WARN_S and command.id not in self._ack_warned:
                    self._ack_warned.add(command.id)
                    self.model.note(
                        "warning",
                        f"no answer to {command.cmd} after {ACK_WARN_S:.0f} s",
                        "the engine reads commands between steps; a hung step delays them",
                    )
                    self.updated.emit()
        self._stopper.step(alive)
        self._emit_state()
        if self.model.state(now) in TERMINAL_STATES and alive is not True:
            self._alive_timer.setInterval(2000)
            self._reader.poll_s = max(self._reader.poll_s, 1.0)

    def last_log_lines(self, n: int = 20) -> list[str]:
        lines = list(self.log_tail.last_lines)
        if not lines and self._reader.launch is not None:
            lines = [f"[launcher] {line}" for line in self._reader.launch.last_lines]
        return lines[-n:]

    # -------------------------------------------------------------- control

    def send(self, cmd: str, **args: Any) -> Command | None:
        """Send a command; the Command, or None when it could not be sent (the feed says why). A remote
        workspace answers over the network: the command goes from a thread, ``commandSent`` says when."""
        if self.access.remote:
            self.submit_remote(self._send_from_thread, cmd, args)
            return None
        return self._sent_one(cmd, args, self._send_now(cmd, args))

    def submit_remote(self, work: Callable[..., None], *args: Any) -> None:
        """Runs ``work`` on the session's one sending thread: a remote workspace's commands and signals go
        out in order (pause then resume sent in parallel could reach the inbox swapped)."""
        if self._sender is None:
            self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-send")
        self._sender.submit(work, *args)

    def _send_now(self, cmd: str, args: dict[str, Any]) -> str | Exception:
        try:
            return self.access.send_command(str(self.run.root), cmd, **args)
        except (OSError, ValueError) as exc:
            return exc

    def _send_from_thread(self, cmd: str, args: dict[str, Any]) -> None:
        outcome = self._send_now(cmd, args)
        try:
            self._sentRemote.emit((cmd, args, outcome))
        except RuntimeError:  # the session is gone
            pass

    def _sent_one(self, cmd: str, args: dict[str, Any], outcome: str | Exception) -> Command | None:
        if isinstance(outcome, Exception):
            self.model.note("critical", f"could not send {cmd}", str(outcome))
            self.updated.emit()
            return None
        command = self.model.note_command(outcome, cmd, args)
        self.commandSent.emit(command)
        self.updated.emit()
        return command

    def stop(self) -> None:
        """Graceful stop: the stop command, then signals to the launcher if the engine does not end
        (:mod:`gui.stop_escalation`)."""
        if self._stopper.started is None:
            self._stopper.begin()
            if self.model.is_live():
                self.send("stop")
        self._stopper.step(self.process_alive())

    @property
    def stopping(self) -> bool:
        return self._stopper.started is not None
