"""One run as the GUI sees it: the run directory tailed into a model, the
engine process it may have launched, and the commands it sends.

:class:`RunSession` is the only object that touches the engine's files or
process. It polls ``events.jsonl`` and ``engine.log`` on a timer (a stat per
tick when nothing changed; no file-watcher, because watchers miss appends on
network mounts, where headless runs live), feeds what it reads into a
:class:`~gui.models.run_model.RunModel`, and tells widgets by typed signals.

Reading is budgeted per tick so opening a run of millions of events never
freezes the window: each tick reads about as many bytes as it can parse in
``budget_s`` and comes back at once while it is behind.

Runs are started detached (``QProcess.startDetached``): the engine is its own
session and outlives the window, which is what "leave it running headless"
needs. Liveness comes from the pid (ours, or the one in ``launcher.json``).
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
from PySide6 import QtCore

from engine.contract.commandline import engine_command
from engine.contract.commands import send_command
from engine.contract.events import EventReader
from engine.contract.rundir import RunDir, pid_alive
from gui.models.reader import TextTail
from gui.models.run_model import TERMINAL_STATES, Command, RunModel

# An unanswered command after this long is reported (the engine answers
# between steps, so only a hung or very slow step delays it this much).
ACK_WARN_S = 60.0


def engine_argv(
    config: str | os.PathLike[str], run_dir: str | os.PathLike[str], nproc: int, overrides: Sequence[str] = ()
) -> list[str]:
    """The ``podium run`` command line the GUI uses: the same path as headless runs."""
    argv = engine_command("run", "-c", str(config), "-r", str(run_dir), "--nproc", str(nproc))
    for item in overrides:
        argv += ["--set", item]
    return argv


class RunSession(QtCore.QObject):
    updated = QtCore.Signal()  # new events were ingested (data and/or state)
    stateChanged = QtCore.Signal(str)
    ackReceived = QtCore.Signal(object)  # Command with its outcome
    commandSent = QtCore.Signal(object)  # Command
    anomalyRaised = QtCore.Signal(object)  # engine.contract.events.Anomaly
    logLines = QtCore.Signal(list)  # list[str] from engine.log (and the launcher's output)
    ended = QtCore.Signal(str)  # terminal state
    caughtUp = QtCore.Signal()  # everything written so far has been ingested

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        parent: QtCore.QObject | None = None,
        *,
        poll_ms: int = 40,
        budget_s: float = 0.008,
        pid: int | None = None,
        launch_log: str | os.PathLike[str] | None = None,
    ):
        super().__init__(parent)
        self.run = RunDir(run_dir)
        self.model = RunModel(self.run.root)
        self.reader = EventReader(self.run.events)
        self.log_tail = TextTail(self.run.engine_log)
        self.launch_tail = TextTail(Path(launch_log)) if launch_log else None
        self.pid = pid  # set when this GUI launched the engine
        self.launched_here = pid is not None
        self.budget_s = budget_s
        self.stop_grace_s = 30.0  # after the stop command, before SIGTERM
        self.term_grace_s = 10.0  # after SIGTERM, before SIGKILL
        self._chunk = 256 * 1024
        self._last_state = ""
        self._caught_up_once = False
        self._ack_warned: set[str] = set()
        self._stop_started: float | None = None
        self._signalled: list[str] = []
        self._poll_ms = poll_ms
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.poll)
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
        **kwargs: Any,
    ) -> RunSession:
        """Start ``argv`` detached, its stdout/stderr appended to ``launch_log``.

        A small ``sh`` wrapper does the redirection and then ``exec``s the
        engine, so the pid we get is the engine launcher's own.
        """
        if launch_log is None:
            cache = Path(
                QtCore.QStandardPaths.writableLocation(QtCore.QStandardPaths.StandardLocation.GenericCacheLocation)
            )
            launch_log = cache / "podium" / "launch" / f"{Path(run_dir).name}-{int(time.time())}.log"
        Path(launch_log).parent.mkdir(parents=True, exist_ok=True)
        Path(launch_log).touch()
        ok, pid = QtCore.QProcess.startDetached(
            "/bin/sh",
            ["-c", 'out=$1; shift; exec "$@" >>"$out" 2>&1', "podium-launch", str(launch_log), *argv],
        )
        if not ok or pid <= 0:
            raise OSError(f"could not start {argv[0]}")
        session = cls(run_dir, parent, pid=pid, launch_log=launch_log, **kwargs)
        session.model.alive = True
        return session

    # ---------------------------------------------------------------- polling

    def start(self) -> None:
        """Begin following the run (reads what is there at once)."""
        self._timer.start()
        self._alive_timer.start()
        self.poll()
        self._check_process()

    def close(self) -> None:
        """Stop following; the engine (if any) is left alone."""
        self._timer.stop()
        self._alive_timer.stop()

    @property
    def caught_up(self) -> bool:
        """Whether everything the file held when it was opened has been read (what follows is news)."""
        return self._caught_up_once

    @property
    def state(self) -> str:
        return self.model.state()

    def poll(self) -> None:
        # Parsing makes thousands of short-lived dicts, which would set off the
        # cyclic collector (tens of ms for a full pass) in the middle of a
        # read; they hold no cycles and reference counting frees them.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._read()
        finally:
            if collecting:
                gc.enable()

    def _read(self) -> None:
        start = time.perf_counter()
        result = None
        while True:
            t0 = time.perf_counter()
            offset = self.reader.offset
            events = self.reader.read_new(self._chunk)
            if events:
                r = self.model.ingest(events)
                result = r if result is None else _merge(result, r)
            if self.reader.rejected:
                self.model.note_rejected(self.reader.rejected, self.reader.garbage)
                self.reader.rejected.clear()
            took = time.perf_counter() - t0
            read = self.reader.offset - offset
            if read >= self._chunk // 2 and took > 0:
                # Aim one read at half the budget, at the bytes/second measured
                # on a read big enough to tell (small live reads are mostly overhead).
                self._chunk = int(min(max(16 * 1024, read / took * self.budget_s / 2), 1 << 20))
            # Stop before a read of the same size would overrun the budget.
            if not self.reader.behind or time.perf_counter() + took - start > self.budget_s:
                break
        behind = self.reader.behind > 0
        self.model.backlog = self.reader.behind
        # Behind: come straight back after the event loop has breathed.
        self._timer.setInterval(0 if behind else self._poll_ms)
        lines = self.log_tail.read_new(256 * 1024)
        if self.launch_tail is not None:
            # The launcher writes its lines into engine.log itself; its output here matters only when it
            # ended before that (see _check_process).
            self.launch_tail.read_new(64 * 1024)
        if lines:
            self.logLines.emit(lines)
        if result is not None:
            for command in result.acks:
                self.ackReceived.emit(command)
            for event in result.anomalies:
                self.anomalyRaised.emit(event)
            self.updated.emit()
        self._emit_state()
        if not behind and not self._caught_up_once:
            self._caught_up_once = True
            self.caughtUp.emit()

    def catch_up(self) -> None:
        """Ingest everything written so far, now (used before a screenshot)."""
        while True:
            self.poll()
            if not self.reader.behind:
                break

    def _emit_state(self) -> None:
        state = self.model.state()
        if state != self._last_state:
            self._last_state = state
            self.stateChanged.emit(state)
            if state in TERMINAL_STATES:
                self.ended.emit(state)

    # -------------------------------------------------------------- liveness

    def _launcher_process(self) -> psutil.Process | None:
        """The process a stop may signal: the one this GUI started, or the launcher that launcher.json
        names when it verifiably is that process (a reused pid or a crafted file names another one)."""
        if self.pid is not None:
            try:
                return psutil.Process(self.pid)
            except psutil.Error:
                return None
        return self.run.launcher_process()

    def process_alive(self) -> bool | None:
        if self.pid is not None:
            return pid_alive(self.pid)
        return self.run.launcher_alive()

    def _check_process(self) -> None:
        alive = self.process_alive()
        if alive is False and self.model.alive is not False:
            # Read what the engine wrote before it went, then judge.
            self.catch_up()
            lines = self.log_tail.flush_partial()
            if self.launch_tail is not None:
                self.launch_tail.read_new()
                self.launch_tail.flush_partial()
                if not self.log_tail.last_lines:  # it ended before writing engine.log: a refused config
                    lines += [f"[launcher] {line}" for line in self.launch_tail.last_lines]
            if lines:
                self.logLines.emit(lines)
            if self.model.end is None:
                self.model.exit_note = "the engine process exited without ending the run"
        self.model.alive = alive
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
        self._escalate_stop(alive)
        self._emit_state()
        if self.model.state(now) in TERMINAL_STATES and alive is not True:
            self._alive_timer.setInterval(2000)
            self._timer.setInterval(max(self._poll_ms, 1000))
            self._poll_ms = max(self._poll_ms, 1000)

    def last_log_lines(self, n: int = 20) -> list[str]:
        lines = list(self.log_tail.last_lines)
        if not lines and self.launch_tail is not None:
            lines = [f"[launcher] {line}" for line in self.launch_tail.last_lines]
        return lines[-n:]

    # -------------------------------------------------------------- control

    def send(self, cmd: str, **args: Any) -> Command | None:
        try:
            command_id = send_command(self.run.root, cmd, **args)
        except (OSError, ValueError) as exc:
            self.model.note("critical", f"could not send {cmd}", str(exc))
            self.updated.emit()
            return None
        command = self.model.note_command(command_id, cmd, args)
        self.commandSent.emit(command)
        self.updated.emit()
        return command

    def stop(self) -> None:
        """Graceful stop: the stop command; if the engine is still up ``stop_grace_s``
        later, SIGTERM to the launcher (which terminates torchrun's process
        group); ``term_grace_s`` after that a second SIGTERM (the launcher then
        kills torchrun's group) and, 2 s later, SIGKILL to the launcher itself."""
        if self._stop_started is None:
            self._stop_started = time.monotonic()
            if self.model.is_live():
                self.send("stop")
        self._escalate_stop(self.process_alive())

    @property
    def stopping(self) -> bool:
        return self._stop_started is not None

    def _escalate_stop(self, alive: bool | None) -> None:
        if self._stop_started is None or alive is not True:
            return
        waited = time.monotonic() - self._stop_started
        term_at, kill_at = self.stop_grace_s, self.stop_grace_s + self.term_grace_s
        stages = [(term_at, signal.SIGTERM), (kill_at, signal.SIGTERM), (kill_at + 2.0, signal.SIGKILL)]
        for stage, (at, sig) in enumerate(stages):
            if waited >= at and len(self._signalled) == stage:
                self._signal(sig)

    def _signal(self, sig: signal.Signals) -> None:
        proc = self._launcher_process()
        self._signalled.append(sig.name)
        if proc is None:
            self.model.note(
                "warning",
                f"engine did not stop; {sig.name} not sent",
                "launcher.json does not name a live process that is verifiably this run's launcher",
            )
            self.updated.emit()
            return
        try:
            proc.send_signal(sig)
        except psutil.Error:
            return
        self.model.note(
            "warning",
            f"engine did not stop; sent {sig.name}",
            f"pid {proc.pid}, {time.monotonic() - (self._stop_started or 0):.0f} s after the stop command",
        )
        self.updated.emit()


def _merge(a, b):
    a.events += b.events
    a.new_series |= b.new_series
    a.state_changed |= b.state_changed
    a.acks += b.acks
    a.anomalies += b.anomalies
    a.ended = b.ended or a.ended
    return a
