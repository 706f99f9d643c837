"""The window's defects a new user hit: a folder that is not a run, F5, how disabled items and radio buttons
look in each theme, quitting while checkpoints are verified, and Events rows that say which."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from scripted import write_run

from gui.models.hardware import Hardware
from gui.theme import THEMES
from gui.widgets.dialogs import NewRunDialog

RUN_ACTIONS = ("act_pause", "act_resume", "act_ckpt", "act_lr", "act_profile", "act_stop")


def contrast(image: QtGui.QImage, rect: QtCore.QRect) -> int:
    """How far the most distinct pixel of ``rect`` is from its most common one (its background), in lightness."""
    counts: dict[int, int] = {}
    pixels = []
    for y in range(rect.top(), rect.bottom() + 1):
        for x in range(rect.left(), rect.right() + 1):
            p = image.pixel(x, y)
            pixels.append(p)
            counts[p] = counts.get(p, 0) + 1
    background = QtGui.QColor(max(counts, key=counts.__getitem__)).lightness()
    return max(abs(QtGui.QColor(p).lightness() - background) for p in pixels)


# ------------------------------------------------------------------ a folder that is not a run


def test_a_folder_that_is_not_a_run_is_refused_visibly_and_nothing_is_written_into_it(qtbot, make_window, tmp_path):
    window = make_window()
    photos = tmp_path / "holiday-photos"
    photos.mkdir()
    (photos / "beach.jpg").write_bytes(b"\xff\xd8")

    assert window.open_run(photos) is None
    qtbot.waitUntil(window.banner.isVisible, timeout=2000)
    assert "is not a run folder" in window.banner.text.text()
    assert "holiday-photos" in window.banner.text.text()
    assert window.primary is None
    assert window.windowTitle() == "Podium"
    window.update_actions()
    assert [name for name in RUN_ACTIONS if getattr(window, name).isEnabled()] == []
    window.act_stop.trigger()  # a Stop nobody could click writes nothing either
    window.set_overlay(photos, True)
    assert window.overlays == []
    assert sorted(p.name for p in photos.iterdir()) == ["beach.jpg"]


def test_a_non_run_folder_leaves_the_open_run_and_its_plots_as_they_were(qtbot, make_window, workspace, tmp_path):
    window = make_window()
    run = write_run(workspace / "real", steps=300).root
    session = window.open_run(run)
    assert session is not None
    # The reader thread hands the run over; its curves appear once the first batch is applied.
    qtbot.waitUntil(lambda: any(p.curves for p in window.dashboard.plots.values()), timeout=10_000)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert window.open_run(empty) is None
    assert window.banner.isVisible()
    assert window.primary is session
    assert window.windowTitle().startswith("real")
    assert {c.model for p in window.dashboard.plots.values() for c in p.curves} == {session.model}
    assert list(empty.iterdir()) == []
    # Opening a run afterwards clears the notice.
    window.open_run(write_run(workspace / "other", steps=100).root)
    assert not window.banner.isVisible()


# ------------------------------------------------------------------ F5


def test_f5_has_one_owner_that_answers_even_from_the_checkpoint_table(qtbot, make_window, workspace):
    window = make_window()
    f5 = QtGui.QKeySequence("F5")
    owners = [a for a in window.findChildren(QtGui.QAction) if f5 in a.shortcuts()]
    owners += [s for s in window.findChildren(QtGui.QShortcut) if s.key() == f5]
    assert owners == [window.act_refresh]

    fired = []
    ambiguous = []
    window.act_refresh.triggered.connect(lambda: fired.append(True))
    for shortcut in window.findChildren(QtGui.QShortcut):
        shortcut.activatedAmbiguously.connect(lambda: ambiguous.append(True))
    window.activateWindow()
    qtbot.waitUntil(lambda: QtWidgets.QApplication.activeWindow() is window, timeout=3000)
    table = window.panels.checkpoints.table
    window.panels.docks["checkpoints"].raise_()
    table.setFocus()
    qtbot.keyClick(table, QtCore.Qt.Key.Key_F5)
    assert fired == [True] and ambiguous == []


# ------------------------------------------------------------------ themes


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_disabled_menu_items_look_disabled(qtbot, theme):
    host = QtWidgets.QMainWindow()
    qtbot.addWidget(host)
    host.setStyleSheet(THEMES[theme].style_sheet())
    menu = QtWidgets.QMenu(host)
    enabled = menu.addAction("Save checkpoint")
    disabled = menu.addAction("Save checkpoint")
    disabled.setEnabled(False)
    menu.popup(QtCore.QPoint(0, 0))
    qtbot.waitExposed(menu)
    image = menu.grab().toImage()
    on = contrast(image, menu.actionGeometry(enabled).adjusted(4, 2, -4, -2))
    off = contrast(image, menu.actionGeometry(disabled).adjusted(4, 2, -4, -2))
    menu.hide()
    assert on > 120  # readable
    assert off < on * 0.6, (on, off)  # and the disabled one visibly fainter


def test_the_dark_new_run_dialog_shows_both_radio_buttons(qtbot, tmp_path):
    host = QtWidgets.QMainWindow()
    qtbot.addWidget(host)
    host.setStyleSheet(THEMES["dark"].style_sheet())
    dialog = NewRunDialog(tmp_path, Hardware([], 2, "test"), Path("resources/default.yaml"), parent=host)
    dialog.show()
    qtbot.waitExposed(dialog)
    for radio in (dialog.use_default, dialog.use_file):
        image = radio.grab().toImage()
        indicator = QtCore.QRect(0, 0, 18, image.height())  # left of the label
        assert contrast(image, indicator) > 60, radio.text()
    checked = contrast(dialog.use_default.grab().toImage(), QtCore.QRect(4, 4, 8, 8))
    unchecked = contrast(dialog.use_file.grab().toImage(), QtCore.QRect(4, 4, 8, 8))
    assert checked > unchecked  # the chosen one is filled
    dialog.close()


# ------------------------------------------------------------------ quitting


def test_closing_the_window_waits_for_the_checkpoint_verifier_thread(qtbot, make_window, monkeypatch):
    window = make_window()
    verifier = window.panels.checkpoints.verifier
    hashed = []

    def slow_verify(path):
        time.sleep(0.2)
        hashed.append(path)
        return None, None

    monkeypatch.setattr(verifier, "verify", slow_verify)
    verifier.start([Path(f"/nowhere/step-{i}") for i in range(50)])
    qtbot.waitUntil(lambda: bool(hashed), timeout=3000)
    window.close()
    # The thread ended with the window (after the file it was on), not on its own later into a dead object.
    assert not verifier.busy
    assert len(hashed) < 50


# ------------------------------------------------------------------ events rows


def test_events_rows_name_the_checkpoint_and_sample_and_the_set_lr_peaks(qtbot, make_window, workspace):
    run = write_run(workspace / "named", steps=1000).root
    t = time.time()
    lines = [
        {"type": "checkpoint_removed", "step": 1000, "path": "checkpoints/step-000500", "reason": "retention"},
        {"type": "control_ack", "step": 1000, "id": "c1", "cmd": "set_lr", "outcome": "done", "old_peak_lr": 3e-3,
         "new_peak_lr": 3e-4},
    ]  # fmt: skip
    with open(run / "events.jsonl", "a") as f:
        for line in lines:
            f.write(json.dumps({"v": 1, "time": t, **line}) + "\n")
    window = make_window()
    window.open_run(run)
    table = window.events_view.table
    qtbot.waitUntil(lambda: table.topLevelItemCount() > 0, timeout=5000)
    rows = [table.topLevelItem(i).text(3) for i in range(table.topLevelItemCount())]  # type: ignore[union-attr]
    assert any(r.startswith("checkpoint step-000500 ") for r in rows), rows
    assert "checkpoint removed step-000500" in rows
    assert any(r.startswith("samples at step 500: step-500.mid") for r in rows)
    assert any("set_lr" in r and "0.003 -> 0.0003" in r for r in rows)


# ------------------------------------------------------------------ layout


@pytest.fixture
def window_at(qtbot, settings, workspace):
    """A MainWindow first shown at a given size (the default layout is made for the size it first shows at)."""
    from gui.main_window import MainWindow

    def make(width: int, height: int):
        window = MainWindow(settings, workspace, hardware=lambda: Hardware([], 2, "test"))
        qtbot.addWidget(window)
        window.resize(width, height)
        window.show()
        qtbot.waitUntil(lambda: window.docks.tabs.active, timeout=5000)
        return window

    return make


def visible_plots(window) -> int:
    grid = window.dashboard.training
    viewport = grid.parentWidget()  # of the scroll area the grid scrolls in
    seen = QtCore.QRect(grid.mapFrom(viewport, QtCore.QPoint(0, 0)), viewport.size())
    count = 0
    for plot in window.dashboard.plots.values():
        if plot.item.isVisible() and plot.item.scene() is grid.scene():
            rect = grid.mapFromScene(plot.item.sceneBoundingRect()).boundingRect()
            count += seen.adjusted(-2, -2, 2, 2).contains(rect)
    return count


def test_at_1280x720_the_plots_keep_two_columns(qtbot, window_at, workspace):
    window = window_at(1280, 720)
    window.open_run(write_run(workspace / "small-screen", steps=300).root)
    qtbot.waitUntil(lambda: visible_plots(window) >= 4, timeout=5000)


def test_each_bottom_tab_gets_its_own_height_and_keeps_the_one_the_user_gave_it(qtbot, window_at):
    window = window_at(1600, 1000)
    config, alerts, events = window.panels.docks["config"], window.panels.docks["alerts"], window.events_dock
    config.raise_()
    qtbot.waitUntil(lambda: config.height() > 350, timeout=5000)  # a form and its YAML
    events.raise_()
    # The event feed is a strip again: the plots get the height back.
    qtbot.waitUntil(lambda: events.height() < 230, timeout=5000)
    alerts.raise_()
    qtbot.waitUntil(lambda: 250 < alerts.height() < 350, timeout=5000)
    # The user makes the alerts taller; they stay so after another tab was in front.
    window.resizeDocks([alerts], [alerts.height() + 150], QtCore.Qt.Orientation.Vertical)
    qtbot.waitUntil(lambda: alerts.height() > 400, timeout=5000)
    tall = alerts.height()
    events.raise_()
    qtbot.waitUntil(lambda: events.height() < 230, timeout=5000)
    alerts.raise_()
    qtbot.waitUntil(lambda: abs(alerts.height() - tall) <= 2, timeout=5000)


def test_the_config_editor_at_1600x1000_wraps_its_comments_and_shows_several_fields(qtbot, window_at):
    window = window_at(1600, 1000)
    window.panels.docks["config"].raise_()
    qtbot.waitUntil(lambda: window.panels._config is not None, timeout=10_000)
    editor = window.panels.config
    qtbot.waitUntil(lambda: window.panels.docks["config"].height() > 400, timeout=5000)
    yaml = editor.editor
    assert "#" in yaml.toPlainText()
    assert yaml.horizontalScrollBar().maximum() == 0  # every comment readable without scrolling sideways
    form = editor.form
    view = form.scroll_area.viewport()
    seen = QtCore.QRect(QtCore.QPoint(0, 0), view.size())

    def fields_in_view() -> int:
        return sum(
            seen.contains(QtCore.QRect(row.editor.mapTo(view, QtCore.QPoint(0, 0)), row.editor.size()))
            for row in form.rows.values()
            if row.editor.isVisible()
        )

    qtbot.waitUntil(lambda: fields_in_view() > 3, timeout=5000)


def test_a_window_whose_saved_x_axis_is_time_starts_on_time(make_window, settings):
    settings.setValue("plots/x_by", "time")
    window = make_window()
    assert window.act_x_time.isChecked() and window.x_combo.currentText() == "time"
    assert window.dashboard.settings.x_by == "time"
