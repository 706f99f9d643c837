"""Finding a metric on the dashboard: the regex filter, pinned plots, one plot maximised, and the empty state."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from scripted import write_run

from engine.contract.events import read_events
from gui.models.run_model import RunModel


def _loaded(root) -> RunModel:
    model = RunModel(root)
    model.ingest(read_events(root / "events.jsonl")[0])
    return model


def _shown(grid) -> list[str]:
    """The keys of the plots the grid lays out, in order, each one visible."""
    keys = [p.spec.key for p in grid.shown]
    assert all(grid.plots[[q.spec.key for q in grid.plots].index(k)].item.isVisible() for k in keys)
    return keys


@pytest.mark.slow
def test_the_metric_filter_shows_the_plots_that_match_and_says_when_the_regex_is_bad(qtbot, make_window, finished_run):
    window = make_window()
    window.open_run(finished_run)
    dashboard = window.dashboard
    # The whole run read: system samples arrive in their own batches, after the first metrics.
    qtbot.waitUntil(
        lambda: bool(dashboard.plots["memory"].curves) and dashboard.view.search.isVisible(), timeout=10_000
    )
    every = _shown(dashboard.training)
    qtbot.keyClicks(dashboard.view.search, "grad|^lr")
    # By title ("Grad norm") and by series name (metrics/lr), in every grid.
    assert _shown(dashboard.training) == ["lr", "grad_norm"]
    assert _shown(dashboard.system) == []
    assert "2 plots match" in dashboard.view.message.text()
    dashboard.view.search.setText("tokens(")
    assert "Bad regex: missing )" in dashboard.view.message.text() and dashboard.view.message.isVisible()
    assert _shown(dashboard.training) == ["lr", "grad_norm"], "the last valid filter stays"
    dashboard.view.search.setText("rss")  # a series' name: the memory plot of a CPU run
    assert _shown(dashboard.training) == [] and _shown(dashboard.system) == ["memory"]
    assert "Bad regex" not in dashboard.view.message.text()
    qtbot.keyClick(dashboard.view.search, QtCore.Qt.Key.Key_Escape)
    assert dashboard.view.search.text() == ""
    assert _shown(dashboard.training) == every and dashboard.view.message.text() == ""


@pytest.mark.slow
def test_a_pinned_plot_goes_first_and_stays_pinned_in_the_next_window(qtbot, make_window, finished_run):
    window = make_window()
    window.open_run(finished_run)
    dashboard = window.dashboard
    qtbot.waitUntil(lambda: bool(_shown(dashboard.training)), timeout=10_000)  # laid out once all are bound
    assert _shown(dashboard.training)[0] == "loss"
    dashboard.plots["step_time"].pin_action.trigger()  # the plot's right-click menu
    assert _shown(dashboard.training)[:2] == ["step_time", "loss"]
    dashboard.redraw_all()
    assert "★ Step time" in dashboard.plots["step_time"].item.titleLabel.text
    second = make_window()  # the same settings: as after a restart
    second.open_run(finished_run)
    qtbot.waitUntil(lambda: bool(_shown(second.dashboard.training)), timeout=10_000)
    assert _shown(second.dashboard.training)[0] == "step_time"
    assert second.dashboard.plots["step_time"].pin_action.isChecked()
    second.dashboard.plots["step_time"].pin_action.trigger()
    assert _shown(second.dashboard.training)[0] == "loss"


def _double_click(widget: QtWidgets.QWidget, at: QtCore.QPoint) -> None:
    """What a mouse's double click sends a widget (QTest's adds a second press, which pyqtgraph reads as a click)."""
    left, none = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.MouseButton.NoButton
    kinds = QtCore.QEvent.Type
    for kind in (kinds.MouseButtonPress, kinds.MouseButtonRelease, kinds.MouseButtonDblClick, kinds.MouseButtonRelease):
        held = none if kind == kinds.MouseButtonRelease else left
        event = QtGui.QMouseEvent(
            kind,
            QtCore.QPointF(at),
            QtCore.QPointF(widget.mapToGlobal(at)),
            left,
            held,
            QtCore.Qt.KeyboardModifier.NoModifier,
        )
        QtWidgets.QApplication.sendEvent(widget, event)


@pytest.mark.slow
def test_a_double_click_maximises_a_plot_and_the_key_brings_them_all_back(qtbot, make_window, finished_run):
    window = make_window()
    window.open_run(finished_run)
    dashboard = window.dashboard
    grid = dashboard.training
    qtbot.waitUntil(lambda: "grad_norm" in _shown(grid), timeout=10_000)
    every = _shown(grid)
    QtWidgets.QApplication.processEvents()
    centre = grid.mapFromScene(dashboard.plots["grad_norm"].item.sceneBoundingRect().center())
    _double_click(grid.viewport(), centre)
    assert _shown(grid) == ["grad_norm"] and grid.single
    assert "Maximised" in dashboard.view.message.text()
    QtWidgets.QApplication.processEvents()
    assert dashboard.plots["grad_norm"].item.sceneBoundingRect().height() > 0.8 * grid.viewport().height()
    # One action answers the key, the only one in the window that claims it (no ambiguous shortcut).
    action = dashboard.view.maximise_action
    key = action.shortcut()
    claims = [a for w in [window, *window.findChildren(QtWidgets.QWidget)] for a in w.actions() if a.shortcut() == key]
    assert key.toString() == "F11" and set(claims) == {action}
    action.trigger()
    assert _shown(grid) == every and not grid.single
    # The key over a plot maximises that one.
    dashboard.hovered = "step_time"
    action.trigger()
    assert _shown(grid) == ["step_time"]
    action.trigger()
    assert _shown(grid) == every


def test_the_empty_window_offers_to_open_or_start_a_run_instead_of_empty_axes(
    qtbot, make_window, finished_run, monkeypatch
):
    window = make_window()
    view = window.dashboard.view
    qtbot.waitUntil(view.isVisible, timeout=5000)
    assert view.stack.currentWidget() is view.empty and view.empty.title.text() == "Open a run or start one"
    buttons = {b.text(): b for b in view.empty.findChildren(QtWidgets.QPushButton) if b.isVisible()}
    assert set(buttons) == {"New run…", "Open run…"}
    assert not window.dashboard.training.isVisible()
    assert not any(p.item.isVisible() for p in window.dashboard.plots.values()), "no axes without data"
    asked = []
    monkeypatch.setattr(
        QtWidgets.QFileDialog,
        "getExistingDirectory",
        staticmethod(lambda *a, **k: asked.append(a) or str(finished_run)),
    )
    buttons["Open run…"].click()
    assert asked and window.primary is not None
    qtbot.waitUntil(lambda: view.stack.currentWidget() is view.plots_area, timeout=10_000)
    assert window.dashboard.training.isVisible() and window.dashboard.plots["loss"].item.isVisible()


def test_a_run_without_metrics_yet_says_so_instead_of_empty_axes(qtbot, make_window, workspace):
    run = write_run(workspace / "quiet", steps=0, samples=False, anomalies=False, end=None).root
    window = make_window()
    window.open_run(run)
    view = window.dashboard.view
    qtbot.waitUntil(lambda: "quiet" in view.empty.title.text(), timeout=10_000)
    assert view.stack.currentWidget() is view.empty and "No metrics" in view.empty.title.text()
    assert not any(b.isVisible() for b in view.empty.findChildren(QtWidgets.QPushButton))
