"""Switching the window's theme restyles a study panel that is already built: charts, table, editor."""

from __future__ import annotations

from PySide6 import QtCore, QtGui

from gui.theme import DARK, LIGHT
from gui.widgets import study_dock


def _trial(n: int, v: float, state: str = "COMPLETE", lr: float = 1e-3) -> dict:
    return {"number": n, "state": state, "value": v, "params": {"optim.lr": lr * (n + 1)}, "intermediate": [[1, v]]}


def test_the_dark_theme_restyles_a_built_study_panel(qtbot, make_window):
    window = make_window()
    assert window.theme.name == "light"
    panel = study_dock.panel_of(window)
    panel.model.update(
        {
            "study": "s",
            "direction": "minimize",
            "metric": "val_loss",
            "trials": [_trial(0, 2.0), _trial(1, 1.5), _trial(2, 1.8, "PRUNED"), _trial(3, 1.2)],
        }
    )
    panel._redraw()
    panel.charts.show_importances({"values": {"optim.lr": 1.0}, "method": "fanova", "trials": 3})
    charts = panel.charts

    def looks(theme) -> dict:
        state = panel.table_model.data(panel.table_model.index(0, 1), QtCore.Qt.ItemDataRole.ForegroundRole)
        return {
            "background": charts.history_plot.backgroundBrush().color().name(),
            "best line": charts.history_best.opts["pen"].color().name(),
            "axis": charts.scaling_plot.getPlotItem().getAxis("left").pen().color().name(),
            "bars": charts.importance_bars.opts["brush"].color().name(),
            "state": state.name(),
        }

    def expected(theme) -> dict:
        return {
            "background": QtGui.QColor(theme.plot_bg).name(),
            "best line": QtGui.QColor(theme.palette[2]).name(),
            "axis": QtGui.QColor(theme.axis).name(),
            "bars": QtGui.QColor(theme.palette[0]).name(),
            "state": QtGui.QColor(theme.state_colors["finished"]).name(),
        }

    assert looks(LIGHT) == expected(LIGHT)
    dark = next(a for a in window.findChildren(QtGui.QAction) if a.text() == "Dark theme")
    dark.trigger()  # Ctrl+Shift+T
    assert window.theme is DARK
    assert looks(DARK) == expected(DARK)
    assert panel.setup.space_edit.theme is DARK  # the editor's gutter is painted from it
    dark.trigger()
    assert looks(LIGHT) == expected(LIGHT)
