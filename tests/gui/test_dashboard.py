"""Widgets on scripted event streams: plots, markers, readout, export, runs list, status, dialogs."""

from __future__ import annotations

import csv
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from scripted import REFERENCE, loss_at, metrics_payload, music_metrics, quality_at, write_run

from engine.contract.events import as_records
from gui.format import format_duration, format_value
from gui.models.hardware import Hardware
from gui.models.run_model import RunModel
from gui.widgets.dialogs import NewRunDialog, SetLrDialog

# Screenshots go to a temporary folder; PODIUM_SCREENSHOTS=docs/screenshots regenerates the docs' copies.
MUSIC_SHOT = Path(os.environ.get("PODIUM_SCREENSHOTS") or tempfile.gettempdir()) / "music_metrics.png"


def _wait_loaded(qtbot, window, session):
    qtbot.waitUntil(lambda: session.reader.offset > 0 and not session.reader.behind, timeout=10_000)
    qtbot.waitUntil(
        lambda: window.dashboard.is_current() and bool(window.dashboard.plots["loss"].curves), timeout=10_000
    )


@pytest.mark.slow
def test_finished_run_fills_every_fixed_plot_with_every_point(qtbot, make_window, finished_run):
    window = make_window()
    session = window.open_run(finished_run)
    _wait_loaded(qtbot, window, session)
    plots = window.dashboard.plots
    for key in (
        "loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "samples_per_s",
        "step_time",
        "data_wait",
        "rank_work_time",
        "memory",
        "host",
        "rank_cpu",
    ):
        assert plots[key].curves, key
    assert {c.label for c in plots["loss"].curves} == {"train", "val"}
    train = next(c for c in plots["loss"].curves if c.label == "train")
    x, y = train.line.getOriginalDataset()
    assert len(x) == 100  # nothing resampled away before pyqtgraph's own peak downsampling
    assert plots["gpu_util"].item.isVisible() is False  # CPU run: no GPU plot
    # The NaN at step 500 is a marker on the curve, not a silent gap.
    bx, by = train.bad.getData()
    assert list(bx) == [500.0] and math.isfinite(by[0])
    # Musical metrics got plots of their own, the quality score first.
    assert window.dashboard.music.plots[0].spec.key == "music:quality_score"
    assert {"music:pitch_class_entropy", "music:note_density"} <= set(plots)
    # The anomaly shows as a vertical marker with its text as tooltip, on every plot.
    marker, line = plots["loss"].markers[0]
    assert marker.kind == "anomaly" and "loss_spike" in line.toolTip()
    assert all(p.markers for p in plots.values())


@pytest.mark.slow
def test_the_empty_window_paints_before_any_plot_is_built_and_a_log_scale_chosen_before_holds(
    qtbot, make_window, settings, finished_run
):
    settings.setValue("plots/log_y/lr", True)  # remembered from an earlier session
    window = make_window()
    window.resize(1280, 720)
    window.show()
    window.repaint()
    assert window.dashboard.plots == {}  # the empty state paints without a single PlotItem
    window.set_log_y("memory", True)  # from the View menu, no plot built yet
    window.set_x_by("time")
    qtbot.waitUntil(lambda: len(window.dashboard.plots) == 13, timeout=10_000)  # built while idle
    log_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View").actions()
    log_menu = next(a.menu() for a in log_menu if a.menu() and a.text() == "Log scale (Y)")
    log_menu.aboutToShow.emit()
    checked = {a.text(): a.isChecked() for a in log_menu.actions()}
    assert checked["Learning rate"] and checked["Memory per rank (MB)"] and not checked["Loss"]
    session = window.open_run(finished_run)
    _wait_loaded(qtbot, window, session)
    plots = window.dashboard.plots
    assert plots["lr"].item.ctrl.logYCheck.isChecked() and plots["memory"].item.ctrl.logYCheck.isChecked()
    assert not plots["loss"].item.ctrl.logYCheck.isChecked()
    assert plots["loss"].axis.by == "time"
    plots["loss"].log_action.setChecked(True)  # from the plot's own menu: the View menu agrees
    log_menu.aboutToShow.emit()
    assert {a.text(): a.isChecked() for a in log_menu.actions()}["Loss"]


@pytest.mark.slow
def test_smoothing_raw_curve_log_y_and_time_axis(qtbot, make_window, finished_run):
    window = make_window()
    session = window.open_run(finished_run)
    _wait_loaded(qtbot, window, session)
    train = next(c for c in window.dashboard.plots["loss"].curves if c.label == "train")
    window.smoothing.setValue(90)
    qtbot.waitUntil(lambda: train.drawn is not None and train.drawn[1] == 0.9, timeout=5000)
    _, smooth = train.line.getOriginalDataset()
    _, raw = train.raw.getOriginalDataset()
    finite = np.isfinite(raw)
    assert np.nanstd(np.diff(smooth[finite])) < np.std(np.diff(raw[finite]))  # smoothed is smoother
    window.act_raw.setChecked(False)
    qtbot.waitUntil(
        lambda: train.raw.getOriginalDataset()[0] is None or len(train.raw.getOriginalDataset()[0]) == 0, timeout=5000
    )
    window.smoothing.setValue(0)
    qtbot.waitUntil(lambda: train.drawn[1] == 0.0, timeout=5000)
    assert np.array_equal(train.line.getOriginalDataset()[1], train.series.values, equal_nan=True)
    window.set_log_y("loss", True)
    assert window.dashboard.plots["loss"].item.ctrl.logYCheck.isChecked()
    window.set_x_by("time")
    qtbot.waitUntil(lambda: train.drawn[2] == "time", timeout=5000)
    assert train.line.getOriginalDataset()[0][-1] == pytest.approx(train.series.times[-1])
    marker, line = window.dashboard.plots["loss"].markers[0]
    assert line.value() == pytest.approx(marker.t)
    assert window.settings.value("plots/x_by") == "time"


