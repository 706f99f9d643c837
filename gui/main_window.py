"""The main window: runs list, live dashboard, controls, log, events, status bar."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from gui import remote_workspace
from gui.models.export import write_csv
from gui.models.hardware import Hardware, detect
from gui.models.plotspec import TRAINING
from gui.session import RunSession, engine_argv
from gui.theme import THEMES, Theme
from gui.widgets.dialogs import NewRunDialog, NewRunRequest, SetLrDialog
from gui.widgets.panels import Panels
from gui.widgets.panes import EventsView, LogView, RunInfoView
from gui.widgets.plots import Dashboard, PlotSettings
from gui.widgets.runs import RunsPanel, WorkspaceWatcher
from gui.widgets.status import RunStatusBar

# Which run actions each state allows. The engine reads commands between
# steps, so a command also works while preparing, but it waits until then.
ACTION_STATES = {
    "pause": ("running",),
    "resume": ("paused",),
    "save_checkpoint": ("running", "paused"),
    "set_lr": ("running", "paused"),
    "profile": ("running", "paused"),
    "stop": ("starting", "preparing", "running", "paused", "stalled"),
}
LAYOUT_VERSION = 1


class FailureBanner(QtWidgets.QFrame):
    """Shown over the plots when the run failed: why, and the last log lines."""

    showLog = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("failureBanner")
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        self.text = QtWidgets.QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.text, 1)
        buttons = QtWidgets.QVBoxLayout()
        log = QtWidgets.QPushButton("Show log")
        log.clicked.connect(self.showLog)
        close = QtWidgets.QPushButton("Dismiss")
        close.clicked.connect(self.hide)
        buttons.addWidget(log)
        buttons.addWidget(close)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.hide()

    def show_failure(self, title: str, lines: list[str]) -> None:
        tail = "<br>".join(html.escape(line) for line in lines[-8:]) or "(the log is empty)"
        self.text.setText(f"<b>{html.escape(title)}</b><br><span style='font-family:monospace'>{tail}</span>")
        self.show()


class MainWindow(QtWidgets.QMainWindow):
    def __init__(
        self,
        settings: QtCore.QSettings,
        workspace: str | Path | None = None,
        hardware: Callable[[], Hardware] = detect,
        parent: QtWidgets.QWidget | None = None,
    ):
        super().__init__(parent)
        self.settings = settings
        self._hardware_probe = hardware
        self._hardware: Hardware | None = None
        self.setWindowTitle("Podium")
        self.theme: Theme = THEMES.get(str(settings.value("theme", "light")), THEMES["light"])
        self.sessions: dict[Path, RunSession] = {}
        self.primary: RunSession | None = None
        self.overlays: list[Path] = []
        self._closing = False
        self._banner_for: tuple | None = None
        # Tests and the benchmark replace the engine command line.
        self.engine_argv = engine_argv

        plot_settings = PlotSettings(
            smoothing=float(str(settings.value("plots/smoothing", 0.6))),
            x_by=str(settings.value("plots/x_by", "step")),
            show_raw=_bool(settings.value("plots/show_raw", True)),
        )
        self.dashboard = Dashboard(
            self.theme, PlotSettings(smoothing=plot_settings.smoothing, show_raw=plot_settings.show_raw), self
        )
        self.dashboard.set_x_by(plot_settings.x_by)
        for spec in TRAINING:
            if _bool(settings.value(f"plots/log_y/{spec.key}", spec.log_y)):
                self.dashboard.set_log_y(spec.key, True)

        url = str(workspace or settings.value("workspace", "") or Path.cwd() / "runs")
        self.watcher = WorkspaceWatcher(remote_workspace.local_folder(url), parent=self)

        central = QtWidgets.QWidget()
        central_layout = QtWidgets.QVBoxLayout(central)
        central_layout.setContentsMargins(0, 0, 0, 0)
        central_layout.setSpacing(0)
        self.banner = FailureBanner()
        central_layout.addWidget(self.banner)
        central_layout.addWidget(_scrolling(self.dashboard.training), 1)
        self.setCentralWidget(central)

        self.runs_panel = RunsPanel(self.watcher, self.theme)
        self.runs_panel.openRequested.connect(self.open_run)
        self.runs_panel.overlayToggled.connect(self.set_overlay)
        self.runs_panel.chooseWorkspace.connect(self.choose_workspace)
        self.workspaces = remote_workspace.Workspaces(self, url)
        self.log_view = LogView()
        self.events_view = EventsView(self.theme)
        self.info_view = RunInfoView()
        self.banner.showLog.connect(lambda: self._raise_dock(self.log_dock))

        self.runs_dock = self._dock("Runs", "runs", self.runs_panel, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        self.system_dock = self._dock(
            "System", "system", self.dashboard.system, QtCore.Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.music_dock = self._dock(
            "Music", "music", _scrolling(self.dashboard.music), QtCore.Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.info_dock = self._dock("Run info", "info", self.info_view, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        self.events_dock = self._dock(
            "Events", "events", self.events_view, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.log_dock: QtWidgets.QDockWidget = self._dock(
            "Log", "log", self.log_view, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea
        )
        # The bottom docks span only the plots; the side columns run full height.
        self.setCorner(QtCore.Qt.Corner.BottomLeftCorner, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(QtCore.Qt.Corner.BottomRightCorner, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        self._laid_out = False

        self.status = RunStatusBar(self.theme)
        self.status.anomaliesClicked.connect(self.show_anomalies)
        self.setStatusBar(self.status)
        self._build_actions()
        self._default_state = QtCore.QByteArray()
        self.resize(1500, 950)
        geometry = settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.apply_theme(self.theme)
        self.update_actions()
        # Config editor, checkpoints, alerts, samples: docks that follow the open run (docs/panels.md).
        self.panels = Panels(self.theme, self)
        self.panels.mount(self)

        self._ui_timer = QtCore.QTimer(self)
        self._ui_timer.setInterval(1000)
        self._ui_timer.timeout.connect(self.update_actions)
        self._ui_timer.timeout.connect(self._finish_closing)
        self._ui_timer.start()
        # The runs list fills right after the window shows, not a refresh period later.
        QtCore.QTimer.singleShot(0, self.watcher.refresh)

    # -------------------------------------------------------------- building

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if not self._laid_out:
            self._laid_out = True
            self._lay_out_docks()

    def _lay_out_docks(self) -> None:
        """Tabs and sizes of the default layout, then the user's saved one.

        Done on first show: tabifying docks before the window is shown leaves
        a stray duplicate tab bar behind in Qt 6.12.
        """
        self.tabifyDockWidget(self.system_dock, self.music_dock)
        self.tabifyDockWidget(self.events_dock, self.log_dock)
        self.system_dock.raise_()
        self.events_dock.raise_()
        self.panels.lay_out(self)
        self.resizeDocks([self.runs_dock, self.system_dock], [380, 430], QtCore.Qt.Orientation.Horizontal)
        self.resizeDocks([self.events_dock], [210], QtCore.Qt.Orientation.Vertical)
        self.resizeDocks([self.runs_dock, self.info_dock], [400, 250], QtCore.Qt.Orientation.Vertical)
        self._default_state = self.saveState(LAYOUT_VERSION)
        state = self.settings.value("window/state")
        if state is not None:
            self.restoreState(state, LAYOUT_VERSION)

    def _dock(
        self, title: str, name: str, widget: QtWidgets.QWidget, area: QtCore.Qt.DockWidgetArea
    ) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(f"dock_{name}")  # saveState/restoreState key
        dock.setWidget(widget)
        dock.setFeatures(
            QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        return dock

    def _action(
        self, text: str, slot: Callable, shortcut: str | None = None, tip: str = "", checkable: bool = False
    ) -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        if shortcut:
            action.setShortcut(QtGui.QKeySequence(shortcut))
            action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        shown = tip or text.replace("…", "")
        action.setToolTip(
            f"{shown} ({QtGui.QKeySequence(shortcut).toString(QtGui.QKeySequence.SequenceFormat.NativeText)})"
            if shortcut
            else shown
        )
        action.setCheckable(checkable)
        if checkable:
            action.toggled.connect(slot)
        else:
            # triggered(bool) would pass checked=False into the slot's first parameter:
            # set_lr(lr=False) skipped its dialog and sent lr=0.0. Call it bare.
            action.triggered.connect(lambda _checked=False, slot=slot: slot())
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.act_new = a("New run…", self.new_run, "Ctrl+N", "Start a new training run")
        self.act_open = a(
            "Open run…", self.open_run_dialog, "Ctrl+O", "Open a run folder (live or finished, local or mounted)"
        )
        self.act_workspace = a(
            "Open workspace…",
            self.choose_workspace,
            None,
            "List the runs of a folder or of a server over SSH",
        )
        self.act_pause = a("Pause", lambda: self.send("pause"), "Ctrl+P", "Pause the run between steps")
        self.act_resume = a("Resume", lambda: self.send("resume"), "Ctrl+Shift+P", "Resume a paused run")
        self.act_ckpt = a("Save checkpoint", lambda: self.send("save_checkpoint"), "Ctrl+S", "Save a checkpoint now")
        self.act_lr = a("Set LR…", self.set_lr, "Ctrl+L", "Change the peak learning rate of the running schedule")
        self.act_profile = a(
            "Profile next N steps…",
            self.profile_steps,
            None,
            "Record the next steps with torch.profiler (a trace for Perfetto or TensorBoard, "
            "and the top operators in the Events pane)",
        )
        self.act_stop = a(
            "Stop",
            self.stop_run,
            "Ctrl+F2",
            "Stop gracefully: the stop command, then SIGTERM, then SIGKILL if the engine does not end",
        )
        self.act_refresh = a("Refresh runs", self.watcher.refresh, "F5")
        self.act_export = a("Export all plots as CSV…", self.export_all_csv, "Ctrl+E")
        self.act_screenshot = a("Save window as PNG…", self.save_screenshot, "Ctrl+Shift+E")
        self.act_theme = a(
            "Dark theme", lambda on: self.apply_theme(THEMES["dark" if on else "light"]), "Ctrl+Shift+T", checkable=True
        )
        self.act_theme.setChecked(self.theme.name == "dark")
        self.act_raw = a("Show raw curves", self.dashboard.set_show_raw, "Ctrl+R", checkable=True)
        self.act_raw.setChecked(self.dashboard.settings.show_raw)
        self.act_reset_layout = a("Reset layout", lambda: self.restoreState(self._default_state, LAYOUT_VERSION))
        self.act_overlay_clear = a("Clear overlays", self.clear_overlays, "Ctrl+Shift+O")
        self.act_fit = a(
            "Show all and follow",
            self.dashboard.fit,
            "Home",
            "Zoom out to all the data and follow new points (after zooming in)",
        )
        self.act_quit = a("Quit", self.close, "Ctrl+Q")
        self.act_x_time = a(
            "X axis: time", lambda on: self.set_x_by("time" if on else "step"), "Ctrl+Shift+X", checkable=True
        )
        self.act_x_time.setChecked(self.dashboard.settings.x_by == "time")

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        for act in (
            self.act_new,
            self.act_open,
            self.act_workspace,
            None,
            self.act_export,
            self.act_screenshot,
            None,
            self.act_quit,
        ):
            file_menu.addSeparator() if act is None else file_menu.addAction(act)
        run_menu = menu.addMenu("&Run")
        for act in (self.act_pause, self.act_resume, self.act_ckpt, self.act_lr, self.act_profile, None, self.act_stop):
            run_menu.addSeparator() if act is None else run_menu.addAction(act)
        view_menu = menu.addMenu("&View")
        for act in (
            self.act_fit,
            self.act_raw,
            self.act_x_time,
            self.act_theme,
            self.act_overlay_clear,
            self.act_refresh,
        ):
            view_menu.addAction(act)
        log_menu = view_menu.addMenu("Log scale (Y)")
        for key, plot in self.dashboard.plots.items():
            item = log_menu.addAction(plot.spec.title)
            item.setCheckable(True)
            item.setChecked(plot.log_y)
            item.toggled.connect(lambda on, k=key: self.set_log_y(k, on))
            plot.log_action.toggled.connect(item.setChecked)
        view_menu.addSeparator()
        for dock in (
            self.runs_dock,
            self.info_dock,
            self.system_dock,
            self.music_dock,
            self.events_dock,
            self.log_dock,
        ):
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addAction(self.act_reset_layout)

        runbar = self.addToolBar("Run")
        runbar.setObjectName("toolbar_run")
        runbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        for act in (
            self.act_new,
            self.act_open,
            None,
            self.act_pause,
            self.act_resume,
            self.act_ckpt,
            self.act_lr,
            self.act_stop,
        ):
            runbar.addSeparator() if act is None else runbar.addAction(act)
        for act, name in ((self.act_stop, "stopButton"), (self.act_new, "primaryButton")):
            widget = runbar.widgetForAction(act)
            if widget is not None:
                widget.setObjectName(name)

        viewbar = self.addToolBar("Plots")
        viewbar.setObjectName("toolbar_plots")
        viewbar.addWidget(QtWidgets.QLabel(" Smoothing "))
        self.smoothing = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setFixedWidth(140)
        self.smoothing.setValue(int(round(self.dashboard.settings.smoothing * 100)))
        self.smoothing.setToolTip(
            "Debiased exponential moving average (TensorBoard's); the raw curve stays faint behind"
        )
        self.smoothing_label = QtWidgets.QLabel()
        self.smoothing_label.setMinimumWidth(34)
        self.smoothing.valueChanged.connect(self.set_smoothing)
        viewbar.addWidget(self.smoothing)
        viewbar.addWidget(self.smoothing_label)
        viewbar.addAction(self.act_raw)
        viewbar.addSeparator()
        viewbar.addWidget(QtWidgets.QLabel(" X "))
        self.x_combo = QtWidgets.QComboBox()
        self.x_combo.addItems(["step", "time"])
        self.x_combo.setCurrentText(self.dashboard.settings.x_by)
        self.x_combo.currentTextChanged.connect(self.set_x_by)
        viewbar.addWidget(self.x_combo)
        self.set_smoothing(self.smoothing.value())

    # ------------------------------------------------------------- runs

    @property
    def workspace(self) -> Path:
        return self.watcher.root

    def choose_workspace(self) -> None:
        self.workspaces.choose()

    def set_workspace(self, path: str | Path) -> None:
        self.workspaces.open(str(path))

    def _session(self, path: Path) -> RunSession:
        path = Path(path).resolve()
        session = self.sessions.get(path)
        if session is None:
            session = self.sessions[path] = RunSession(path, self, access=self.workspaces.access_for(path))
            self._wire(session)
            session.start()
        return session

    def _wire(self, session: RunSession) -> None:
        session.updated.connect(lambda s=session: self._on_updated(s))
        session.stateChanged.connect(lambda state, s=session: self._on_state(s, state))
        session.logLines.connect(lambda lines, s=session: self._on_log_lines(s, lines))
        session.ackReceived.connect(lambda cmd, s=session: self._on_ack(s, cmd))
        session.ended.connect(lambda state, s=session: self._on_ended(s, state))

    def open_run(self, path: Path) -> RunSession:
        """Make the run at ``path`` the primary one (plotted, steered, logged)."""
        session = self._session(path)
        if session is self.primary:
            return session
        self.primary = session
        if session.run.root in self.overlays:
            self.overlays.remove(session.run.root)
        self.settings.setValue("last_run", str(session.run.root))
        self.log_view.clear()
        # Replay what the log tail already read, then follow it.
        self.log_view.append_lines(list(session.log_tail.last_lines))
        self.events_view.set_model(session.model)
        self.info_view.set_model(session.model)
        self.status.set_model(session.model)
        self.banner.hide()
        self._banner_for = None
        self._update_plots()
        self.setWindowTitle(f"{session.model.name} — Podium")
        self.update_actions()
        self._check_banner(session)
        return session

    def set_overlay(self, path: Path, on: bool) -> None:
        path = Path(path).resolve()
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

    # --------------------------------------------------------- new run

    def hardware(self) -> Hardware:
        if self._hardware is None:
            self._hardware = self._hardware_probe()
        return self._hardware

    def new_run(self) -> None:
        # The config schema pulls in pydantic (0.3 s): loaded when first needed, not at start-up.
        from engine.contract.config import default_config_path

        last_nproc = self.settings.value("new_run/nproc")
        dialog = NewRunDialog(
            self.workspace,
            self.hardware(),
            default_config_path(),
            last_config=str(self.settings.value("new_run/config", "") or ""),
            last_nproc=int(last_nproc) if last_nproc else None,
            parent=self,
        )
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            request = dialog.request()
            self.settings.setValue("new_run/config", "" if dialog.use_default.isChecked() else str(request.config))
            self.settings.setValue("new_run/nproc", request.nproc)
            self.start_run(request)

    def start_run(self, request: NewRunRequest) -> RunSession | None:
        """Launch the engine for ``request`` and open its run."""
        if self.workspaces.remote:
            return self.workspaces.start_run(request)
        argv = self.engine_argv(request.config, request.run_dir, request.nproc, request.overrides)
        request.run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            session = RunSession.launch(request.run_dir, argv, self)
        except OSError as exc:
            QtWidgets.QMessageBox.critical(self, "Could not start the run", str(exc))
            return None
        path = session.run.root.resolve()
        old = self.sessions.pop(path, None)
        if old is not None:
            _discard(old)
        self.sessions[path] = session
        self._wire(session)
        session.start()
        self.open_run(path)
        self.watcher.refresh()
        self.statusBar().showMessage(f"started {request.name} with {request.nproc} process(es)", 5000)
        return session

    # ---------------------------------------------------------- control

    def send(self, cmd: str, **args) -> None:
        if self.primary is None:
            return
        command = self.primary.send(cmd, **args)
        if command is not None:
            self.statusBar().showMessage(f"sent {cmd} — waiting for the engine to answer…", 4000)
        self.update_actions()

    def set_lr(self, lr: float | None = None) -> None:
        if self.primary is None:
            return
        if lr is None:
            m = self.primary.model
            # The run's own figure (after set_lr commands from anywhere and anomaly LR cuts), else the config's.
            peak = m.peak_lr if m.peak_lr is not None else ((m.config or {}).get("optim") or {}).get("lr")
            dialog = SetLrDialog(m.latest.get("lr"), peak if isinstance(peak, (int, float)) else None, self)
            lr = dialog.value() if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted else None
            if lr is None:
                return
        self.send("set_lr", lr=float(lr))

    def profile_steps(self, steps: int | None = None) -> None:
        """Ask how many steps to record with torch.profiler, then send the engine's ``profile`` command."""
        if self.primary is None:
            return
        if steps is None:
            last = int(str(self.settings.value("run/profile_steps", 10) or 10))
            steps, ok = QtWidgets.QInputDialog.getInt(
                self,
                "Profile",
                "Steps to record with torch.profiler (1–1000).\n"
                "The trace goes to the run's profiles/ folder; the top operators appear in the Events pane.",
                last,
                1,
                1000,
            )
            if not ok:
                return
            self.settings.setValue("run/profile_steps", steps)
        self.send("profile", steps=int(steps))

    def stop_run(self) -> None:
        if self.primary is None:
            return
        self.primary.stop()
        self.statusBar().showMessage(
            "stopping: sent the stop command (SIGTERM follows if the engine does not end)", 6000
        )
        self.update_actions()

    def update_actions(self) -> None:
        s = self.primary
        state = s.state if s is not None else "none"
        pending = {c.cmd for c in s.model.pending_commands()} if s is not None else set()
        for cmd, action in (
            ("pause", self.act_pause),
            ("resume", self.act_resume),
            ("save_checkpoint", self.act_ckpt),
            ("set_lr", self.act_lr),
            ("profile", self.act_profile),
            ("stop", self.act_stop),
        ):
            ok = state in ACTION_STATES[cmd] and cmd not in pending
            if cmd == "stop" and s is not None and s.stopping and state != "stalled":
                ok = False
            action.setEnabled(ok)
        if s is not None:
            self._check_banner(s)

    # ---------------------------------------------------------- session events

    def _on_log_lines(self, session: RunSession, lines: list[str]) -> None:
        if session is self.primary:
            self.log_view.append_lines(lines)

    def _on_updated(self, session: RunSession) -> None:
        if session is self.primary:
            self.events_view.refresh()
            self.info_view.refresh()

    def _on_state(self, session: RunSession, state: str) -> None:
        if session is self.primary:
            self.update_actions()
            self.status.refresh()

    def _on_ack(self, session: RunSession, command) -> None:
        if session is self.primary:
            text = f"{command.cmd}: {command.outcome}" + (f" — {command.reason}" if command.reason else "")
            self.statusBar().showMessage(f"engine answered {text}", 8000)
            self.update_actions()

    def _on_ended(self, session: RunSession, state: str) -> None:
        self.watcher.refresh()
        if session is self.primary:
            self._check_banner(session)
        self._finish_closing()

    def _finish_closing(self) -> None:
        """After "Stop and close": close once every run launched here has exited.
        Checked on each run's end and every second, because a run's end event
        comes a moment before its process is gone."""
        if self._closing and self.isVisible() and not self._live_launched():
            self.close()

    def _check_banner(self, session: RunSession) -> None:
        m = session.model
        if m.state() != "failed":
            return
        key = (id(session), m.state_version)
        if key == self._banner_for:
            return
        self._banner_for = key
        why = (
            m.exit_note
            or (m.end.message if m.end is not None else "")
            or (m.fatal_error.message if m.fatal_error is not None else "")
            or "the run failed"
        )
        self.banner.show_failure(f"{m.name} failed: {why}", session.last_log_lines(12))

    def show_anomalies(self) -> None:
        self._raise_dock(self.events_dock)
        self.events_view.filter.setCurrentText("Anomalies")
        if self.primary is not None:
            self.primary.model.mark_anomalies_read()
            self.status.refresh()

    def _raise_dock(self, dock: QtWidgets.QDockWidget) -> None:
        dock.show()
        dock.raise_()

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
        self.settings.setValue("theme", theme.name)

    def export_all_csv(self) -> None:
        name = self.primary.model.name if self.primary else "runs"
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export plots as CSV", str(Path.home() / f"{name}.csv"), "CSV (*.csv)"
        )
        if path:
            curves = [(c.model.name, c.label, c.series) for p in self.dashboard.plots.values() for c in p.curves]
            # A series shown in two plots is written once.
            unique = list({(run, series.name): (run, label, series) for run, label, series in curves}.values())
            rows = write_csv(path, unique, self.dashboard.settings.smoothing)
            self.statusBar().showMessage(f"wrote {rows:,} points to {path}", 6000)

    def save_screenshot(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(
                self, "Save window as PNG", str(Path.home() / "podium.png"), "PNG (*.png)"
            )
        if path:
            self.dashboard.redraw_all()
            self.grab().save(path)

    # ------------------------------------------------------------- closing

    def _live_launched(self) -> list[RunSession]:
        return [s for s in self.sessions.values() if s.launched_here and s.process_alive()]

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        live = self._live_launched()
        if live and not self._closing:
            names = ", ".join(s.model.name for s in live)
            box = QtWidgets.QMessageBox(self)
            box.setIcon(QtWidgets.QMessageBox.Icon.Question)
            box.setWindowTitle("A run is still going")
            box.setText(f"{names} {'is' if len(live) == 1 else 'are'} still running.")
            box.setInformativeText(
                "Leave it running headless (reopen its folder later to watch and steer it again), "
                "or stop it gracefully before closing?"
            )
            leave = box.addButton("Leave running", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
            stop = box.addButton("Stop and close", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
            box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel)
            box.setDefaultButton(leave)
            box.exec()
            choice = box.clickedButton()
            if choice is stop:
                self._closing = True
                for s in live:
                    s.stop()
                self.statusBar().showMessage("stopping runs; the window closes when they have ended")
                event.ignore()
                return
            if choice is not leave:
                event.ignore()
                return
        elif live and self._closing:
            event.ignore()  # still waiting for a stop to finish
            return
        self._save_layout()
        self.watcher.stop()
        self.dashboard.stop()
        self._ui_timer.stop()
        self.status.stop()
        for session in self.sessions.values():
            session.close()
        super().closeEvent(event)

    def _save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState(LAYOUT_VERSION))
        self.settings.sync()


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


def _scrolling(widget: QtWidgets.QWidget) -> QtWidgets.QScrollArea:
    """``widget`` in a vertical scroll area: a grid that keeps its rows readable grows past the dock."""
    area = QtWidgets.QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    return area


def _discard(session: RunSession) -> None:
    """Stop following a run and free it: a session is the window's child, which would keep it (and its
    run's series) alive for as long as the window."""
    session.close()
    session.setParent(None)
    session.deleteLater()
