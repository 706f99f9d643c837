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


def test_at_1280x720_chart_titles_names_and_axis_labels_fit(qtbot, make_window):
    window = make_window()
    window.resize(1280, 720)
    panel = study_dock.panel_of(window)
    study_dock.open_study(window, "s")  # no such study: the dock and its charts at their real size
    panel.model.update(
        {
            "study": "s",
            "direction": "minimize",
            "metric": "val_loss",
            "trials": [_trial(n, 2.0 - n / 4) for n in range(4)],
        }
    )
    panel._redraw()
    names = {"optim.lr": 0.8, "model.n_layers": 0.2}
    panel.charts.show_importances({"values": names, "method": "fanova", "trials": 4})
    qtbot.waitUntil(lambda: panel.charts.history_plot.isVisible(), timeout=5_000)
    charts = panel.charts
    for plot in (charts.history_plot, charts.inter_plot, charts.parallel_plot):
        title = plot.getPlotItem().titleLabel
        assert title.item.boundingRect().width() <= plot.width(), "the title and its keys are cut"
        assert title.item.boundingRect().height() <= title.size().height() + 1, "a second line is cut"
    left = charts.importance_plot.getPlotItem().getAxis("left")
    need = QtGui.QFontMetrics(left.font()).horizontalAdvance("model.n_layers")
    qtbot.waitUntil(lambda: left.width() >= need, timeout=5_000)  # once the chart's layout has run
    # The parallel axes' end labels lie inside the chart, not above or below it.
    box = charts.parallel_plot.getPlotItem().getViewBox()
    for label in (i for i in charts.parallel.items if i.__class__.__name__ == "TextItem"):
        assert box.viewRect().contains(box.mapFromItemToView(label, label.boundingRect()).boundingRect()), label
