"""Stop, escalated: the stop command first; if the engine is still up ``stop_grace_s`` later, SIGTERM to
its launcher (which terminates torchrun's process group); ``term_grace_s`` after that a second SIGTERM
(the launcher then kills the group) and, 2 s later, SIGKILL to the launcher itself.

Signals go through the workspace's access, so they reach a run on a server too (``podium stop`` there,
from the session's sending thread, after the stop command it sent), and the pid is checked where the
process is. Each signal, sent or refused, is noted in the run's feed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6 import QtCore

if TYPE_CHECKING:
    from gui.session import RunSession

_LADDER = ("TERM", "TERM", "KILL")


class StopEscalation(QtCore.QObject):
    _answered = QtCore.Signal(str, object)  # from the sending thread: (signal name, pid or the reason)

    def __init__(self, session: RunSession):
        super().__init__(session)
        self.session = session
        self.started: float | None = None
        self._stages_sent = 0
        self._answered.connect(self._note, QtCore.Qt.ConnectionType.QueuedConnection)

    def begin(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def step(self, alive: bool | None) -> None:
        """Sends the signal whose time has come, while the launcher is known to live."""
        if self.started is None or alive is not True or self._stages_sent >= len(_LADDER):
            return
        s = self.session
        term_at = s.stop_grace_s
        kill_at = term_at + s.term_grace_s
        due_at = (term_at, kill_at, kill_at + 2.0)[self._stages_sent]
        if time.monotonic() - self.started < due_at:
            return
        name = _LADDER[self._stages_sent]
        self._stages_sent += 1
        if s.access.remote:
            s.submit_remote(self._send_from_thread, name)
        else:
            self._note(name, self._send(name))

    def _send(self, name: str) -> int | Exception:
        s = self.session
        try:
            return s.access.signal_launcher(str(s.run.root), name, None if s.access.remote else s.pid)
        except OSError as exc:
            return exc

    def _send_from_thread(self, name: str) -> None:
        outcome = self._send(name)
        try:
            self._answered.emit(name, outcome)
        except RuntimeError:  # the session is gone
            pass

    def _note(self, name: str, outcome: int | Exception) -> None:
        s = self.session
        if isinstance(outcome, Exception):
            s.model.note("warning", f"engine did not stop; SIG{name} not sent", str(outcome))
        else:
            where = f" on {s.access.label().split(':')[0]}" if s.access.remote else ""
            waited = time.monotonic() - (self.started or 0)
            s.model.note(
                "warning",
                f"engine did not stop; sent SIG{name}",
                f"pid {outcome}{where}, {waited:.0f} s after the stop command",
            )
        s.updated.emit()
