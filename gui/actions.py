"""The window's actions, menus and toolbars.

:func:`build_actions` gives the :class:`~gui.main_window.MainWindow` its ``act_*`` actions (declared
on the window, where tests and the panels find them) and puts them in the menus and toolbars.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtGui, QtWidgets

from gui.theme import THEMES

if TYPE_CHECKING:
    from gui.main_window import MainWindow


def make_action(
    window: QtWidgets.QWidget,
    text: str,
    slot: Callable,
    shortcut: str | None = None,
    tip: str = "",
    checkable: bool = False,
) -> QtGui.QAction:
    action = QtGui.QAction(text, window)
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
    window.addAction(action)
    return action


def build_actions(w: MainWindow) -> None:
    """Create the window's actions, then its menus and toolbars."""

    def a(text: str, slot: Callable, shortcut: str | None = None, tip: str = "", checkable: bool = False):
        return make_action(w, text, slot, shortcut, tip, checkable)

    control = w.control
    w.act_new = a("New run…", control.new_run, "Ctrl+N", "Start a new training run")
    w.act_open = a("Open run…", w.open_run_dialog, "Ctrl+O", "Open a run folder (live or finished, local or mounted)")
    w.act_pause = a("Pause", lambda: control.send("pause"), "Ctrl+P", "Pause the run between steps")
    w.act_resume = a("Resume", lambda: control.send("resume"), "Ctrl+Shift+P", "Resume a paused run")
    w.act_ckpt = a("Save checkpoint", lambda: control.send("save_checkpoint"), "Ctrl+S", "Save a checkpoint now")
    w.act_lr = a("Set LR…", control.set_lr, "Ctrl+L", "Change the peak learning rate of the running schedule")
    w.act_profile = a(
        "Profile next N steps…",
        control.profile_steps,
        None,
        "Record the next steps with torch.profiler (a trace for Perfetto or TensorBoard, "
        "and the top operators in the Events pane)",
    )
    w.act_stop = a(
        "Stop",
        control.stop_run,
        "Ctrl+F2",
        "Stop gracefully: the stop command, then SIGTERM, then SIGKILL if the engine does not end",
    )
    # F5 has one owner (two shortcuts on one key make Qt run neither): it re-reads both lists that can go stale.
    w.act_refresh = a("Refresh", lambda: refresh(w), "F5", "Re-read the runs list and the open run's checkpoints")
    w.act_export = a("Export all plots as CSV…", lambda: export_all_csv(w), "Ctrl+E")
    w.act_screenshot = a("Save window as PNG…", lambda: save_screenshot(w), "Ctrl+Shift+E")
    w.act_theme = a(
        "Dark theme", lambda on: w.apply_theme(THEMES["dark" if on else "light"]), "Ctrl+Shift+T", checkable=True
    )
    w.act_theme.setChecked(w.theme.name == "dark")
    w.act_raw = a("Show raw curves", w.dashboard.set_show_raw, "Ctrl+R", checkable=True)
    w.act_raw.setChecked(w.dashboard.settings.show_raw)
    w.act_reset_layout = a("Reset layout", w.docks.reset)
    w.act_overlay_clear = a("Clear overlays", w.clear_overlays, "Ctrl+Shift+O")
    w.act_fit = a(
        "Show all and follow",
        w.dashboard.fit,
        "Home",
        "Zoom out to all the data and follow new points (after zooming in)",
    )
    w.act_quit = a("Quit", w.close, "Ctrl+Q")
    w.act_x_time = a("X axis: time", lambda on: w.set_x_by("time" if on else "step"), "Ctrl+Shift+X", checkable=True)
    with QtCore.QSignalBlocker(w.act_x_time):  # the saved choice, not a change: the view bar is not built yet
        w.act_x_time.setChecked(w.dashboard.settings.x_by == "time")
    w.act_workspace = a(
        "Open workspace…", w.choose_workspace, None, "List the runs of a folder or of a server over SSH"
    )
    w.dashboard.set_empty_actions([w.act_new, w.act_open])
    _build_menus(w)
    _build_toolbars(w)