def _axis_image(axis) -> QtGui.QImage:
    rect = axis.sceneBoundingRect()
    image = QtGui.QImage(int(rect.width()), int(rect.height()), QtGui.QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QtGui.QPainter(image)
    axis.scene().render(painter, QtCore.QRectF(image.rect()), rect)
    painter.end()
    return image


def test_bottom_axes_that_share_a_tick_layout_draw_what_each_would_work_out_alone(
    qtbot, make_window, finished_run, monkeypatch
):
    from gui.widgets.plots.metric_plot import ElapsedAxis

    window = make_window()
    window.resize(1600, 1000)
    window.show()
    session = window.open_run(finished_run)
    _wait_loaded(qtbot, window, session)
    axes = [p.axis for p in window.dashboard.training.shown]
    assert len(axes) >= 4
    for by in ("step", "time"):
        window.set_x_by(by)
        qtbot.waitUntil(lambda: window.dashboard.is_current(), timeout=10_000)
        shared = [_axis_image(a) for a in axes]
        monkeypatch.setattr(ElapsedAxis, "_SHARED_MAX", 0)  # each works its ticks out alone
        ElapsedAxis._shared_specs.clear()
        for axis in axes:
            axis.picture = None
        alone = [_axis_image(a) for a in axes]
        monkeypatch.undo()
        assert all(a == b for a, b in zip(shared, alone, strict=True)), by
        assert len({a.size().width() for a in axes}) < len(axes), "some axes share a size (and a layout)"
        assert any(img != QtGui.QImage(img.size(), img.format()) for img in alone)


def test_a_plots_curves_keep_their_colours_and_legend_order_whatever_order_their_series_arrive_in(
    qtbot, make_window, workspace
):
    from scripted import CONFIG, ENV, system_payload

    from engine.contract.events import EventWriter

    colours = {}
    for cpu_first in (True, False):
        run = workspace / f"cpu-first-{cpu_first}"
        run.mkdir()
        w = EventWriter(run / "events.jsonl")
        w.emit("run_start", 0, config=CONFIG, env=ENV, total_steps=100)
        first = system_payload(1)
        if not cpu_first:
            first["host_cpu_percent"] = None  # psutil's first CPU reading can be missing
        w.emit("system", 1, **first)
        w.emit("system", 2, **system_payload(2))
        window = make_window()
        session = window.open_run(run)
        host = window.dashboard.plots["host"]
        qtbot.waitUntil(
            lambda host=host, window=window: len(host.curves) == 2 and window.dashboard.is_current(), timeout=10_000
        )
        assert [c.label for c in host.curves] == ["CPU", "RAM"], "the legend reads in the plot's order"
        colours[cpu_first] = [c.color.name() for c in host.curves]
        session.close()
    assert colours[True] == colours[False] and len(set(colours[True])) == 2


@pytest.mark.slow
def test_crosshair_readout_names_values_and_nan(qtbot, make_window, finished_run):
    window = make_window()
    session = window.open_run(finished_run)
    _wait_loaded(qtbot, window, session)
    window.smoothing.setValue(0)
    window.dashboard.set_cursor(500.0)
    window.dashboard.tick()
    title = window.dashboard.plots["loss"].item.titleLabel.text
    assert "step 500" in title and "NaN" in title
    window.dashboard.set_cursor(300.0)
    window.dashboard.tick()
    value = session.model.series["metrics/loss"].values[29]
    assert format_value(value) in window.dashboard.plots["loss"].item.titleLabel.text
    assert all(p.cursor.isVisible() for p in window.dashboard.training.plots)


@pytest.mark.slow
def test_a_zoom_with_the_wheel_shows_every_grid_the_same_steps_and_stops_following(qtbot, make_window, finished_run):
    window = make_window()
    session = window.open_run(finished_run)
    _wait_loaded(qtbot, window, session)
    dashboard = window.dashboard
    grid = dashboard.training
    view = dashboard.plots["loss"].item.getViewBox()
    before = view.viewRange()[0]
    at = grid.mapFromScene(view.sceneBoundingRect().center())
    wheel = QtGui.QWheelEvent(
        QtCore.QPointF(at),
        QtCore.QPointF(grid.viewport().mapToGlobal(at)),
        QtCore.QPoint(0, 0),
        QtCore.QPoint(0, 240),
        QtCore.Qt.MouseButton.NoButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
        QtCore.Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtWidgets.QApplication.sendEvent(grid.viewport(), wheel)
    zoomed = view.viewRange()[0]
    assert zoomed[1] - zoomed[0] < 0.9 * (before[1] - before[0])
    assert not dashboard.follow
    for key in ("grad_norm", "memory", "host"):  # the same grid and the System grid
        assert dashboard.plots[key].item.getViewBox().viewRange()[0] == pytest.approx(zoomed)
    dashboard.fit()
    assert dashboard.follow and dashboard.plots["memory"].item.getViewBox().viewRange()[0] == pytest.approx(
        view.viewRange()[0]
    )


def _metrics(n: int, first_step: int = 0, every: int = 1) -> list[dict]:
    return as_records(
        {"v": 1, "type": "metrics", "time": 1000.0 + i, "step": first_step + i * every, "loss": 1.0 + i * 1e-3}
        for i in range(n)
    )


def test_view_all_from_a_plots_menu_fits_every_grid_and_follows_again(qtbot, make_window):
    window = make_window()
    model = RunModel(name="r")
    model.ingest(_metrics(10_000, every=10))
    dashboard = window.dashboard
    dashboard.set_models([model])
    dashboard.redraw_all()
    dashboard.show_x(20_000.0, 30_000.0)  # as focusing on an alert's step does
    view = dashboard.plots["loss"].item.getViewBox()
    view.menu.viewAll.trigger()
    assert dashboard.follow and view.viewRange()[0][1] >= 99_990  # the curves hold only the view: not its bounds
    assert dashboard.plots["memory"].item.getViewBox().viewRange()[0] == pytest.approx(view.viewRange()[0])


def test_a_music_plot_made_while_zoomed_shows_the_zoomed_steps(qtbot, make_window):
    window = make_window()
    window.music_dock.raise_()
    model = RunModel(name="r")
    model.ingest(_metrics(1000, every=10))
    dashboard = window.dashboard
    dashboard.set_models([model])
    dashboard.redraw_all()
    dashboard.show_x(2000.0, 3000.0)
    model.ingest(
        as_records([{"v": 1, "type": "eval", "time": 2000.0, "step": 2500, "val_loss": 1.0, "note_density": 4.2}])
    )
    qtbot.waitUntil(lambda: "music:note_density" in dashboard.plots, timeout=5000)
    assert dashboard.plots["music:note_density"].item.getViewBox().viewRange()[0] == pytest.approx([2000.0, 3000.0])


def test_the_followed_range_settles_when_steps_start_late(qtbot, make_window):
    window = make_window()
    model = RunModel(name="r")
    model.ingest(_metrics(500, first_step=100_000))  # resumed at step 100,000
    dashboard = window.dashboard
    dashboard.set_models([model])
    dashboard.redraw_all()
    assert not dashboard._follow(dashboard.training), "a settled range is left alone, not reset every frame"


def test_nan_markers_sit_where_the_curve_broke_off():
    from gui.models.series import Series
    from gui.widgets.plots.curve import marker_heights

    series = Series("metrics/loss")
    series.extend([0, 1, 2, 3], [0, 1, 2, 3], [math.nan, math.nan, 2.0, 3.0])
    series.extend([4, 5, 6, 7], [4, 5, 6, 7], [math.nan, math.inf, 5.0, math.nan])
    bad = series.nonfinite_index()
    assert list(bad) == [0, 1, 4, 5, 7]
    # Leading ones at the first finite value, the others at the last finite value before them.
    assert list(marker_heights(series.values, bad)) == [2.0, 2.0, 3.0, 3.0, 5.0]
    series.purge_after(5)  # a restart resumed at step 5
    assert list(series.nonfinite_index()) == [0, 1, 4, 5]


@pytest.mark.slow
def test_export_png_and_csv(qtbot, make_window, finished_run, tmp_path):
    window = make_window()
    session = window.open_run(finished_run)
    _wait_loaded(qtbot, window, session)
    png, table = tmp_path / "loss.png", tmp_path / "loss.csv"
    window.dashboard.export("loss", str(png))
    assert png.stat().st_size > 5000
    rows = window.dashboard.export("loss", str(table))
    with open(table) as f:
        lines = list(csv.DictReader(f))
    assert rows == len(lines) == 100 + 10  # every train point and every validation point
    assert sum(1 for r in lines if r["value"] == "nan") == 1


@pytest.mark.slow
def test_overlay_draws_each_run_in_its_own_color(qtbot, make_window, finished_run, workspace):
    other = write_run(workspace / "other", steps=600, seed=3).root
    window = make_window()
    window.open_run(finished_run)
    window.set_overlay(other, True)
    loss = window.dashboard.plots["loss"]
    qtbot.waitUntil(lambda: len(loss.curves) == 4, timeout=10_000)
    colors = {c.model.name: c.color.name() for c in loss.curves}
    assert len(set(colors.values())) == 2
    window.set_overlay(other, False)
    assert len(loss.curves) == 2


@pytest.mark.slow
def test_music_plots_show_each_metric_against_the_corpus_and_the_quality_score_first(qtbot, make_window, finished_run):
    window = make_window()
    window.music_dock.raise_()
    session = window.open_run(finished_run)
    _wait_loaded(qtbot, window, session)
    window.smoothing.setValue(0)
    dashboard = window.dashboard
    qtbot.waitUntil(lambda: dashboard.is_current() and len(dashboard.music.plots) == 3, timeout=10_000)
    assert [p.spec.key for p in dashboard.music.plots] == [
        "music:quality_score",
        "music:pitch_class_entropy",
        "music:note_density",
    ]
    rounds = list(range(100, 1001, 100))
    # Each metric over the sampling rounds, the corpus mean as a dashed line over a band of ± one std.
    pce = dashboard.plots["music:pitch_class_entropy"]
    (curve,) = pce.curves
    qtbot.waitUntil(lambda: curve.drawn[1] == 0.0, timeout=5000)
    x, y = curve.line.getOriginalDataset()
    assert list(x) == rounds and list(y) == pytest.approx([music_metrics(s)["pitch_class_entropy"] for s in rounds])
    assert pce.ref_line.isVisible() and pce.ref_line.value() == pytest.approx(2.9)
    assert pce.ref_band.isVisible() and pce.ref_band.getRegion() == pytest.approx((2.7, 3.1))
    low, high = pce.item.getViewBox().viewRange()[1]
    assert low <= min(y) and high >= 3.1, "the curve and the whole band are in view"
    assert dashboard.plots["music:note_density"].ref_line.value() == pytest.approx(REFERENCE["note_density"]["mean"])
    # The quality score, from the sampling rounds and the validation passes, against the corpus's 1.
    quality = dashboard.plots["music:quality_score"]
    assert {c.label: list(c.series.values) for c in quality.curves} == {
        "samples": pytest.approx([quality_at(s) for s in rounds]),
        "validation": pytest.approx([quality_at(s) for s in rounds]),
    }
    assert quality.ref_line.value() == 1.0 and not quality.ref_band.isVisible()
    assert "corpus 1<" in quality.item.titleLabel.text
    # The readout gives the value under the crosshair next to the corpus's.
    dashboard.set_cursor(400.0)
    dashboard.tick()
    title = pce.item.titleLabel.text
    assert "step 400" in title and format_value(music_metrics(400)["pitch_class_entropy"]) in title
    assert "corpus 2.9 ± 0.2" in title
    # The run's anomaly marks these plots too.
    assert [m.kind for m, _ in pce.markers] == ["anomaly"]
    MUSIC_SHOT.parent.mkdir(parents=True, exist_ok=True)
    assert window.music_dock.grab().save(str(MUSIC_SHOT)) and MUSIC_SHOT.stat().st_size < 300_000
    # On a log scale the reference stays at its value.
    window.set_log_y("music:pitch_class_entropy", True)
    assert pce.ref_line.value() == pytest.approx(math.log10(2.9))
    assert pce.ref_band.getRegion() == pytest.approx((math.log10(2.7), math.log10(3.1)))


def _sample(step, pce, reference=None):
    return as_records(
        [
            {
                "v": 1,
                "type": "sample",
                "time": 1000.0 + step,
                "step": step,
                "metrics": {"pitch_class_entropy": pce},
                "quality_score": 0.5,
                "reference": {"pitch_class_entropy": reference} if reference else {},
            }
        ]
    )[0]


@pytest.mark.slow
def test_music_plots_take_the_primary_runs_reference_and_one_that_arrives_later(qtbot, make_window):
    window = make_window()
    window.music_dock.raise_()
    dashboard = window.dashboard
    a, b = RunModel(name="a"), RunModel(name="b")
    a.ingest([_sample(100, 2.5, {"mean": 2.9, "std": 0.2})])
    b.ingest([_sample(100, 2.0, {"mean": 2.4, "std": 0.1})])
    dashboard.set_models([a, b])
    dashboard.redraw_all()
    pce = dashboard.plots["music:pitch_class_entropy"]
    assert len(pce.curves) == 2 and pce.ref_line.value() == pytest.approx(2.9)
    dashboard.set_models([b, a])
    dashboard.redraw_all()
    assert dashboard.plots["music:pitch_class_entropy"].ref_line.value() == pytest.approx(2.4)
    # A live run: an anomaly, then a round without a reference yet, then one with it.
    live = RunModel(name="live")
    live.ingest(
        as_records(
            [
                {
                    "v": 1,
                    "type": "anomaly",
                    "time": 1000.0,
                    "step": 50,
                    "id": "a1",
                    "kind": "loss_spike",
                    "severity": "warning",
                    "message": "loss spike",
                }
            ]
        )
    )
    dashboard.set_models([live])
    dashboard.tick()
    live.ingest([_sample(100, 2.5)])
    dashboard.tick()
    pce = dashboard.plots["music:pitch_class_entropy"]
    assert pce.ref_line is None or not pce.ref_line.isVisible()
    assert "corpus" not in pce.item.titleLabel.text
    assert [m.step for m, _ in pce.markers] == [50], "a plot made after a marker still shows it"
    live.ingest([_sample(200, 2.6, {"mean": 2.9, "std": 0.2})])
    dashboard.tick()
    assert pce.ref_line.isVisible() and pce.ref_line.value() == pytest.approx(2.9)
    # The dashboard redraws one grid per frame: the Music grid's legend within a few frames.
    qtbot.waitUntil(lambda: "corpus 2.9 ± 0.2" in pce.item.titleLabel.text, timeout=5000)


@pytest.mark.slow
def test_runs_list_shows_state_and_opens_on_double_click(qtbot, make_window, workspace):
    write_run(workspace / "done", steps=200, t0=time.time() - 60)
    write_run(workspace / "going", steps=200, end=None, t0=time.time() - 10, dt=0.01)
    window = make_window()
    window.watcher.refresh()
    table = window.runs_panel.model
    qtbot.waitUntil(lambda: table.rowCount() == 2, timeout=10_000)
    states = {table.data(table.index(r, 0)): table.data(table.index(r, 1)) for r in range(2)}
    assert states == {"done": "finished", "going": "running"}
    row = next(r for r in range(2) if table.data(table.index(r, 0)) == "done")
    view = window.runs_panel.table
    view.setCurrentIndex(table.index(row, 1))
    qtbot.keyClick(view, QtCore.Qt.Key.Key_Return)
    assert window.primary is not None and window.primary.model.name == "done"
    table.setData(table.index(1 - row, 0), QtCore.Qt.CheckState.Checked.value, QtCore.Qt.ItemDataRole.CheckStateRole)
    assert [p.name for p in window.overlays] == ["going"]


@pytest.mark.slow
def test_status_bar_and_events_for_a_finished_run(qtbot, make_window, finished_run):
    window = make_window()
    session = window.open_run(finished_run)
    _wait_loaded(qtbot, window, session)
    window.status.refresh()
    assert "finished" in window.status.state.text()
    assert window.status.step.text() == "step 1,000/1,000"
    assert "ckpt @ 1000" in window.status.checkpoint.text()
    assert window.status.anomalies.isVisibleTo(window) and "1 unread" in window.status.anomalies.text()
    window.status.anomalies.click()
    assert session.model.unread_anomalies == 0 and window.events_view.filter.currentText() == "Anomalies"
    shown = [window.events_view.table.topLevelItem(i) for i in range(window.events_view.table.topLevelItemCount())]
    assert [i.text(2) for i in shown if not i.isHidden()] == ["anomaly"]
    for action in (window.act_pause, window.act_resume, window.act_ckpt, window.act_lr, window.act_stop):
        assert not action.isEnabled()  # nothing to steer in a finished run


def test_new_run_dialog_validates_with_the_engine_schema(qtbot, tmp_path, workspace):
    from engine.contract.config import default_config_path

    (workspace / "taken").mkdir()
    (workspace / "taken" / "events.jsonl").write_text("")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: -1\n")
    dialog = NewRunDialog(workspace, Hardware([], 4, "test"), default_config_path())
    qtbot.addWidget(dialog)
    assert dialog.nproc.value() == 2 and dialog.start.isEnabled()
    dialog.use_file.setChecked(True)
    dialog.path.setText(str(bad))
    assert any("optim.lr" in p for p in dialog.validate()) and not dialog.start.isEnabled()
    dialog.use_default.setChecked(True)
    dialog.name.setText("taken")
    assert any("already holds a run" in p for p in dialog.validate())
    dialog.name.setText("fresh")
    dialog.nproc.setValue(3)
    assert any("does not split over 3 ranks" in p for p in dialog.validate())
    dialog.nproc.setValue(2)
    dialog.overrides.setText("run.max_steps=50")
    assert dialog.validate() == []
    req = dialog.request()
    assert req.run_dir == workspace / "fresh" and req.overrides == ["run.max_steps=50"]
    gpu = NewRunDialog(workspace, Hardware(["A100", "A100"], 32, "NVML"), default_config_path())
    qtbot.addWidget(gpu)
    assert gpu.nproc.value() == 2  # one rank per GPU
    assert any("2 GPU(s) via NVML" in label.text() for label in gpu.findChildren(QtWidgets.QLabel))


def test_set_lr_dialog_accepts_scientific_notation_only_in_range(qtbot):
    dialog = SetLrDialog(current_lr=2.5e-4, peak_lr=1e-3)
    qtbot.addWidget(dialog)
    assert dialog.value() == 1e-3 and dialog.ok.isEnabled()
    for text, ok in (("3e-4", True), ("0", False), ("-1e-3", False), ("nan", False), ("abc", False), ("2", False)):
        dialog.edit.setText(text)
        assert dialog.ok.isEnabled() is ok, text


def test_durations_and_values_read_well():
    assert format_duration(45) == "45s" and format_duration(3 * 3600 + 5 * 60) == "3h 05m 00s"
    assert format_duration(200_000, short=True) == "2d07h"
    assert format_value(math.nan) == "NaN" and format_value(-math.inf) == "-Inf"
    assert format_value(3e-4) == "3.000e-04" and format_value(2.3456) == "2.346"


@pytest.mark.slow
def test_theme_switch_restyles_and_is_remembered(qtbot, make_window, finished_run):
    window = make_window()
    window.open_run(finished_run)
    window.act_theme.setChecked(True)
    assert window.settings.value("theme") == "dark"
    assert "#15171b" in window.styleSheet()
    assert window.dashboard.training.backgroundBrush().color().name() == "#1b1d22"
    window.act_theme.setChecked(False)
    assert window.settings.value("theme") == "light"


def test_layout_is_saved_and_restored(qtbot, make_window, settings):
    window = make_window()
    qtbot.waitUntil(lambda: window._laid_out, timeout=5000)
    window.log_dock.toggleViewAction().trigger()
    window._save_layout()
    second = make_window()
    qtbot.waitUntil(lambda: second._laid_out, timeout=5000)
    assert not second.log_dock.isVisible()
    assert second.system_dock.isVisible()


@pytest.mark.slow
def test_a_million_points_are_drawn_downsampled_with_the_spike_kept(qtbot, make_window):
    from gui.models.run_model import RunModel

    window = make_window()
    model = RunModel(name="big")
    n = 1_000_000
    y = 2.0 + 0.01 * np.sin(np.arange(n) / 1000.0)
    y[777_777] = 100.0  # one step's spike
    y[500_000] = math.nan
    model.store.get("metrics/loss").extend(np.arange(n), np.arange(n) * 0.1, y)
    window.smoothing.setValue(0)
    window.dashboard.set_models([model])
    window.dashboard.redraw_all()
    plot = window.dashboard.plots["loss"]
    curve = plot.curves[0]
    width = plot.view()[2]
    shown_x, shown_y = curve.line.getData()  # what is drawn: peak-downsampled to the pixels
    assert 0 < len(shown_x) <= 4 * width + 1
    assert np.nanmax(shown_y) == 100.0  # the spike survives downsampling
    assert np.nanmin(shown_y) == pytest.approx(np.nanmin(y))
    assert shown_x[-1] == n - 1 and shown_y[-1] == y[-1]  # the curve ends at the last point
    bx, _ = curve.bad.getData()
    assert list(bx) == [500_000.0]
    # Zoomed in on the spike (a user's zoom stops the view following new points),
    # every point in view is drawn as it is.
    window.dashboard.follow = False
    plot.item.setXRange(777_700, 777_800, padding=0)
    window.dashboard.redraw_all()
    shown_x, shown_y = curve.line.getData()
    inside = (shown_x >= 777_700) & (shown_x <= 777_800)
    assert np.array_equal(shown_x[inside], np.arange(777_700, 777_801))
    assert np.array_equal(shown_y[inside], y[777_700:777_801])


@pytest.mark.slow
def test_on_a_hidpi_screen_curves_are_drawn_for_its_device_pixels(tmp_path):
    """At a device pixel ratio of 2 a logical pixel holds 2 x 2 screen pixels: drawn for logical pixels, a
    downsampled curve would look half as detailed as the screen can show."""
    import json
    import subprocess
    import sys

    def probe(scale: str) -> dict:
        env = {
            **os.environ,
            "QT_QPA_PLATFORM": "offscreen",
            "QT_SCALE_FACTOR": scale,
            "PODIUM_AUDIO_BACKEND": "null",
            "HOME": str(tmp_path),
        }
        out = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("hidpi_probe.py"))],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])

    normal, hidpi = probe("1"), probe("2")
    assert (normal["ratio"], hidpi["ratio"]) == (1.0, 2.0)
    assert hidpi["logical_width"] == pytest.approx(normal["logical_width"])  # the same layout
    assert hidpi["width"] == pytest.approx(2 * normal["width"], abs=2)
    assert hidpi["points"] >= 1.8 * normal["points"]


