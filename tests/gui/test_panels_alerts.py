"""Anomaly alerts on a scripted event stream: the rollback shown with the alert, filters, acknowledgement,
badge, notification and the step for the plots."""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import pytest
from PySide6 import QtCore, QtWidgets

from engine.contract.events import EventWriter, read_events
from gui.models.alerts import AlertModel
from gui.theme import LIGHT
from gui.widgets.alerts_panel import AlertsPanel

# Screenshots go to a temporary folder; PODIUM_SCREENSHOTS=docs/screenshots regenerates the docs' copies.
SHOTS = Path(os.environ.get("PODIUM_SCREENSHOTS") or tempfile.gettempdir())
SCREENSHOT = SHOTS / "anomaly_alerts.png"


def scripted_anomalies(path: Path, t0: float | None = None) -> list[dict]:
    """A NaN loss the engine rolled back from, a spike it only reported, a slow data loader, written as the
    engine writes them: the detection, then (for an action) a follow-up with the same id."""
    t0 = time.time() if t0 is None else t0
    with EventWriter(path) as w:
        for step in range(10, 130, 10):
            w.emit("metrics", step, loss=3.0 - step / 100)
        w.emit(
            "anomaly",
            120,
            id="nan-120",
            kind="nonfinite_loss",
            severity="critical",
            message="training loss is NaN at step 120",
            evidence={"loss": math.nan, "last_finite_loss": 1.83, "last_finite_step": 110},
            suggestion="roll back to the last good checkpoint and lower the learning rate",
            action="rollback",
        )
        # As the engine reports it: at the step it went back to, as info, with a message of its own.
        w.emit(
            "anomaly",
            100,
            id="nan-120",
            kind="nonfinite_loss",
            severity="info",
            action="rollback",
            message="rollback after nonfinite_loss: done",
            action_taken={"action": "rollback", "outcome": "done", "to_step": 100, "lr_factor": 0.5},
        )
        w.emit(
            "anomaly",
            140,
            id="spike-140",
            kind="loss_spike",
            severity="warning",
            message="loss 2.9 is 9.1 noise sigmas above its recent level 2.1",
            evidence={"loss": 2.9, "level": 2.1, "z": 9.1},
            suggestion="watch it; lower the LR if it recurs",
            action="alert",
        )
        w.emit(
            "anomaly",
            150,
            id="data-150",
            kind="dataloader_bottleneck",
            severity="info",
            message="38% of step time waiting for data",
            evidence={"data_wait_frac": 0.38},
            suggestion="more loader workers or a faster disk",
            action="alert",
        )
    events, _ = read_events(path)
    # the same events, timed as a live run would have them
    return [e | {"time": t0} if isinstance(e, dict) else e.model_copy(update={"time": t0}) for e in events]


@pytest.fixture
def panel(qtbot):
    widget = AlertsPanel(AlertModel())
    qtbot.addWidget(widget)
    widget.setStyleSheet(LIGHT.style_sheet())
    widget.resize(1300, 420)
    widget.show()
    return widget