def _build_menus(w: MainWindow) -> None:
    menu = w.menuBar()
    file_menu = menu.addMenu("&File")
    for act in (w.act_new, w.act_open, w.act_workspace, None, w.act_export, w.act_screenshot, None, w.act_quit):
        file_menu.addSeparator() if act is None else file_menu.addAction(act)
    run_menu = menu.addMenu("&Run")
    for act in (w.act_pause, w.act_resume, w.act_ckpt, w.act_lr, w.act_profile, None, w.act_stop):
        run_menu.addSeparator() if act is None else run_menu.addAction(act)
    view_menu = menu.addMenu("&View")
    for act in (
        w.act_fit,
        w.dashboard.view.maximise_action,
        w.act_raw,
        w.act_x_time,
        w.act_theme,
        w.act_overlay_clear,
        w.act_refresh,
    ):
        view_menu.addAction(act)
    log_menu = view_menu.addMenu("Log scale (Y)")
    log_menu.aboutToShow.connect(lambda: _fill_log_menu(w, log_menu))
    view_menu.addSeparator()
    for dock in (w.runs_dock, w.info_dock, w.system_dock, w.music_dock, w.events_dock, w.log_dock):
        view_menu.addAction(dock.toggleViewAction())
    view_menu.addAction(w.act_reset_layout)


def _fill_log_menu(w: MainWindow, menu: QtWidgets.QMenu) -> None:
    """Filled as it opens: the plots are built with the first run, music plots as their metrics arrive."""
    menu.clear()
    for key, title, on in w.dashboard.log_scales():
        item = menu.addAction(title)
        item.setCheckable(True)
        item.setChecked(on)
        item.toggled.connect(lambda checked, k=key: w.set_log_y(k, checked))


def _build_toolbars(w: MainWindow) -> None:
    runbar = w.addToolBar("Run")
    runbar.setObjectName("toolbar_run")
    runbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
    for act in (w.act_new, w.act_open, None, w.act_pause, w.act_resume, w.act_ckpt, w.act_lr, w.act_stop):
        runbar.addSeparator() if act is None else runbar.addAction(act)
    for act, name in ((w.act_stop, "stopButton"), (w.act_new, "primaryButton")):
        widget = runbar.widgetForAction(act)
        if widget is not None:
            widget.setObjectName(name)

    viewbar = w.addToolBar("Plots")
    viewbar.setObjectName("toolbar_plots")
    viewbar.addWidget(QtWidgets.QLabel(" Smoothing "))
    w.smoothing = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
    w.smoothing.setRange(0, 99)
    w.smoothing.setFixedWidth(140)
    w.smoothing.setValue(int(round(w.dashboard.settings.smoothing * 100)))
    w.smoothing.setToolTip("Debiased exponential moving average (TensorBoard's); the raw curve stays faint behind")
    w.smoothing_label = QtWidgets.QLabel()
    w.smoothing_label.setMinimumWidth(34)
    w.smoothing.valueChanged.connect(w.set_smoothing)
    viewbar.addWidget(w.smoothing)
    viewbar.addWidget(w.smoothing_label)
    viewbar.addAction(w.act_raw)
    viewbar.addSeparator()
    viewbar.addWidget(QtWidgets.QLabel(" X "))
    w.x_combo = QtWidgets.QComboBox()
    w.x_combo.addItems(["step", "time"])
    w.x_combo.setCurrentText(w.dashboard.settings.x_by)
    w.x_combo.currentTextChanged.connect(w.set_x_by)
    viewbar.addWidget(w.x_combo)
    w.set_smoothing(w.smoothing.value())


def refresh(w: MainWindow) -> None:
    w.watcher.refresh()
    w.panels.checkpoints.refresh()


def export_all_csv(w: MainWindow) -> None:
    name = w.primary.model.name if w.primary else "runs"
    path, _ = QtWidgets.QFileDialog.getSaveFileName(
        w, "Export plots as CSV", str(Path.home() / f"{name}.csv"), "CSV (*.csv)"
    )
    if path:
        curves = [(c.model.name, c.label, c.series) for p in w.dashboard.plots.values() for c in p.curves]
        # A series shown in two plots is written once.
        unique = list({(run, series.name): (run, label, series) for run, label, series in curves}.values())
        from gui.models.export import write_csv

        rows = write_csv(path, unique, w.dashboard.settings.smoothing)
        w.statusBar().showMessage(f"wrote {rows:,} points to {path}", 6000)


def save_screenshot(w: MainWindow, path: str | None = None) -> None:
    if path is None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            w, "Save window as PNG", str(Path.home() / "podium.png"), "PNG (*.png)"
        )
    if path:
        w.dashboard.redraw_all()
        w.grab().save(path)