def test_save_window_as_png_action_asks_for_a_file_and_writes_it(qtbot, make_window, tmp_path, monkeypatch):
    window = make_window()
    target = tmp_path / "window.png"
    monkeypatch.setattr(
        QtWidgets.QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "PNG (*.png)"))
    )
    window.act_screenshot.trigger()
    assert target.exists() and target.stat().st_size > 0


def _title(window, key: str) -> str:
    return window.dashboard.plots[key].item.titleLabel.text


@pytest.mark.slow
def test_crosshair_readout_follows_the_newest_data_unless_pinned_and_is_cleared_by_another_run(
    qtbot, make_window, workspace, finished_run
):
    from scripted import _line

    window = make_window()
    window.smoothing.setValue(0)
    live = write_run(workspace / "live", steps=200, end=None, anomalies=False, samples=False).root
    session = window.open_run(live)
    _wait_loaded(qtbot, window, session)
    window.dashboard.tick()
    # No crosshair: each readout is the newest point, and keeps up with the run.
    assert "latest: step 200" in _title(window, "loss")
    with open(live / "events.jsonl", "a") as f:
        f.write(_line("metrics", 210, 1_700_000_200.0, metrics_payload(210)))
    session.catch_up()

    def newest_shown():
        window.dashboard.tick()
        return "latest: step 210" in _title(window, "loss")

    qtbot.waitUntil(newest_shown, timeout=5000)
    assert format_value(loss_at(210)) in _title(window, "loss")
    # Selecting an alert pins the crosshair to its step; a hover that leaves does not drop it.
    window.dashboard.set_cursor(100.0)
    window.dashboard.training.left.emit()
    window.dashboard.tick()
    assert "step 100 ·" in _title(window, "loss") and "latest" not in _title(window, "loss")
    # A hover crosshair goes when the mouse leaves the plots.
    window.dashboard.set_cursor(150.0, source=window.dashboard.plots["loss"])
    window.dashboard.tick()
    assert "step 150 ·" in _title(window, "loss")
    window.dashboard.training.left.emit()
    window.dashboard.tick()
    assert "latest: step 210" in _title(window, "loss")
    assert not any(p.cursor.isVisible() for p in window.dashboard.plots.values())
    # Pinned again, then another run is opened: its readouts are its own newest values, not the old step's.
    window.dashboard.set_cursor(100.0)
    window.dashboard.tick()
    other = window.open_run(finished_run)
    _wait_loaded(qtbot, window, other)
    window.dashboard.tick()
    assert "latest: step 1000" in _title(window, "loss")
    assert all(p.cursor_x is None for p in window.dashboard.plots.values())


