"""The window's docks: how one is made, the default arrangement, and the user's saved one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6 import QtCore, QtWidgets

if TYPE_CHECKING:
    from gui.main_window import MainWindow

LAYOUT_VERSION = 1
Area = QtCore.Qt.DockWidgetArea
# Each tab's size when it is brought to the front, until the user sizes it, so a tab chosen once does not
# leave its size to every other. Bottom tabs take a share of the window's height: the event feed and the log a
# strip, the alerts and checkpoints a table with details, the config editor a form. Side tabs take what the
# plots leave (two columns of them) up to a width of their own.
TAB_SHARE = {"events": 0.21, "log": 0.21, "alerts": 0.32, "checkpoints": 0.32, "config": 0.5, "studies": 0.4}
SIDE_WIDTH = {"system": 430, "music": 430, "samples": 560}
PLOTS_MIN_WIDTH = 620  # two columns of plots (TRAINING_PLOT_PX) and the scroll bar
RUNS_MIN_WIDTH = 300  # the runs column gives way down to this before a side tab does


def side_width(name: str, window_width: int) -> int:
    return max(240, min(SIDE_WIDTH.get(name, 430), window_width - PLOTS_MIN_WIDTH - RUNS_MIN_WIDTH))


def runs_width(window_width: int) -> int:
    return min(380, max(260, window_width - PLOTS_MIN_WIDTH - side_width("system", window_width)))


class Docks:
    """Makes the window's docks and lays them out on first show; saves and restores the user's layout."""

    def __init__(self, window: MainWindow, settings: QtCore.QSettings):
        self.window = window
        self.settings = settings
        self.default_state = QtCore.QByteArray()
        self.laid_out = False
        self.tabs = TabSizes(window)

    def build_central(self, banner: QtWidgets.QWidget, plots: QtWidgets.QWidget) -> None:
        """The failure banner over the plots."""
        central = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(banner)
        layout.addWidget(plots, 1)
        self.window.setCentralWidget(central)

    def add(
        self, title: str, name: str, widget: QtWidgets.QWidget, area: QtCore.Qt.DockWidgetArea
    ) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self.window)
        dock.setObjectName(f"dock_{name}")  # saveState/restoreState key
        if area == Area.BottomDockWidgetArea:
            # Tabs share one height, at least the tallest minimum of them: in a scroll area a panel that
            # needs more height than its tab has scrolls instead of holding every other tab that high.
            widget = scrolling(widget, vertical_only=False)
        dock.setWidget(widget)
        dock.setFeatures(
            QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.window.addDockWidget(area, dock)
        dock.visibilityChanged.connect(lambda shown: self.tabs.to_front(dock) if shown else None)
        return dock

    def build_shell(self) -> None:
        """The docks of the window itself (the panels add theirs): runs and run info on the left, system and
        music on the right, events and log below the plots."""
        w = self.window
        w.runs_dock = self.add("Runs", "runs", w.runs_panel, Area.LeftDockWidgetArea)
        # A long workspace path must not widen the column (and narrow the plots): its label is cut instead,
        # the whole path in its tooltip.
        w.runs_panel.folder.setMinimumWidth(80)
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
        # The side columns give up width on a small screen, so the plots keep two columns.
        height = w.height()
        system = self.tabs.wanted(w.system_dock)
        w.resizeDocks([w.runs_dock, w.system_dock], [runs_width(w.width()), system], QtCore.Qt.Orientation.Horizontal)
        w.resizeDocks([w.events_dock], [self.tabs.wanted(w.events_dock)], QtCore.Qt.Orientation.Vertical)
        w.resizeDocks(
            [w.runs_dock, w.info_dock], [int(height * 0.45), int(height * 0.3)], QtCore.Qt.Orientation.Vertical
        )
        self.default_state = w.saveState(LAYOUT_VERSION)
        state = self.settings.value("window/state")
        if state is not None:
            w.restoreState(state, LAYOUT_VERSION)
        # After the tab changes the layout just made have been delivered.
        QtCore.QTimer.singleShot(0, self.tabs.start)

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


class TabSizes:
    """Gives each tab of a dock area its own size when it comes to the front (``TAB_SHARE`` of the window,
    or what the user made it), instead of the size the tab before had."""

    def __init__(self, window: QtWidgets.QMainWindow):
        self.window = window
        self.active = False  # once the layout is made
        self.front: dict[QtCore.Qt.DockWidgetArea, QtWidgets.QDockWidget] = {}
        self._kept: dict[str, int] = {}  # the size to give a tab, by dock name
        self._asked: dict[str, int] = {}  # what resizeDocks was last asked for it
        self._arrived: dict[str, int] = {}  # and the size it then had (resizeDocks counts more than the dock)

    def start(self) -> None:
        self.active = True

    def wanted(self, dock: QtWidgets.QDockWidget) -> int:
        name = _name(dock)
        if name in self._kept:
            return self._kept[name]
        if self._vertical(dock):
            return int(self.window.height() * TAB_SHARE.get(name, 0.25))
        return side_width(name, self.window.width())

    def to_front(self, dock: QtWidgets.QDockWidget) -> None:
        """Keep the size the tab before had (as the user left it), and give this one its own."""
        area = self.window.dockWidgetArea(dock)
        before = self.front.get(area)
        self.front[area] = dock
        if not self.active or before is None or before is dock or dock.isFloating() or before.isFloating():
            return
        if before not in self.window.tabifiedDockWidgets(dock):
            return  # docks side by side: each keeps its own size
        vertical = self._vertical(dock)
        name = _name(before)
        if name in self._arrived:
            # What the user changed, on what was asked for (not on what the dock measures).
            self._kept[name] = self._asked[name] + _size(dock, vertical) - self._arrived[name]
        # Once Qt has finished switching the tabs, which lays the area out again.
        QtCore.QTimer.singleShot(0, lambda: self._resize(dock, vertical))

    def give_size(self, dock: QtWidgets.QDockWidget) -> None:
        """Give ``dock`` its size now: one shown by code, maybe before the first tab switch."""
        self._resize(dock, self._vertical(dock))

    def _resize(self, dock: QtWidgets.QDockWidget, vertical: bool) -> None:
        name, size = _name(dock), self.wanted(dock)
        orientation = QtCore.Qt.Orientation.Vertical if vertical else QtCore.Qt.Orientation.Horizontal
        self.window.resizeDocks([dock], [size], orientation)
        self._asked[name] = size
        QtCore.QTimer.singleShot(0, lambda: self._arrived.__setitem__(name, _size(dock, vertical)))

    def _vertical(self, dock: QtWidgets.QDockWidget) -> bool:
        area = self.window.dockWidgetArea(dock)
        return area in (Area.BottomDockWidgetArea, Area.TopDockWidgetArea)


def _name(dock: QtWidgets.QDockWidget) -> str:
    return dock.objectName().removeprefix("dock_")


def _size(dock: QtWidgets.QDockWidget, vertical: bool) -> int:
    return dock.height() if vertical else dock.width()


def raise_dock(dock: QtWidgets.QDockWidget) -> None:
    dock.show()
    dock.raise_()


def scrolling(widget: QtWidgets.QWidget, vertical_only: bool = True) -> QtWidgets.QScrollArea:
    """``widget`` in a scroll area: a grid that keeps its rows readable grows past the dock."""
    area = QtWidgets.QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
    if vertical_only:
        area.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    area.setMinimumHeight(80)
    return area