def row_texts(panel: AlertsPanel) -> list[dict[str, str]]:
    model = panel.table_model
    headers = [model.headerData(c, QtCore.Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    return [{col: model.index(r, c).data() for c, col in enumerate(headers)} for r in range(model.rowCount())]


def test_an_anomaly_is_shown_with_the_rollback_the_engine_made(qtbot, panel, tmp_path):
    events = scripted_anomalies(tmp_path / "events.jsonl")
    with qtbot.waitSignal(panel.badgeChanged, timeout=1000) as badge:
        panel.ingest(events[:13], live=True)  # the detection, before the engine has acted
    assert badge.args == [1]
    (row,) = row_texts(panel)
    assert row["Severity"] == "● critical" and row["Kind"] == "nonfinite loss" and row["Step"] == "120"
    assert row["Action taken"] == "rollback (pending)" and "loss=nan" in row["Evidence"]
    panel.ingest(events[13:14], live=True)  # the follow-up: what the engine did
    (row,) = row_texts(panel)
    assert row["Action taken"] == "rollback: done, back to step 100, LR ×0.5"
    assert (row["Severity"], row["Step"], row["What happened"]) == (
        "● critical",
        "120",
        "training loss is NaN at step 120",
    )
    assert len(panel.model.alerts) == 1, "a follow-up updates its alert"
    panel.ingest(events[14:], live=True)
    rows = row_texts(panel)
    assert [r["Kind"] for r in rows] == ["dataloader bottleneck", "loss spike", "nonfinite loss"]  # newest first
    assert rows[1]["Action taken"] == "alert only" and rows[1]["Suggestion"].startswith("watch it")
    # Selecting an alert says its step (for the plots) and shows its evidence and action in full.
    with qtbot.waitSignal(panel.stepSelected, timeout=1000) as step:
        panel.table.selectRow(2)
    assert step.args == [120]
    detail = panel.detail.toPlainText()
    assert "rollback: done, back to step 100, LR ×0.5" in detail and "last_finite_loss" in detail


def test_filters_acknowledgement_and_badge(qtbot, panel, tmp_path):
    panel.ingest(scripted_anomalies(tmp_path / "events.jsonl"), live=False)
    assert panel.model.unacknowledged() == 3 and "3 alerts" in panel.count.text()
    panel.severity_buttons["info"].setChecked(False)
    panel.severity_buttons["warning"].setChecked(False)
    assert [r["Kind"] for r in row_texts(panel)] == ["nonfinite loss"] and "1 of 3 shown" in panel.count.text()
    for button in panel.severity_buttons.values():
        button.setChecked(True)
    panel.kind.setCurrentIndex(panel.kind.findData("loss_spike"))
    assert [r["Kind"] for r in row_texts(panel)] == ["loss spike"]
    assert panel.kind.currentText() == "loss spike (1)"
    panel.kind.setCurrentIndex(0)
    panel.table.selectRow(0)
    with qtbot.waitSignal(panel.badgeChanged, timeout=1000) as badge:
        panel.ack_button.click()
    assert badge.args == [2] and panel.model.alerts[2].acknowledged
    with qtbot.waitSignal(panel.badgeChanged, timeout=1000) as badge:
        panel.ack_all_button.click()
    assert badge.args == [0] and not panel.ack_all_button.isEnabled()
    assert "new" not in panel.severity_buttons["critical"].text()


def test_new_alerts_of_a_live_run_are_notified_once_history_is_not(qtbot, panel, tmp_path):
    panel.notifier.available = True  # offscreen has no tray; what would be shown is recorded
    panel.run_name = "smoke"
    old = scripted_anomalies(tmp_path / "old.jsonl", t0=time.time() - 3600)
    panel.ingest(old, live=True)
    assert panel.notifier.sent == [], "alerts read from an old file are history"
    fresh = [
        e.model_copy(update={"id": f"new-{e.id}"})
        for e in scripted_anomalies(tmp_path / "new.jsonl")
        if e["type"] == "anomaly"
    ]
    panel.ingest([e for e in fresh if "action_taken" not in e], live=True)
    ((title, body),) = panel.notifier.sent
    # Critical and warning together in one notification (info is not worth one).
    assert title == "smoke: 2 anomalies" and "nonfinite loss @ 120" in body and "dataloader" not in body


def test_screenshot_of_the_alerts_panel(qtbot, panel, tmp_path):
    panel.ingest(scripted_anomalies(tmp_path / "events.jsonl"), live=False)
    panel.table.selectRow(2)
    panel.model.acknowledge(["data-150"])
    panel.reload()
    QtWidgets.QApplication.processEvents()  # let the layout take the new button texts before grabbing
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert panel.grab().save(str(SCREENSHOT)) and SCREENSHOT.stat().st_size < 300_000


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory, podium_cache) -> Path:
    """A real tiny run whose loss is made NaN at step 7: the engine detects it and rolls back to step 5."""
    from tests.conftest import SMOKE, podium

    run_dir = tmp_path_factory.mktemp("nan") / "nan-run"
    podium(
        "run",
        "-c",
        str(SMOKE),
        "-r",
        str(run_dir),
        "--no-progress",
        "--set",
        "run.max_steps=10",
        "--set",
        "checkpoint.interval=5",
        "--set",
        "run.log_interval=1",
        "--set",
        "run.eval_interval=1000",
        "--set",
        "music.enabled=false",
        "--set",
        "debug.nan_loss_at_steps=[7]",
        check=True,
    )
    return run_dir


@pytest.mark.slow
def test_a_nan_injected_into_a_real_run_shows_with_the_engines_rollback(qtbot, make_window, nan_run):
    window = make_window()
    window.open_run(nan_run)
    alerts = window.panels.alerts
    qtbot.waitUntil(lambda: any(a.action_taken for a in alerts.model.alerts), timeout=10_000)
    (nan,) = [a for a in alerts.model.alerts if a.kind == "nonfinite_loss"]
    row = next(r for r in row_texts(alerts) if r["Kind"] == "nonfinite loss")
    assert row["Severity"] == "● critical" and row["What happened"] == "loss is nan" and "loss=nan" in row["Evidence"]
    assert row["Action taken"] == "rollback: done, back to step 5, LR ×0.5"
    # Selecting it moves the plots to the step where the NaN was seen.
    window.primary.catch_up()
    alerts.select(nan.id)
    assert all(plot.cursor_x == nan.step for plot in window.dashboard.plots.values()) and nan.step >= 7


def test_a_low_dock_still_shows_three_alerts_and_the_details_give_way(qtbot, panel, tmp_path):
    panel.ingest(scripted_anomalies(tmp_path / "events.jsonl"))
    panel.resize(540, 230)  # the bottom dock of a 1366x768 screen
    qtbot.waitUntil(lambda: panel.table.height() >= panel.table_height(3), timeout=2000)
    view = panel.table.viewport()
    for row in range(3):
        rect = panel.table.visualRect(panel.table_model.index(row, 0))
        assert view.rect().contains(rect), f"row {row} is in view without scrolling"
    # A tall dock: the table keeps most of the height, the details the rest.
    panel.resize(540, 700)
    qtbot.waitUntil(lambda: panel.table.height() > 2 * panel.detail.height(), timeout=2000)


def test_at_the_width_of_the_plots_what_was_seen_is_on_screen_and_the_details_show_several_lines(
    qtbot, panel, tmp_path
):
    panel.ingest(scripted_anomalies(tmp_path / "events.jsonl"))
    panel.resize(790, 300)  # the bottom dock under the plots of a 1600x1000 window
    header = panel.table.horizontalHeader()
    titles = [c.title for c in panel.table_model.columns]
    for title in ("Action taken", "What happened"):
        col = titles.index(title)
        qtbot.waitUntil(
            lambda col=col: (
                header.sectionViewportPosition(col) + header.sectionSize(col) <= panel.table.viewport().width()
            ),
            timeout=2000,
        )
        assert header.sectionSize(col) >= 160, title
    panel.table.selectRow(0)
    lines = panel.detail.viewport().height() // panel.detail.fontMetrics().lineSpacing()
    assert lines > 2