@pytest.mark.slow
def test_system_dock_readout_agrees_with_the_training_grid_after_being_hidden(qtbot, make_window, finished_run):
    window = make_window()
    window.smoothing.setValue(0)
    session = window.open_run(finished_run)
    _wait_loaded(qtbot, window, session)
    window.system_dock.hide()  # closed, or a tab behind another
    qtbot.waitUntil(lambda: not window.dashboard.system.isVisible(), timeout=2000)
    window.dashboard.set_cursor(300.0)
    window.dashboard.tick()
    assert "step 300 ·" in _title(window, "loss")
    window.system_dock.show()
    qtbot.waitUntil(lambda: window.dashboard.system.isVisible(), timeout=2000)
    window.dashboard.tick()
    system_key = next(
        k
        for k, g in window.dashboard._grid_of.items()
        if g is window.dashboard.system and window.dashboard.plots[k].curves
    )
    assert "step 300 ·" in _title(window, system_key)


def test_new_run_dialog_refuses_a_midi_folder_that_does_not_exist(qtbot, tmp_path, workspace):
    from engine.contract.config import default_config_path

    dialog = NewRunDialog(workspace, Hardware([], 4, "test"), default_config_path())
    qtbot.addWidget(dialog)
    missing = tmp_path / "no-such-folder"
    dialog.overrides.setText(f"data.source=midi_dir data.path={missing}")
    problems = dialog.validate()
    assert any(p.startswith("data.path:") and str(missing) in p and "does not exist" in p for p in problems)
    assert not dialog.start.isEnabled() and "data.path" in dialog.problems.text()
    missing.mkdir()
    assert dialog.validate() == [] and dialog.start.isEnabled()


