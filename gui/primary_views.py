"""What the window's panes show of its primary run: the log, the events, the run information, the status bar
and the failure banner, and what each open run's session signals change there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gui.docks import raise_dock

if TYPE_CHECKING:
    from gui.main_window import MainWindow
    from gui.session import RunSession


class PrimaryViews:
    def __init__(self, window: MainWindow):
        self.window = window

    def wire(self, session: RunSession) -> None:
        session.updated.connect(lambda s=session: self._on_updated(s))
        session.stateChanged.connect(lambda state, s=session: self._on_state(s, state))
        session.logLines.connect(lambda lines, s=session: self._on_log_lines(s, lines))
        session.ackReceived.connect(lambda cmd, s=session: self._on_ack(s, cmd))
        session.ended.connect(lambda state, s=session: self._on_ended(s, state))

    def show(self, session: RunSession) -> None:
        """Point the panes at ``session``, which just became the primary run."""
        w = self.window
        w.log_view.clear()
        # Replay what the session already handed over, then follow it.
        w.log_view.append_lines(list(session.log_shown))
        w.events_view.set_model(session.model)
        w.info_view.set_model(session.model)
        w.status.set_model(session.model)
        w.banner.reset()

    def show_anomalies(self) -> None:
        w = self.window
        raise_dock(w.events_dock)
        w.events_view.filter.setCurrentText("Anomalies")
        if w.primary is not None:
            w.primary.model.mark_anomalies_read()
            w.status.refresh()

    def _on_log_lines(self, session: RunSession, lines: list[str]) -> None:
        if session is self.window.primary:
            self.window.log_view.append_lines(lines)

    def _on_updated(self, session: RunSession) -> None:
        self.window.dashboard.poke()
        if session is self.window.primary:
            self.window.events_view.refresh()
            self.window.info_view.refresh()

    def _on_state(self, session: RunSession, state: str) -> None:
        if session is self.window.primary:
            self.window.update_actions()
            self.window.status.refresh()

    def _on_ack(self, session: RunSession, command) -> None:
        if session is self.window.primary:
            self.window.control.acknowledged(command)

    def _on_ended(self, session: RunSession, state: str) -> None:
        w = self.window
        w.watcher.refresh()
        if session is w.primary:
            w.banner.check(session)
        w.control.finish_closing()
