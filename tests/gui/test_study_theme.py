"""Switching the window's theme restyles a study panel that is already built: charts, table, editor; the
charts are each whole and readable in the dock at 1600x1000 and 1280x720 and say what is missing when they have
nothing to draw."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtGui
from scripted import write_run

from gui.main_window import MainWindow
from gui.models.hardware import Hardware
from gui.models.study_model import StudyModel
from gui.theme import DARK, LIGHT
from gui.widgets import study_dock
from gui.widgets.study_charts import StudyCharts
from tests.gui.conftest import _quiet
from tests.gui.test_window import visible_plots


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


@pytest.mark.parametrize("size", [(1600, 1000), (1280, 720)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_each_chart_is_whole_in_the_dock_with_its_title_names_and_axis_labels(qtbot, make_window, size):
    window = make_window()
    window.resize(*size)
    panel = study_dock.panel_of(window)
    study_dock.open_study(window, "s")  # no such study: the dock and its charts at their real size
    trials = [_trial(n, 2.0 - n / 4) for n in range(4)]
    for t in trials:  # five parallel axes with long names, as a real space has
        t["params"] |= {"optim.weight_decay": 0.01 * t["number"], "model.dropout": 0.1, "model.n_layers": t["number"]}
    panel.model.update({"study": "s", "direction": "minimize", "metric": "val_loss", "trials": trials})
    panel._redraw()
    panel.controls.setup_button.setChecked(False)  # as a study opened from the runs list shows
    names = {"optim.lr": 0.8, "model.n_layers": 0.2}
    panel.charts.show_importances({"values": names, "method": "PED-ANOVA", "trials": 4})
    points = [{"params": 1e6, "tokens": 1e7, "loss": 5.0}, {"params": 3e6, "tokens": 1e7, "loss": 4.5}]
    why = "3 finished run(s): fitting E, A, alpha, B, beta needs at least 6 (five parameters plus one to judge the fit)"
    panel.charts.show_scaling({"error": why, "points": points})
    charts, scroll = panel.charts, window.study_dock.widget()
    qtbot.waitUntil(lambda: charts.history_plot.isVisible(), timeout=5_000)
    qtbot.waitUntil(lambda: not scroll.verticalScrollBar().isVisible(), timeout=5_000)  # the dock holds it all
    assert not scroll.horizontalScrollBar().isVisible()
    for plot in (
        charts.history_plot,
        charts.inter_plot,
        charts.parallel_plot,
        charts.importance_plot,
        charts.scaling_plot,
    ):
        charts.setCurrentWidget(plot)
        qtbot.waitUntil(plot.isVisible, timeout=5_000)
        whole = QtCore.QRect(plot.mapTo(scroll.viewport(), QtCore.QPoint(0, 0)), plot.size())
        assert scroll.viewport().rect().contains(whole), f"{charts.tabText(charts.currentIndex())} is cut"
        box = plot.getPlotItem().getViewBox()
        # Room to read it: a few ticks up the side, a few along the bottom.
        qtbot.waitUntil(lambda b=box: b.height() >= 100 and b.width() >= 150, timeout=5_000)
        title = plot.getPlotItem().titleLabel
        assert title.item.boundingRect().width() <= plot.width(), "the title and its keys are cut"
        assert title.item.boundingRect().height() <= title.size().height() + 1, "a second line is cut"
        shown = QtCore.QRectF(plot.rect())
        for name in ("left", "bottom"):
            axis = plot.getPlotItem().getAxis(name)
            if axis.isVisible() and axis.label.isVisible() and axis.labelText:
                margin = axis.label.document().documentMargin()  # blank around the text
                text = axis.label.boundingRect().adjusted(margin, margin, -margin, -margin)
                label = plot.mapFromScene(axis.label.mapRectToScene(text)).boundingRect()
                assert shown.contains(QtCore.QRectF(label)), f"the {name} axis label {axis.labelText!r} is cut"
    left = charts.importance_plot.getPlotItem().getAxis("left")
    need = QtGui.QFontMetrics(left.font()).horizontalAdvance("model.n_layers")
    qtbot.waitUntil(lambda: left.width() >= need, timeout=5_000)  # once the chart's layout has run
    # Why there is no fit, wrapped inside the scaling chart.
    box = charts.scaling_plot.getPlotItem().getViewBox()
    note = charts.scaling_note
    assert why in note.textItem.toPlainText()
    qtbot.waitUntil(lambda: box.sceneBoundingRect().contains(note.sceneBoundingRect()), timeout=5_000)
    # The parallel axes' names side by side without running into each other, and their end labels inside the
    # chart, not above or below it.
    charts.setCurrentWidget(charts.parallel_plot)
    box = charts.parallel_plot.getPlotItem().getViewBox()
    bottom = charts.parallel_plot.getPlotItem().getAxis("bottom")
    advance = QtGui.QFontMetrics(bottom.font()).horizontalAdvance

    def apart() -> bool:  # each name within its axis' share, or within two when every other one is a line lower
        texts = [t for _, t in bottom._tickLevels[0]]
        lines = 2 if any(t.startswith("\n") for t in texts) else 1
        return max(advance(t.strip()) for t in texts) <= lines * box.width() / len(texts)

    qtbot.waitUntil(apart, timeout=5_000)
    box = charts.parallel_plot.getPlotItem().getViewBox()
    for label in (i for i in charts.parallel.items if i.__class__.__name__ == "TextItem"):
        assert box.viewRect().contains(box.mapFromItemToView(label, label.boundingRect()).boundingRect()), label


def test_empty_study_charts_say_what_is_missing_instead_of_blank_axes(qtbot):
    charts = StudyCharts(StudyModel(), LIGHT)
    qtbot.addWidget(charts)
    charts.resize(900, 500)
    charts.show()
    plots = (charts.history_plot, charts.inter_plot, charts.parallel_plot, charts.importance_plot, charts.scaling_plot)

    def axes_shown(plot) -> list[str]:
        return [name for name in ("left", "bottom") if plot.getPlotItem().getAxis(name).isVisible()]

    assert charts.empty[charts.history_plot].text == "No finished trials yet"
    assert charts.empty[charts.inter_plot].text.startswith("No intermediate values yet")
    assert all(charts.empty[p].text for p in plots) and not any(axes_shown(p) for p in plots)
    # One trial still running: it has reported a value along the way, none at the end.
    running = {"number": 0, "state": "RUNNING", "value": None, "params": {"optim.lr": 1e-3}, "intermediate": [[1, 2.0]]}
    charts.model.update({"study": "s", "direction": "minimize", "metric": "val_loss", "trials": [running]})
    charts.redraw()
    assert charts.empty[charts.history_plot].text == "No finished trials yet (1 running)"
    assert charts.empty[charts.inter_plot].text is None and axes_shown(charts.inter_plot) == ["left", "bottom"]
    assert charts.empty[charts.parallel_plot].text == "No finished trials yet (1 running)" and not charts.parallel.items
    # Finished trials: every chart that has them draws them on its axes.
    charts.model.update(
        {
            "study": "s",
            "direction": "minimize",
            "metric": "val_loss",
            "trials": [_trial(n, 2.0 - n / 4) for n in range(3)],
        }
    )
    charts.redraw()
    assert [charts.empty[p].text for p in plots[:3]] == [None, None, None]
    assert axes_shown(charts.history_plot) == ["left", "bottom"] and axes_shown(charts.parallel_plot) == ["bottom"]
    box = charts.history_plot.getPlotItem().getViewBox()
    qtbot.waitUntil(lambda: box.viewRange()[0][1] >= 2, timeout=5_000)  # the trials' numbers, not the empty 0-1
    # The importances' and the fit's answers: bars, or why not in the chart's middle.
    charts.show_importances({"error": "fANOVA needs at least two finished trials"})
    assert charts.empty[charts.importance_plot].text == "fANOVA needs at least two finished trials"
    charts.show_importances({"values": {"optim.lr": 1.0}, "method": "fanova", "trials": 3})
    assert charts.empty[charts.importance_plot].text is None and axes_shown(charts.importance_plot)
    charts.show_scaling({"error": "0 finished run(s): fitting needs at least 6", "points": []})
    assert charts.empty[charts.scaling_plot].text == "No fit: 0 finished run(s): fitting needs at least 6"
    assert not axes_shown(charts.scaling_plot) and not charts.scaling_note.textItem.toPlainText()


def test_at_1280x720_a_study_opens_under_two_rows_of_plots_and_keeps_the_height_the_user_gives_it(
    qtbot, settings, workspace
):
    window = MainWindow(settings, workspace, hardware=lambda: Hardware([], 2, "test"))
    qtbot.addWidget(window, before_close_func=_quiet)
    window.resize(1280, 720)
    window.show()
    qtbot.waitUntil(lambda: window.docks.tabs.active, timeout=5000)
    window.open_run(write_run(workspace / "small-screen", steps=300).root)
    dock = window.study_dock
    study_dock.open_study(window, "s")
    qtbot.waitUntil(lambda: dock.isVisible() and dock.height() > 150, timeout=5000)
    qtbot.waitUntil(lambda: visible_plots(window) >= 4, timeout=5000)  # two rows of two, whole
    assert dock.height() <= 0.45 * window.height()
    # The user makes it taller; it stays so after another tab was in front and when a study is opened again.
    window.resizeDocks([dock], [dock.height() + 150], QtCore.Qt.Orientation.Vertical)
    qtbot.waitUntil(lambda: dock.height() > 0.5 * window.height(), timeout=5000)
    tall = dock.height()
    window.events_dock.raise_()
    qtbot.waitUntil(lambda: window.events_dock.height() < tall - 100, timeout=5000)
    study_dock.open_study(window, "s")
    qtbot.waitUntil(lambda: abs(dock.height() - tall) <= 2, timeout=5000)