@pytest.mark.slow
def test_the_learning_rate_is_never_smoothed_so_a_set_lr_is_a_step(qtbot, make_window, workspace):
    from scripted import _line

    run = write_run(workspace / "lr", steps=200, anomalies=False, samples=False, end=None).root
    with open(run / "events.jsonl", "a") as f:
        for step in range(210, 310, 10):
            f.write(_line("metrics", step, 1_700_000_100.0 + step, metrics_payload(step, lr=2e-4)))
    window = make_window()
    window.smoothing.setValue(90)
    session = window.open_run(run)
    _wait_loaded(qtbot, window, session)
    window.dashboard.redraw_all()
    lr = next(c for c in window.dashboard.plots["lr"].curves if c.label == "lr")
    x, y = lr.line.getOriginalDataset()
    after = y[np.asarray(x) >= 210]
    assert len(after) and np.allclose(after, 2e-4), "the drawn LR drops at once to the new value"
    loss = window.dashboard.plots["loss"].curves[0]
    assert loss.drawn[1] == pytest.approx(0.9)  # the others are still smoothed


def test_set_lr_dialog_offers_the_runs_current_peak_not_the_configs(qtbot, make_window, workspace, monkeypatch):
    from scripted import _line

    from gui import run_control

    run = write_run(workspace / "cut", steps=200, anomalies=False, samples=False, end=None).root
    with open(run / "events.jsonl", "a") as f:
        # An anomaly halved the peak (the engine says so in its metrics), then a set_lr from the command line.
        f.write(_line("metrics", 210, 1_700_000_300.0, dict(metrics_payload(210, lr=4e-4), peak_lr=5e-4)))
        f.write(
            _line(
                "control_ack",
                215,
                1_700_000_301.0,
                {
                    "id": "cli",
                    "cmd": "set_lr",
                    "outcome": "done",
                    "reason": "",
                    "old_peak_lr": 5e-4,
                    "new_peak_lr": 2e-4,
                },
            )
        )
    window = make_window()
    session = window.open_run(run)
    _wait_loaded(qtbot, window, session)
    qtbot.waitUntil(lambda: session.model.peak_lr is not None, timeout=5000)
    offered = []

    class Dialog(SetLrDialog):
        def exec(self):
            offered.append(self.edit.text())
            return QtWidgets.QDialog.DialogCode.Rejected

    monkeypatch.setattr(run_control, "SetLrDialog", Dialog)
    window.set_lr()
    assert offered == ["0.0002"]


