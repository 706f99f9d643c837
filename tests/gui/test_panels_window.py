"""The panels mounted in the main window: they follow the open run, talk to the plots and the status bar,
and launch runs through the window. And the GUI process still never loads torch or the music libraries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_panels_alerts import scripted_anomalies
from test_panels_models import fake_checkpoint, sample_round, write_symusic_midi

from engine.contract.events import EventWriter

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "resources" / "smoke.yaml"
HEAVY = ("torch", "miditok", "music21", "symusic")
# Stands in for the engine: records the command line the window would have run, and exits.
RECORD_ARGV = "import json, pathlib, sys; pathlib.Path(sys.argv[1]).write_text(json.dumps(sys.argv[2:]))"


@pytest.fixture
def run_with_everything(workspace) -> Path:
    """A finished run with anomalies (one rolled back), a sampling round of real MIDI, a checkpoint and its config."""
    run = workspace / "watched"
    (run / "samples").mkdir(parents=True)
    write_symusic_midi(run / "samples" / "s0.mid")
    scripted_anomalies(run / "events.jsonl")
    with EventWriter(run / "events.jsonl") as w:
        w.emit(
            "sample",
            150,
            **{
                k: v for k, v in sample_round(150, ["samples/s0.mid"]).items() if k not in ("v", "type", "time", "step")
            },
        )
        w.emit(
            "checkpoint",
            150,
            path=str(run / "checkpoints" / "step-0000150"),
            kind="full",
            reason="interval",
            size_bytes=100,
        )
        w.emit("run_end", 150, reason="finished", message="")
    fake_checkpoint(run / "checkpoints" / "step-0000150", 150, config=yaml.safe_load(SMOKE.read_text()))
    (run / "config.yaml").write_text(SMOKE.read_text())
    return run


@pytest.fixture
def mounted(make_window):
    window = make_window()
    return window, window.panels


@pytest.mark.slow
def test_panels_follow_the_open_run_and_steer_the_plots_and_status_bar(qtbot, mounted, run_with_everything):
    window, panels = mounted
    assert set(panels.docks) == {"alerts", "checkpoints", "config", "samples"}
    bottom = {d.objectName() for d in window.tabifiedDockWidgets(window.events_dock)}
    assert {"dock_alerts", "dock_checkpoints", "dock_config"} <= bottom, "tabbed with the event feed"
    assert panels._config is None, "the editor (and pydantic) waits until it is shown"
    window.open_run(run_with_everything)
    qtbot.waitUntil(lambda: len(panels.alerts.model.alerts) == 3 and bool(panels.samples.model.rounds), timeout=5000)
    assert panels.run_dir == run_with_everything and not panels.live
    nan_alert = panels.alerts.model.by_id["nan-120"]
    assert nan_alert.action_text() == "rollback: done, back to step 100, LR ×0.5"
    assert panels.docks["alerts"].windowTitle() == "Alerts (3)"
    assert panels.samples.roll.count_label.text().startswith("14 notes")
    assert [r.name for r in panels.checkpoints.model.rows] == ["step-0000150"]
    # Selecting an alert moves the plots' crosshair to its step.
    window.primary.catch_up()
    panels.alerts.select("nan-120")
    assert all(plot.cursor_x == 120 for plot in window.dashboard.plots.values())
    # Clicking the status bar's anomaly badge shows the alerts; acknowledging them clears the badge.
    shown = lambda widget: not widget.visibleRegion().isEmpty()  # noqa: E731  (a tab behind another has none)
    window.events_dock.raise_()
    qtbot.waitUntil(lambda: not shown(panels.alerts), timeout=2000)
    window.status.anomaliesClicked.emit()
    qtbot.waitUntil(lambda: shown(panels.alerts), timeout=2000)
    panels.alerts.acknowledge_all()
    assert panels.docks["alerts"].windowTitle() == "Alerts" and window.primary.model.unread_anomalies == 0
    # Choosing the editor's tab builds it, on the open run's config.
    panels.docks["config"].raise_()
    qtbot.waitUntil(lambda: panels._config is not None, timeout=2000)
    assert panels.config.compare.findData("run") >= 0 and panels.config.workspace == window.workspace
    # Another run: every panel starts over.
    other = window.workspace / "other"
    with EventWriter(other / "events.jsonl") as w:
        w.emit("run_start", 0, config={}, env={}, total_steps=10)
    window.open_run(other)
    qtbot.waitUntil(lambda: panels.run_dir == other.resolve(), timeout=3000)
    assert (
        panels.alerts.model.alerts == [] and panels.samples.model.rounds == [] and panels.checkpoints.model.rows == []
    )
    # Closing the window stops the panels' timers with the window's own.
    window._closing = True
    window.close()
    qtbot.waitUntil(lambda: panels.session is None and not panels._primary_timer.isActive(), timeout=2000)


@pytest.mark.slow
def test_fork_from_a_checkpoint_goes_through_the_editor_and_the_window(qtbot, mounted, run_with_everything):
    window, panels = mounted
    recorded = []

    def engine_argv(config, run_dir, nproc, overrides=()):
        record = Path(run_dir) / "argv.json"
        recorded.append(record)
        return [
            sys.executable,
            "-c",
            RECORD_ARGV,
            str(record),
            "run",
            "-c",
            str(config),
            "-r",
            str(run_dir),
            "--nproc",
            str(nproc),
        ]

    window.engine_argv = engine_argv
    window.open_run(run_with_everything)
    qtbot.waitUntil(lambda: bool(panels.checkpoints.model.rows), timeout=5000)
    checkpoint = run_with_everything / "checkpoints" / "step-0000150"
    panels.checkpoints.select_paths([checkpoint])
    panels.checkpoints.fork_button.click()
    # The editor now holds the checkpoint's config and the checkpoint; the user edits and forks.
    assert panels.config.checkpoint.text() == str(checkpoint)
    assert panels.config.document.path is None and "the config of" in panels.config.editor.toPlainText()
    panels.config.run_name.setText("forked")
    panels.config.nproc.setValue(1)
    lr = panels.config.form.rows["optim.lr"].editor
    lr.setText("0.0005")
    lr.textEdited.emit("0.0005")
    assert panels.config.fork_button.isEnabled()
    panels.config.fork_button.click()
    argv_file = window.workspace / "forked" / "argv.json"
    qtbot.waitUntil(argv_file.exists, timeout=10_000)
    argv = json.loads(argv_file.read_text())
    assert argv[-2:] == ["--from-checkpoint", str(checkpoint)]
    config = Path(argv[argv.index("-c") + 1])
    assert config == window.workspace / "forked" / "config.yaml"
    assert "lr: 0.0005" in config.read_text()
    assert window.primary.run.root == (window.workspace / "forked").resolve()
    assert window.engine_argv is engine_argv, "the window's command line hook is restored"


@pytest.mark.slow
def test_the_panels_never_load_torch_or_the_music_libraries(tmp_path, run_with_everything):
    code = f"""
import sys
from pathlib import Path
from PySide6 import QtWidgets
import gui
app = QtWidgets.QApplication([])
from gui.theme import LIGHT
from gui.session import RunSession
from gui.widgets.panels import Panels
p = Panels(LIGHT)
session = RunSession(Path({str(run_with_everything)!r}))
session.catch_up()
p.follow(session)
p.samples.export_wav(Path({str(tmp_path / "x.wav")!r}))
p.samples.export_midi(Path({str(tmp_path / "x.mid")!r}))
p.config.validate_now()
assert p.samples.roll.piece is not None and p.alerts.model.alerts
print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
