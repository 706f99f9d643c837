"""The window's docks: how one is made, the default arrangement, and the user's saved one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6 import QtCore, QtWidgets

if TYPE_CHECKING:
    from gui.main_window import MainWindow

LAYOUT_VERSION = 1
Area = QtCore.Qt.DockWidgetArea


class Docks:
    """Makes the window's docks and lays them out on first show; saves and restores the user's layout."""

    def __init__(self, window: MainWindow, settings: QtCore.QSettings):
        self.window = window
        self.settings = settings
        self.default_state = QtCore.QByteArray()
        self.laid_out = False

    def add(
        self, title: str, name: str, widget: QtWidgets.QWidget, area: QtCore.Qt.DockWidgetArea
    ) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self.window)
        dock.setObjectName(f"dock_{name}")  # saveState/restoreState key
        dock.setWidget(widget)
        dock.setFeatures(
            QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.window.addDockWidget(area, dock)
        return dock

    def build_shell(self) -> None:
        """The docks of the window itself (the panels add theirs): runs and run info on the left, system and
        music on the right, events and log below the plots."""
        w = self.window
        w.runs_dock = self.add("Runs", "runs", w.runs_panel, Area.LeftDockWidgetArea)
        w.system_dock = self.add("System", "system", w.dashboard.system, Area.RightDockWidgetArea)
        w.music_dock = self.add("Music", "music", scrolling(w.dashboard.music), Area.RightDockWidgetArea)
        w.info_dock = self.add("Run info", "info", w.info_view, Area.LeftDockWidgetArea)
        w.events_dock = self.add("Events", "events", w.events_view, Area.BottomDockWidgetArea)
        w.log_dock = self.add("Log", "log", w.log_view, Area.BottomDockWidgetArea)
        # The bottom docks span only the plots; the side columns run full height.
        w.setCorner(QtCore.Qt.Corner.BottomLeftCorner, Area.LeftDockWidgetArea)
        w.setCorner(QtCore.Qt.Corner.BottomRightCorner, Area.RightDockWidgetArea)

    def lay_out(self) -> None:
        """Tabs and sizes of the default layout, then the user's saved one.

        Done on first show: tabifying docks before the window is shown leaves
        a stray duplicate tab bar behind in Qt 6.12.
        """
        if self.laid_out:
            return
        self.laid_out = True
        w = self.window
        w.tabifyDockWidget(w.system_dock, w.music_dock)
        w.tabifyDockWidget(w.events_dock, w.log_dock)
        w.system_dock.raise_()
        w.events_dock.raise_()
        w.panels.lay_out(w)
        w.resizeDocks([w.runs_dock, w.system_dock], [380, 430], QtCore.Qt.Orientation.Horizontal)
        w.resizeDocks([w.events_dock], [210], QtCore.Qt.Orientation.Vertical)
        w.resizeDocks([w.runs_dock, w.info_dock], [400, 250], QtCore.Qt.Orientation.Vertical)
        self.default_state = w.saveState(LAYOUT_VERSION)
        state = self.settings.value("window/state")
        if state is not None:
            w.restoreState(state, LAYOUT_VERSION)

    def reset(self) -> None:
        self.window.restoreState(self.default_state, LAYOUT_VERSION)

    def save(self) -> None:
        self.settings.setValue("window/geometry", self.window.saveGeometry())
        self.settings.setValue("window/state", self.window.saveState(LAYOUT_VERSION))
        self.settings.sync()

    def restore_geometry(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.window.restoreGeometry(geometry)


def raise_dock(dock: QtWidgets.QDockWidget) -> None:
    dock.show()
    dock.raise_()


def scrolling(widget: QtWidgets.QWidget) -> QtWidgets.QScrollArea:
    """``widget`` in a vertical scroll area: a grid that keeps its rows readable grows past the dock."""
    area = QtWidgets.QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    return area