@pytest.fixture
def lone_dashboard(qtbot):
    """A Dashboard without a window; its redraw timer stops with the test (its grids go at teardown)."""
    from gui.theme import LIGHT
    from gui.widgets.plots import Dashboard

    dashboard = Dashboard(LIGHT)
    yield dashboard
    dashboard._timer.stop()


@pytest.mark.slow
def test_a_narrow_plot_shortens_its_head_wraps_its_legend_and_keeps_all_of_it_in_the_tooltip(
    qtbot, finished_run, workspace, lone_dashboard
):
    from engine.contract.events import read_events
    from gui.widgets.plots.title import TitleFit

    other = write_run(workspace / "a-second-run-with-a-long-name", steps=1000, seed=3).root
    models = []
    for root in (finished_run, other):
        model = RunModel(root)
        model.ingest(read_events(root / "events.jsonl")[0])
        models.append(model)
    dashboard = lone_dashboard
    dashboard.set_models(models)
    view = dashboard.view
    qtbot.addWidget(view)
    view.resize(1800, 900)  # three columns of 600 px: room for it all
    view.show()

    def shown(key: str) -> list[str]:
        doc = QtGui.QTextDocument()
        doc.setHtml(dashboard.plots[key].item.titleLabel.text)
        return doc.toPlainText().split("\n")

    def settle() -> None:
        QtWidgets.QApplication.processEvents()
        dashboard.redraw_all()
        dashboard.tick()

    settle()
    plot = dashboard.plots["data_wait"]
    wide = shown("data_wait")
    value = format_value(models[0].series["metrics/data_wait_frac"].values[-1])
    assert wide[0].startswith("Data wait (fraction of step)") and "latest: step 1000" in wide[0]
    assert len(wide) == 2 and "finished" in wide[1] and "a-second-run-with-a-long-name" in wide[1]
    view.resize(300, 900)  # one column, 300 px: the title cannot hold it all on two lines
    qtbot.waitUntil(lambda: (settle(), plot.item.titleLabel.width() < 320)[1], timeout=3000)
    settle()
    narrow = shown("data_wait")
    fits = TitleFit(int(plot.item.titleLabel.width()))
    assert all(fits(line) for line in narrow), narrow
    assert narrow[0] != wide[0], narrow
    # The legend is never cut: each run's value is there (the names are in the runs' legend over the plots).
    legend = " ".join(narrow[1:])
    assert "…" not in legend and legend.count(value) == 2, narrow
    tip = plot.item.titleLabel.toolTip()
    assert (
        "latest: step 1000" in tip and "a-second-run-with-a-long-name" in tip and "Data wait (fraction of step)" in tip
    )


