"""The main window: runs list, live dashboard, controls, log, events, status bar.

It composes: the docks and their layout (:mod:`gui.docks`), the actions, menus and toolbars
(:mod:`gui.actions`), starting and steering runs (:mod:`gui.run_control`), what the panes show of the primary
run (:mod:`gui.primary_views`), and the panels (:mod:`gui.widgets.panels`). What stays here is which runs are
open and which of them is shown where.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtGui, QtWidgets

from gui import forget_numpy_setting, remote_workspace
from gui.actions import build_actions
from gui.docks import Docks, raise_dock
from gui.models.hardware import Hardware, detect
from gui.models.plotspec import TRAINING
from gui.primary_views import PrimaryViews
from gui.run_control import RunControl, engine_argv
from gui.theme import THEMES, Theme
from gui.widgets import study_dock
from gui.widgets.banner import FailureBanner
from gui.widgets.log_pane import LogView
from gui.widgets.panels import Panels
from gui.widgets.panes import EventsView, RunInfoView
from gui.widgets.plots import Dashboard, PlotSettings
from gui.widgets.runs import RunsPanel, WorkspaceWatcher
from gui.widgets.status import RunStatusBar

if TYPE_CHECKING:
    # A session brings the reader thread, the event models and pydantic: loaded with the first run opened.
    from gui.session import RunSession
    from gui.widgets.dialogs import NewRunRequest


PARSERS_AFTER_MS = 100


class MainWindow(QtWidgets.QMainWindow):
    # Made by gui.actions.build_actions.
    act_new: QtGui.QAction
    act_open: QtGui.QAction
    act_workspace: QtGui.QAction
    act_pause: QtGui.QAction
    act_resume: QtGui.QAction
    act_ckpt: QtGui.QAction
    act_lr: QtGui.QAction
    act_profile: QtGui.QAction
    act_stop: QtGui.QAction
    act_refresh: QtGui.QAction
    act_export: QtGui.QAction
    act_screenshot: QtGui.QAction
    act_theme: QtGui.QAction
    act_raw: QtGui.QAction
    act_reset_layout: QtGui.QAction
    act_overlay_clear: QtGui.QAction
    act_fit: QtGui.QAction
    act_quit: QtGui.QAction
    act_x_time: QtGui.QAction
    smoothing: QtWidgets.QSlider
    smoothing_label: QtWidgets.QLabel
    x_combo: QtWidgets.QComboBox
    # Made by gui.docks.Docks.build_shell.
    runs_dock: QtWidgets.QDockWidget
    system_dock: QtWidgets.QDockWidget
    music_dock: QtWidgets.QDockWidget
    info_dock: QtWidgets.QDockWidget
    events_dock: QtWidgets.QDockWidget
    log_dock: QtWidgets.QDockWidget

    def __init__(
        self,
        settings: QtCore.QSettings,
        workspace: str | Path | None = None,
        hardware: Callable[[], Hardware] = detect,
        parent: QtWidgets.QWidget | None = None,
    ):
        super().__init__(parent)
        forget_numpy_setting()  # numpy is loaded (pyqtgraph): the runs started from here keep its default
        self.settings = settings
        self._hardware_probe = hardware
        self._hardware: Hardware | None = None
        self.setWindowTitle("Podium")
        self.theme: Theme = THEMES.get(str(settings.value("theme", "light")), THEMES["light"])
        self.sessions: dict[Path, RunSession] = {}
        self.primary: RunSession | None = None
        self.overlays: list[Path] = []
        self._closing = False
        # Tests and the benchmark replace the engine command line.
        self.engine_argv = engine_argv
        self.control = RunControl(self)
        self.docks = Docks(self, settings)
        self.views = PrimaryViews(self)

        self.dashboard = _dashboard(settings, self.theme, self)

        url = str(workspace or settings.value("workspace", "") or Path.cwd() / "runs")
        self.watcher = WorkspaceWatcher(remote_workspace.local_folder(url), parent=self)

        self.banner = FailureBanner()
        self.docks.build_central(self.banner, self.dashboard.view)

        self.runs_panel = RunsPanel(self.watcher, self.theme)
        self.runs_panel.keep_choices(settings)
        self.runs_panel.openRequested.connect(self.open_run)
        self.runs_panel.overlayToggled.connect(self.set_overlay)
        self.runs_panel.chooseWorkspace.connect(self.choose_workspace)
        self.workspaces = remote_workspace.Workspaces(self, url)
        self.log_view = LogView()
        self.events_view = EventsView(self.theme)
        self.info_view = RunInfoView()
        self.banner.showLog.connect(lambda: raise_dock(self.log_dock))
        self.docks.build_shell()

        self.status = RunStatusBar(self.theme)
        self.status.anomaliesClicked.connect(self.views.show_anomalies)
        self.setStatusBar(self.status)
        build_actions(self)
        self.resize(1500, 950)
        self.docks.restore_geometry()
        self.apply_theme(self.theme)
        self.update_actions()
        # Config editor, checkpoints, alerts, samples: docks that follow the open run (docs/panels.md).
        self.panels = Panels(self.theme, self)
        self.panels.mount(self)
        study_dock.mount(self)

        self._ui_timer = QtCore.QTimer(self)
        self._ui_timer.setInterval(1000)
        self._ui_timer.timeout.connect(self.update_actions)
        self._ui_timer.timeout.connect(self.control.finish_closing)
        self._ui_timer.start()
        # The runs list fills right after the window shows, not a refresh period later.
        QtCore.QTimer.singleShot(0, self.watcher.refresh)
        # The processes that decode runs' events start once the window is up, ready before a run is opened.
        QtCore.QTimer.singleShot(PARSERS_AFTER_MS, self, _start_parse_workers)

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        self.docks.lay_out()

    def _dock(
        self, title: str, name: str, widget: QtWidgets.QWidget, area: QtCore.Qt.DockWidgetArea
    ) -> QtWidgets.QDockWidget:
        return self.docks.add(title, name, widget, area)

    @property
    def _laid_out(self) -> bool:
        return self.docks.laid_out

    def _save_layout(self) -> None:
        self.docks.save()

    # ------------------------------------------------------------- runs

    @property
    def workspace(self) -> Path:
        return self.watcher.root

    def choose_workspace(self) -> None:
        self.workspaces.choose()

    def set_workspace(self, path: str | Path) -> None:
        self.workspaces.open(str(path))

    def _key(self, path: str | Path) -> Path:
        """How the window knows a run: resolved on this disk; as the server names it for a remote one (a local
        symlink of the same name must not turn a server's run into a local folder)."""
        path = Path(path)
        return path if self.workspaces.access_for(path) is not None else path.resolve()

    def _session(self, path: Path) -> RunSession:
        path = self._key(path)
        session = self.sessions.get(path)
        if session is None:
            from gui.session import RunSession

            session = self.sessions[path] = RunSession(path, self, access=self.workspaces.access_for(path))
            self._wire(session)
            session.start()
        return session

    def _wire(self, session: RunSession) -> None:
        self.views.wire(session)

    def open_run(self, path: Path) -> RunSession | None:
        """Make the run at ``path`` the primary one (plotted, steered, logged); None for a folder that holds
        no run, which is refused where the user sees it."""
        if not self.control.is_run(path):
            return None
        session = self._session(path)
        if session is self.primary:
            return session
        self.primary = session
        if session.run.root in self.overlays:
            self.overlays.remove(session.run.root)
        self.settings.setValue("last_run", str(session.run.root))
        self.views.show(session)
        self._update_plots()
        self.setWindowTitle(f"{session.model.name} — Podium")
        self.update_actions()
        self.banner.check(session)
        return session

    def set_overlay(self, path: Path, on: bool) -> None:
        path = self._key(path)
        if on and not self.control.is_run(path):
            return
        if on and path not in self.overlays and (self.primary is None or path != self.primary.run.root):
            self._session(path)
            self.overlays.append(path)
            if self.primary is None:
                self.open_run(path)
                return
        elif not on and path in self.overlays:
            self.overlays.remove(path)
        self._update_plots()

    def clear_overlays(self) -> None:
        self.overlays.clear()
        self._update_plots()

    def _update_plots(self) -> None:
        models = ([self.primary.model] if self.primary else []) + [self.sessions[p].model for p in self.overlays]
        self.dashboard.set_models(models)
        self.runs_panel.model.set_overlaid(set(self.overlays), self.primary.run.root if self.primary else None)
        # Followed runs that are neither shown nor launched here cost polling for nothing.
        shown = {self.primary.run.root if self.primary else None, *self.overlays}
        for path in [p for p, s in self.sessions.items() if p not in shown and not s.launched_here]:
            _discard(self.sessions.pop(path))

    def open_run_dialog(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open run folder", str(self.workspace))
        if path:
            self.open_run(Path(path))

    def adopt(self, session: RunSession) -> None:
        """Follow a run launched here (replacing any session of its folder) and open it."""
        path = self._key(session.run.root)
        old = self.sessions.pop(path, None)
        if old is not None:
            _discard(old)
        self.sessions[path] = session
        self._wire(session)
        session.start()
        self.open_run(path)
        self.watcher.refresh()

    def hardware(self) -> Hardware:
        if self._hardware is None:
            self._hardware = self._hardware_probe()
        return self._hardware

    # ---------------------------------------------------------- control (gui.run_control)

    def start_run(self, request: NewRunRequest) -> RunSession | None:
        if self.workspaces.remote:
            return self.workspaces.start_run(request)
        return self.control.start_run(request)

    def send(self, cmd: str, **args) -> None:
        self.control.send(cmd, **args)

    def set_lr(self, lr: float | None = None) -> None:
        self.control.set_lr(lr)

    def update_actions(self) -> None:
        self.control.update_actions()

    # ------------------------------------------------------------- view

    def set_smoothing(self, value: int) -> None:
        self.dashboard.set_smoothing(value / 100)
        self.smoothing_label.setText(f"{value / 100:.2f}")
        self.settings.setValue("plots/smoothing", value / 100)

    def set_x_by(self, by: str) -> None:
        self.dashboard.set_x_by(by)
        self.settings.setValue("plots/x_by", by)
        if self.x_combo.currentText() != by:
            self.x_combo.setCurrentText(by)
        if self.act_x_time.isChecked() != (by == "time"):
            self.act_x_time.setChecked(by == "time")

    def set_log_y(self, key: str, on: bool) -> None:
        self.dashboard.set_log_y(key, on)
        self.settings.setValue(f"plots/log_y/{key}", on)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        # On the window, not the application: restyling every widget of the
        # process (pyqtgraph keeps hundreds in its menus) takes seconds.
        sheet = theme.style_sheet()
        if self.styleSheet() != sheet:
            self.setStyleSheet(sheet)
        self.dashboard.apply_theme(theme)
        self.status.set_theme(theme)
        self.runs_panel.model.theme = theme
        self.events_view.theme = theme
        study_dock.set_theme(self, theme)
        self.settings.setValue("theme", theme.name)

    # ------------------------------------------------------------- closing

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if not self.control.may_close():
            event.ignore()
            return
        self.docks.save()
        self.panels.checkpoints.verifier.stop()
        self.watcher.stop()
        self.dashboard.stop()
        self._ui_timer.stop()
        self.status.stop()
        for session in self.sessions.values():
            session.close()
        # Their worker threads would otherwise hold the exit open until an SSH or squeue call times out.
        self.control.close()
        self.workspaces.close()
        super().closeEvent(event)


def _dashboard(settings: QtCore.QSettings, theme: Theme, parent: QtWidgets.QWidget) -> Dashboard:
    """The plots as the user last set them."""
    plot_settings = PlotSettings(
        smoothing=float(str(settings.value("plots/smoothing", 0.6))),
        show_raw=_bool(settings.value("plots/show_raw", True)),
    )
    dashboard = Dashboard(theme, plot_settings, parent, store=settings)
    dashboard.set_x_by(str(settings.value("plots/x_by", "step")))
    for spec in TRAINING:
        if _bool(settings.value(f"plots/log_y/{spec.key}", spec.log_y)):
            dashboard.set_log_y(spec.key, True)
    return dashboard


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


def _discard(session: RunSession) -> None:
    """Stop following a run and free it: a session is the window's child, which would keep it (and its
    run's series) alive for as long as the window."""
    session.close()
    session.setParent(None)
    session.deleteLater()


def _start_parse_workers() -> None:
    from gui.models import parse_worker  # with the contract's models: not on the way to the first paint

    parse_worker.shared().start()
