"""Overlaid runs on the dashboard: the open run is never hidden, readouts are raw, markers readable, ranges fresh."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6 import QtGui, QtWidgets
from scripted import metrics_payload, write_run

from engine.contract.events import as_records, read_events
from gui.format import format_value
from gui.models.run_model import RunModel


def _loaded(root) -> RunModel:
    model = RunModel(root)
    model.ingest(read_events(root / "events.jsonl")[0])
    return model


def _lines(plot) -> list[str]:
    doc = QtGui.QTextDocument()
    doc.setHtml(plot.item.titleLabel.text)
    return doc.toPlainText().split("\n")


def _last_raw(root, field: str) -> float:
    """The newest value of ``field`` in the run's events file, as the engine wrote it."""
    lines = (root / "events.jsonl").read_text().splitlines()
    return next(e[field] for e in map(json.loads, reversed(lines)) if e["type"] == "metrics" and field in e)


@pytest.fixture
def shown_dashboard(qtbot):
    """A Dashboard's central area, shown 1800 px wide (three 600 px columns)."""
    from gui.theme import LIGHT
    from gui.widgets.plots import Dashboard

    dashboard = Dashboard(LIGHT)
    qtbot.addWidget(dashboard.view)
    dashboard.view.resize(1800, 900)
    dashboard.view.show()
    yield dashboard
    dashboard.stop()


def _settle(dashboard) -> None:
    QtWidgets.QApplication.processEvents()
    dashboard.redraw_all()
    for plot in dashboard.plots.values():
        plot.item.getViewBox().prepareForPaint()  # auto-ranges settle when painted


@pytest.mark.slow
def test_two_overlays_never_hide_the_open_run_its_legend_names_all_three_and_reads_the_open_runs_values(
    qtbot, workspace, shown_dashboard
):
    first = write_run(workspace / "first-overlay", steps=800, seed=3).root
    second = write_run(workspace / "second-overlay", steps=600, seed=5).root
    live = RunModel(workspace / "open-run")  # the open run has not logged a step yet
    dashboard = shown_dashboard
    dashboard.set_models([live, _loaded(first), _loaded(second)])
    _settle(dashboard)
    loss = dashboard.plots["loss"]
    # Before its first step the open run already has its entry, first, and no overlay's step is read out.
    title = _lines(loss)
    assert title[1].startswith("■ open-run –") and "latest" not in title[0], title
    doc = QtGui.QTextDocument()
    doc.setHtml(dashboard.view.legend.text())
    run_legend = doc.toPlainText().replace("\u2011", "-")  # names break between runs only: non-breaking hyphens
    assert all(name in run_legend for name in ("open-run", "first-overlay", "second-overlay"))
    assert dashboard.view.legend.isVisible()
    # Its first steps arrive after the overlays' curves were made: its values are still the ones read out.
    live.ingest(
        as_records(
            {"v": 1, "type": "metrics", "time": 1000.0 + s, "step": s, **metrics_payload(s, seed=9)}
            for s in range(10, 60, 10)
        )
    )
    _settle(dashboard)
    title = _lines(loss)
    mine = format_value(live.series["metrics/loss"].values[-1])
    assert "latest: step 50" in title[0], title
    assert title[1].startswith(f"■ open-run {mine}"), title
    assert "first-overlay" in title[1] and "second-overlay" in title[1]
    # Each run in its own colour, the open run drawn over the others.
    colours = {c.model.name: c.color.name() for c in loss.curves}
    assert len(set(colours.values())) == 3
    open_line = next(c for c in loss.curves if c.model is live).line
    assert all(open_line.zValue() > c.line.zValue() for c in loss.curves if c.model is not live)


@pytest.mark.slow
def test_latest_reads_the_raw_value_the_events_hold_not_the_smoothed_one(qtbot, finished_run, shown_dashboard):
    dashboard = shown_dashboard
    dashboard.set_smoothing(0.9)
    model = _loaded(finished_run)
    dashboard.set_models([model])
    _settle(dashboard)
    loss = dashboard.plots["loss"]
    train = next(c for c in loss.curves if c.label == "train")
    raw = _last_raw(finished_run, "loss")
    smoothed = float(train.smoothed.values(0.9)[-1])
    assert format_value(raw) != format_value(smoothed)  # else this test could not tell them apart
    title = _lines(loss)
    assert f"train {format_value(raw)}" in title[1] and format_value(smoothed) not in " ".join(title), title
    assert "raw" in loss.item.titleLabel.toolTip() and "smoothed" in loss.item.titleLabel.toolTip()


def test_an_anomaly_markers_tooltip_is_a_readable_summary_not_a_raw_dict(qtbot, shown_dashboard):
    model = RunModel(name="r")
    model.ingest(
        as_records(
            [
                {"v": 1, "type": "metrics", "time": 1000.0 + s, "step": s, **metrics_payload(s)}
                for s in range(0, 400, 10)
            ]
            + [
                {
                    "v": 1,
                    "type": "anomaly",
                    "time": 1300.0,
                    "step": 300,
                    "id": "a1",
                    "kind": "loss_spike",
                    "severity": "warning",
                    "message": "loss rose 3.1 sigma above its EMA",
                    "evidence": {"loss": 2.9173626283761283, "ema": 0.00012345678901234, "window": 50},
                    "suggestion": "lower the LR",
                }
            ]
        )
    )
    dashboard = shown_dashboard
    dashboard.set_models([model])
    _settle(dashboard)
    (_, line), *_ = dashboard.plots["loss"].markers
    tip = line.toolTip().splitlines()
    assert tip[0].startswith("loss_spike · warning · step 300")
    assert "loss = 2.917" in tip and "ema = 1.235e-04" in tip and "window = 50" in tip
    assert "suggestion: lower the LR" in tip
    assert "2.9173626" not in line.toolTip() and "{" not in line.toolTip()


@pytest.mark.slow
def test_opening_another_run_leaves_none_of_the_last_runs_ranges(qtbot, finished_run, workspace, shown_dashboard):
    short = write_run(workspace / "short", steps=200, seed=3).root
    dashboard = shown_dashboard
    dashboard.set_models([_loaded(finished_run)])
    _settle(dashboard)
    loss = dashboard.plots["loss"].item.getViewBox()
    dashboard.show_x(600.0, 700.0)  # zoomed in, as a user's wheel or an alert does
    loss.setYRange(10.0, 20.0)
    model = _loaded(short)
    dashboard.set_models([model])
    _settle(dashboard)
    (x0, x1), (y0, y1) = loss.viewRange()
    assert x0 <= 10 and 200 <= x1 < 400, "the new run's steps, all of them"
    values = np.concatenate([c.series.values for c in dashboard.plots["loss"].curves])
    assert y0 <= values.min() and values.max() <= y1 < 10.0, "the y range fits the new run's loss"
    assert dashboard.follow
