"""The study panel as a dock of the main window, reachable from View > Panels > Studies and from the runs
list (a study's header, a trial's menu), following the window's workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6 import QtCore, QtWidgets

from engine.contract.studies import request_stop
from gui.theme import Theme

if TYPE_CHECKING:  # the panel and its charts load when the dock is first shown
    from gui.widgets.study_panel import StudyPanel


def mount(window) -> QtWidgets.QDockWidget:
    """Dock the studies in ``window`` (a MainWindow), hidden; the panel is built when the dock is first
    shown (a window that never opens a study never pays for it)."""
    dock = window._dock("Studies", "studies", QtWidgets.QWidget(), QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
    dock.hide()
    window.study_dock, window.study_panel = dock, None
    dock.visibilityChanged.connect(lambda shown: shown and panel_of(window))
    window.runs_panel.studyRequested.connect(lambda name: open_study(window, name))
    window.runs_panel.stopStudyRequested.connect(lambda name: stop_study(window, name))
    # A study's folder given as the workspace: the watcher lists its workspace and the study opens here.
    window.watcher.studyChosen.connect(lambda name: open_study(window, name))
    if window.watcher.chosen_study is not None:
        QtCore.QTimer.singleShot(0, lambda: open_study(window, window.watcher.chosen_study))
    window.watcher.refreshed.connect(lambda root, _scan: window.study_panel and window.study_panel.set_workspace(root))
    view = next((a.menu() for a in window.menuBar().actions() if a.menu() and a.text() == "&View"), None)
    panels = next((a.menu() for a in view.actions() if a.menu() and a.text() == "Panels"), None) if view else None
    (panels or view or window.menuBar()).addAction(dock.toggleViewAction())
    return dock


def panel_of(window) -> StudyPanel:
    if window.study_panel is None:
        from gui.widgets.study_panel import StudyPanel

        panel = window.study_panel = StudyPanel(window.workspace, window.theme)
        panel.open_run_requested.connect(window.open_run)
        # Into the dock's scroll area, as every bottom tab: a dock shorter than the table and four charts
        # scrolls them instead of squeezing the dashboard's plots.
        window.study_dock.widget().setWidget(panel)
    return window.study_panel


def set_theme(window, theme: Theme) -> None:
    """Restyle the study panel, once it is built (the window's theme switched)."""
    panel = getattr(window, "study_panel", None)  # the window styles itself before the dock is mounted
    if panel is not None:
        panel.set_theme(theme)


def open_study(window, name: str) -> None:
    """Show the study panel on study ``name``, tabbed with the bottom docks the first time."""
    panel, dock = panel_of(window), window.study_dock
    hidden = dock.isHidden()
    if hidden and not window.tabifiedDockWidgets(dock) and not dock.isFloating():
        window.tabifyDockWidget(window.events_dock, dock)
    dock.show()
    dock.raise_()
    QtCore.QTimer.singleShot(0, dock.raise_)  # again once a first tabifying has made its tab bar
    if hidden:  # its tab's height (a share of the window, or what the user made it); once in front, theirs
        QtCore.QTimer.singleShot(0, lambda: window.docks.tabs.give_size(dock))
    # The setup (what the study was started with) folds away until asked for: the table and charts need the room.
    panel.set_workspace(window.workspace)
    panel.refresh_studies()
    panel.select_study(name)
    panel.controls.setup_button.setChecked(panel.source is None)


def stop_study(window, name: str) -> None:
    if window.study_panel is not None and name == window.study_panel.study_name:
        window.study_panel.stop()  # its button then offers to terminate the workers started here
    else:
        request_stop(window.workspace, name)
    window.statusBar().showMessage(f"stop requested for study {name}: running trials stop after their step", 5000)
