"""The panels together: the open run's events handed to each, the docks, and the wiring to the window.

:class:`Panels` builds each panel on its model, feeds them the open run's
events as its :class:`~gui.session.RunSession` reads them (the one reader of
that run's file), and connects the panels to each other: a checkpoint's "Fork from" opens its
config in the editor; a generated sample appears in Samples; selecting an
alert moves the plots to its step.

:class:`~gui.main_window.MainWindow` mounts them with::

    self.panels = Panels(self.theme, self)   # in __init__, after the shell's docks
    self.panels.mount(self)

and ``self.panels.lay_out(self)`` in ``_lay_out_docks``, after its own
``tabifyDockWidget`` calls and before the default state is saved, so "Reset
layout" and saved layouts include the panels.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtWidgets

from gui.theme import Theme
from gui.widgets import panel_launch

if TYPE_CHECKING:
    from engine.contract.events import TypedEvent
    from gui.access.base import RunAccess
    from gui.session import RunSession
    from gui.widgets.alerts_panel import AlertsPanel
    from gui.widgets.checkpoint_browser import CheckpointBrowser
    from gui.widgets.config_editor import ConfigEditorPanel
    from gui.widgets.samples_panel import SamplesPanel

PRIMARY_CHECK_MS = 300
# The alerts panel is built this long after the window is made: after its first paint, and before a user can
# bring its tab to the front (built then, its table would take its column widths before its own layout).
ALERTS_BUILD_MS = 150
CONFIG_MIN_HEIGHT = 440  # px of the bottom dock area when the config editor is shown


class Panels(QtCore.QObject):
    def __init__(self, theme: Theme, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.theme = theme
        self.run_dir: Path | None = None
        self.live = False
        # The editor (and with it the config schema: pydantic), the checkpoint browser and the samples
        # panel (piano roll, audio) are built when their dock is first shown, not while the window
        # starts: each dock holds an empty host until then. Alerts (the event models) are built after the
        # first paint, or at once when a run is opened first, for their badge.
        self._config: ConfigEditorPanel | None = None
        self._checkpoints: CheckpointBrowser | None = None
        self._samples: SamplesPanel | None = None
        self._alerts: AlertsPanel | None = None
        self._access: RunAccess | None = None
        self._workspace: Path | None = None
        self._window = None
        self.hosts = {name: _host() for name in ("alerts", "config", "checkpoints", "samples")}
        self.config_host = self.hosts["config"]
        self.session: RunSession | None = None
        self._shown = 0  # events of the session's model.notable already handed to the panels
        self.docks: dict[str, QtWidgets.QDockWidget] = {}

    @property
    def access(self) -> RunAccess:
        """The open run's workspace, where every panel reads it (this machine while no run is open)."""
        if self._access is None:
            from gui.access.local import LocalAccess

            self._access = LocalAccess("/")
        return self._access

    @property
    def alerts(self) -> AlertsPanel:
        """The alerts panel, built on first use."""
        if self._alerts is None:
            from gui.models.alerts import AlertModel
            from gui.widgets.alerts_panel import AlertsPanel

            panel = self._alerts = AlertsPanel(AlertModel())
            _put(self.hosts["alerts"], panel)
            panel.reset(self.run_dir.name if self.run_dir else "run")
            window = self._window
            if window is not None:
                panel.stepSelected.connect(lambda step: focus_step(window, step))
                panel.badgeChanged.connect(lambda n: self._badge(window, n))
        return self._alerts

    @property
    def config(self) -> ConfigEditorPanel:
        """The config editor, built on first use."""
        if self._config is None:
            from gui.models.config_doc import ConfigDocument
            from gui.widgets.config_editor import ConfigEditorPanel

            editor = self._config = ConfigEditorPanel(ConfigDocument(), self.theme)
            _put(self.config_host, editor)
            editor.set_workspace(self._workspace)
            editor.access = self.access
            editor.set_run(self.run_dir)
            window = self._window
            if window is not None:
                editor.nproc.setValue(window.hardware().default_nproc)
                editor.startRequested.connect(lambda request: panel_launch.launch(window, request))
        return self._config

    @property
    def checkpoints(self) -> CheckpointBrowser:
        """The checkpoint browser, built on first use."""
        if self._checkpoints is None:
            from gui.models.checkpoints import CheckpointModel
            from gui.widgets.checkpoint_browser import CheckpointBrowser

            browser = self._checkpoints = CheckpointBrowser(CheckpointModel())
            _put(self.hosts["checkpoints"], browser)
            browser.forkRequested.connect(self.fork_from)
            browser.sampleGenerated.connect(self._sample_generated)
            window = self._window
            if window is not None:
                browser.resumeRequested.connect(lambda run_dir: panel_launch.resume(window, run_dir))
            browser.set_access(self.access)
            browser.set_run(self.run_dir, self.live)
        return self._checkpoints

    @property
    def samples(self) -> SamplesPanel:
        """The samples panel, built on first use with what the open run has had so far."""
        if self._samples is None:
            from gui.models.samples import SampleModel
            from gui.widgets.samples_panel import SamplesPanel

            panel = self._samples = SamplesPanel(SampleModel(), self.theme)
            panel.model.access = self.access
            _put(self.hosts["samples"], panel)
            panel.reset(self.run_dir)
            if self.session is not None:
                panel.ingest(self.session.model.notable[: self._shown])
        return self._samples

    def set_workspace(self, workspace: Path | None) -> None:
        self._workspace = Path(workspace) if workspace else None
        if self._config is not None:
            self._config.set_workspace(self._workspace)

    # ----------------------------------------------------------------- run

    def follow(self, session: RunSession | None) -> None:
        """Show this run in every panel (None: no run). The panels take their events from the session,
        which reads the run's file for the plots too: one reader per run."""
        if self.session is not None:
            try:
                self.session.updated.disconnect(self._pull)
            except (RuntimeError, TypeError):  # the session's object is already gone
                pass
        self.session = session
        self.run_dir = session.run.root if session else None
        self._access = session.access if session is not None else None
        self.live = bool(session and session.model.is_live())
        if session is not None or self._alerts is not None:
            self.alerts.reset(self.run_dir.name if self.run_dir else "run")
        if self._samples is not None:
            self._samples.model.access = self.access
            self._samples.reset(self.run_dir)
        if self._checkpoints is not None:
            self._checkpoints.set_access(self.access)
            self._checkpoints.set_run(self.run_dir, self.live)
        if self._config is not None:
            self._config.access = self.access
            self._config.set_run(self.run_dir)
        self._shown = 0
        if session is not None:
            session.updated.connect(self._pull)
            self._pull()

    def _pull(self) -> None:
        session = self.session
        if session is None:
            return
        notable = session.model.notable
        if len(notable) > self._shown:
            events, self._shown = notable[self._shown :], len(notable)
            self.ingest(events, news=session.caught_up)

    def ingest(self, events: list[TypedEvent], news: bool = True) -> None:
        # Alerts read on opening a run are its history, not news: only a live run's are notified.
        self.alerts.ingest(events, live=self.live and news)
        if self._samples is not None:
            self._samples.ingest(events)
        types = {e["type"] for e in events}
        if self._checkpoints is not None and types & {"checkpoint", "checkpoint_removed"}:
            self._checkpoints.refresh()
        if "run_end" in types:
            self.live = False
            if self._checkpoints is not None:
                self._checkpoints.live = False

    def fork_from(self, checkpoint: Path) -> None:
        """Open the checkpoint's config in the editor, ready to edit and fork."""
        from engine.contract.manifest import CheckpointInvalid
        from gui.models.checkpoints import checkpoint_config_yaml

        try:
            text = checkpoint_config_yaml(checkpoint, self.checkpoints.model.files)
        except CheckpointInvalid as exc:
            self.checkpoints.details.setText(f"Cannot fork: {exc}")
            return
        self.config.load_text(text)
        self.config.set_checkpoint(checkpoint)
        if not self.config.run_name.text():
            self.config.run_name.setText(f"{checkpoint.parent.parent.name}-fork-{time.strftime('%H%M%S')}")
        self._raise("config")

    def _sample_generated(self, path: Path, step: int, source: str) -> None:
        self.samples.add_manual(path, step, source, self.checkpoints.seed.value())
        self._raise("samples")

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        if self._config is not None:
            self._config.apply_theme(theme)
        if self._samples is not None:
            self._samples.apply_theme(theme)

    def stop(self) -> None:
        self.follow(None)
        if self._samples is not None:
            self._samples.stop()
        timer = getattr(self, "_primary_timer", None)
        if timer is not None:
            timer.stop()

    # -------------------------------------------------------- main window

    def mount(self, window) -> None:
        """Dock the panels in ``window`` (a MainWindow) and wire them to its run, plots, status and menus."""
        Area = QtCore.Qt.DockWidgetArea
        self.docks = {
            "alerts": window._dock("Alerts", "alerts", self.hosts["alerts"], Area.BottomDockWidgetArea),
            "checkpoints": window._dock(
                "Checkpoints", "checkpoints", self.hosts["checkpoints"], Area.BottomDockWidgetArea
            ),
            "config": window._dock("Config editor", "config", self.config_host, Area.BottomDockWidgetArea),
            "samples": window._dock("Samples", "samples", self.hosts["samples"], Area.RightDockWidgetArea),
        }
        self._window = window
        self.set_workspace(window.workspace)
        window.status.anomaliesClicked.connect(lambda: self._raise("alerts"))
        QtCore.QTimer.singleShot(ALERTS_BUILD_MS, self, lambda: self.alerts)
        # Judged once the event loop has laid the window out: at start-up every dock "becomes visible" for a
        # moment, before the tabs are made, and only a panel's own tab should build it.
        for name in self.hosts:
            self.docks[name].visibilityChanged.connect(
                lambda shown, name=name: shown and QtCore.QTimer.singleShot(0, lambda: self._dock_shown(window, name))
            )
        window.act_theme.toggled.connect(lambda on: self.apply_theme(window.theme))
        view = next((a.menu() for a in window.menuBar().actions() if a.menu() and a.text() == "&View"), None)
        if view is not None:
            panels_menu = view.addMenu("Panels")
            for dock in self.docks.values():
                panels_menu.addAction(dock.toggleViewAction())
        window.installEventFilter(self)  # its close stops our timers, as it stops its own
        # The window has no "primary run changed" signal; a cheap check of which run is primary follows it.
        self._primary = None
        self._primary_timer = QtCore.QTimer(self, interval=PRIMARY_CHECK_MS)
        self._primary_timer.timeout.connect(lambda: self._follow_primary(window))
        self._primary_timer.start()
        self._follow_primary(window)

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if event.type() == QtCore.QEvent.Type.Close and isinstance(watched, QtWidgets.QWidget):
            # The window may refuse to close (a run is still going): judge once it has decided.
            QtCore.QTimer.singleShot(0, lambda: self._stop_unless_visible(watched))
        return False

    def _stop_unless_visible(self, window: QtWidgets.QWidget) -> None:
        if not window.isVisible():
            self.stop()

    def lay_out(self, window) -> None:
        """Tab the panels with the shell's docks (called where the window lays out its own, on first show)."""
        window.tabifyDockWidget(window.log_dock, self.docks["alerts"])
        window.tabifyDockWidget(self.docks["alerts"], self.docks["checkpoints"])
        window.tabifyDockWidget(self.docks["checkpoints"], self.docks["config"])
        window.tabifyDockWidget(window.music_dock, self.docks["samples"])
        window.events_dock.raise_()
        window.system_dock.raise_()

    def _follow_primary(self, window) -> None:
        session = window.primary
        if window.workspace != self._workspace:
            self.set_workspace(window.workspace)
        if session is not self._primary:
            self._primary = session
            self.follow(session)
        elif session is not None:
            live = session.model.is_live()
            if live != self.live:
                self.live = live
                if self._checkpoints is not None:
                    self._checkpoints.live = live
                    self._checkpoints.refresh()

    def _dock_shown(self, window, name: str) -> None:
        if self.hosts[name].visibleRegion().isEmpty():
            return  # a tab behind another one
        getattr(self, name)  # builds the panel on first showing
        if name == "config":
            self._make_room(window)

    def _make_room(self, window) -> None:
        """The editor needs height the event feed does not: its dock area grows when it is shown (once per
        showing, and only up to what the user can shrink again)."""
        dock = self.docks["config"]
        if not dock.isFloating() and dock.height() < CONFIG_MIN_HEIGHT:
            window.resizeDocks([dock], [min(CONFIG_MIN_HEIGHT, window.height() // 2)], QtCore.Qt.Orientation.Vertical)

    def _raise(self, name: str) -> None:
        dock = self.docks.get(name)
        if dock is not None:
            dock.show()
            dock.raise_()

    def _badge(self, window, n: int) -> None:
        dock = self.docks.get("alerts")
        if dock is not None:
            dock.setWindowTitle(f"Alerts ({n})" if n else "Alerts")
        if n == 0 and window.primary is not None and window.primary.model.unread_anomalies:
            # Acknowledged here means read in the status bar too.
            window.primary.model.mark_anomalies_read()
            window.status.refresh()


def _host() -> QtWidgets.QWidget:
    """A dock's content until its panel is built."""
    host = QtWidgets.QWidget()
    QtWidgets.QVBoxLayout(host).setContentsMargins(0, 0, 0, 0)
    return host


def _put(host: QtWidgets.QWidget, panel: QtWidgets.QWidget) -> None:
    layout = host.layout()
    assert layout is not None  # every host is made with one
    layout.addWidget(panel)


def focus_step(window, step: int) -> None:
    """Move the plots to ``step``: the crosshair there, and the x range around it when it is off screen."""
    dashboard = window.dashboard
    x = float(step)
    if dashboard.settings.x_by == "time" and window.primary is not None:
        series = window.primary.model.series.get("metrics/loss")
        if series is not None and series.n:
            i, _ = series.value_at(step, "step")
            x = float(series.times[i])
    dashboard.set_cursor(x)
    first = next(iter(dashboard.plots.values()), None)
    if first is not None:
        lo, hi = first.item.getViewBox().viewRange()[0]
        if not lo <= x <= hi:
            half = max((hi - lo) / 2, 1.0)
            dashboard.show_x(x - half, x + half)