@pytest.mark.slow
def test_a_constant_learning_rate_is_drawn_at_its_level_not_squashed_onto_zero(qtbot, make_window, finished_run):
    window = make_window()
    session = window.open_run(finished_run)  # the scripted run's LR is 1e-3 throughout
    _wait_loaded(qtbot, window, session)
    window.dashboard.redraw_all()
    low, high = window.dashboard.plots["lr"].item.getViewBox().viewRange()[1]
    assert low < 1e-3 < high and high - low < 1e-3


ROLLBACK_SHOT = Path(os.environ.get("PODIUM_SCREENSHOTS") or tempfile.gettempdir()) / "rollback-light.png"


@pytest.mark.slow
def test_a_rollback_draws_the_undone_stretch_faded_and_the_curve_from_the_restored_step(
    qtbot, make_window, workspace, tmp_path
):
    from scripted import write_rollback_run

    run = write_rollback_run(workspace / "rollback").root  # steps 1-125 (NaN at 125), back to 100, then 101-300
    window = make_window()
    session = window.open_run(run)
    _wait_loaded(qtbot, window, session)
    window.smoothing.setValue(0)
    window.dashboard.redraw_all()
    loss = window.dashboard.plots["loss"]
    train = next(c for c in loss.curves if c.label == "train")
    qtbot.waitUntil(
        lambda: train.drawn is not None and train.drawn[0] == train.series.version and train.drawn[1] == 0.0,
        timeout=5000,
    )
    x, y = train.line.getOriginalDataset()
    assert np.all(np.diff(x) > 0), "the main curve never jumps back"
    assert x[-1] == 300 and y[-1] == pytest.approx(loss_at(300, 1))
    (segment,) = train.series.superseded
    assert list(segment.steps) == list(range(101, 126))
    assert segment.values[0] == pytest.approx(loss_at(101) + 0.02)  # the first pass's value, not the replay's
    ox, oy = train.old.getOriginalDataset()
    assert list(ox[np.isfinite(ox)]) == list(range(101, 126))
    # The faded line is drawn but not part of the y range the view follows.
    assert train.old not in loss.item.getViewBox().addedItems
    assert train.old.opts["pen"].color().alpha() < 128
    # The NaN that caused the rollback is still a cross, at step 125.
    bx, _ = train.bad.getData()
    assert list(bx) == [125.0]
    # The readout reads the newest point of the run as it is now.
    loss.update_title(window.dashboard.settings, window.dashboard.runs)
    assert "step 300" in loss.item.titleLabel.text and format_value(loss_at(300, 1)) in loss.item.titleLabel.text
    # The crosshair over the undone stretch reads the replay, not the abandoned values.
    window.dashboard.set_cursor(110.0, pinned=True)
    loss.update_title(window.dashboard.settings, window.dashboard.runs)
    assert format_value(loss_at(110, 1)) in loss.item.titleLabel.text
    window.dashboard.clear_cursor()
    # CSV: every point, the undone ones marked.
    table = tmp_path / "loss.csv"
    window.dashboard.export("loss", str(table))
    with open(table) as f:
        rows = [r for r in csv.DictReader(f) if r["label"] == "train"]
    assert len(rows) == 300 + 25
    marked = [int(r["step"]) for r in rows if r["superseded"] == "1"]
    assert marked == list(range(101, 126))
    assert {r["superseded"] for r in rows} == {"0", "1"}
    # The rollback's anomaly is still a marker.
    assert any(m.kind == "anomaly" and "nonfinite_loss" in line.toolTip() for m, line in loss.markers)
    window.smoothing.setValue(60)
    ROLLBACK_SHOT.parent.mkdir(parents=True, exist_ok=True)
    window.dashboard.redraw_all()
    assert window.grab().save(str(ROLLBACK_SHOT))
