"""Samples you can see and hear, on scripted sampling rounds whose MIDI files symusic wrote."""

from __future__ import annotations

import json
import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets
from test_panels_models import sample_round, symusic_notes, write_symusic_midi

from gui.models.audio import BACKEND_ENV, PERIOD_MS, Player
from gui.models.samples import SampleModel
from gui.models.synth import SAMPLE_RATE
from gui.theme import LIGHT
from gui.widgets.samples_panel import SamplesPanel

symusic = pytest.importorskip("symusic")
# Screenshots go to a temporary folder; PODIUM_SCREENSHOTS=docs/screenshots regenerates the docs' copies.
SHOTS = Path(os.environ.get("PODIUM_SCREENSHOTS") or tempfile.gettempdir())
SAMPLES_SHOT = SHOTS / "samples.png"


def longer_chorale() -> dict:
    """Four voices over eight bars: enough notes for a piano roll worth looking at."""
    rng = np.random.default_rng(3)
    voices = {}
    for name, (low, program) in {"Soprano": (67, 52), "Alto": (60, 52), "Tenor": (53, 52), "Bass": (41, 32)}.items():
        notes, t = [], 0
        scale = [0, 2, 4, 5, 7, 9, 11, 12]
        while t < 480 * 32:
            duration = int(rng.choice([240, 480, 480, 960]))
            notes.append((t, duration, low + scale[int(rng.integers(0, 8))], int(rng.integers(60, 100))))
            t += duration
        voices[name] = (program, notes)
    return voices


@pytest.fixture
def run_with_samples(tmp_path) -> Path:
    run = tmp_path / "run"
    (run / "samples" / "step-100").mkdir(parents=True)
    (run / "samples" / "step-200").mkdir(parents=True)
    write_symusic_midi(run / "samples" / "step-100" / "0.mid")
    write_symusic_midi(run / "samples" / "step-200" / "0.mid", longer_chorale(), tempos=((0, 100.0),))
    write_symusic_midi(run / "samples" / "step-200" / "1.mid")
    return run


def rounds(run: Path) -> list[dict]:
    return [
        sample_round(100, ["samples/step-100/0.mid"], quality=0.55),
        sample_round(200, ["samples/step-200/0.mid", "samples/step-200/1.mid"], quality=0.71),
    ]


@pytest.fixture
def panel(qtbot, run_with_samples, monkeypatch):
    # miniaudio's null backend takes audio in real time with no sound card: playback is tested, and silent.
    monkeypatch.setenv(BACKEND_ENV, "null")
    widget = SamplesPanel(SampleModel(run_with_samples), LIGHT)
    qtbot.addWidget(widget)
    widget.setStyleSheet(LIGHT.style_sheet())
    widget.resize(1250, 640)
    widget.show()
    widget.ingest(rounds(run_with_samples))
    return widget


def test_samples_by_step_with_a_piano_roll_that_shows_the_note_count(qtbot, panel, run_with_samples):
    tree = panel.tree
    assert [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())] == ["step 200", "step 100"]
    assert tree.topLevelItem(0).toolTip(0).startswith("step 200: 2 samples")
    assert tree.topLevelItem(1).toolTip(0).startswith("step 100: 1 sample")
    assert tree.topLevelItem(0).text(1) == "0.710" and tree.topLevelItem(0).text(3) == "1/2 valid"
    # The newest round's first sample is shown at once.
    path = run_with_samples / "samples" / "step-200" / "0.mid"
    expected = len(symusic_notes(path))
    assert panel.current.path == path
    assert panel.roll.count_label.text().startswith(f"{expected} notes · 4 voices · 0:")
    assert panel.roll.piece.n_notes == expected
    # Another sample: the roll and its count follow.
    with qtbot.waitSignal(panel.sampleSelected, timeout=1000):
        tree.setCurrentItem(tree.topLevelItem(0).child(1))
    assert panel.roll.count_label.text().startswith(f"{len(symusic_notes(panel.current.path))} notes")
    # Metrics next to the round mean and the corpus, with z.
    cells = {
        panel.metrics.item(r, 0).text(): [panel.metrics.item(r, c).text() for c in range(1, 5)]
        for r in range(panel.metrics.rowCount())
    }
    assert cells["pitch class entropy"] == ["2.700", "2.620", "2.900 ± 0.200", "-1.00"]
    assert "Round quality 0.710" in panel.metrics_title.text()
    # Zoom and pan stay within the piece; Fit shows all of it again.
    view = panel.roll.view
    full = view.viewRange()[0]
    view.scaleBy((0.25, 1.0))
    zoomed = view.viewRange()[0]
    assert zoomed[1] - zoomed[0] < (full[1] - full[0]) / 2
    view.translateBy((-100.0, 0.0))
    assert view.viewRange()[0][0] >= -0.5
    panel.roll.fit()
    assert view.viewRange()[0] == pytest.approx(full, rel=1e-3)
    # A voice can be hidden (and so muted).
    legend = [
        panel.roll.legend.itemAt(i).widget()
        for i in range(panel.roll.legend.count())
        if panel.roll.legend.itemAt(i).widget() is not None
    ]
    assert len(legend) == 4 and legend[0].text().startswith("■ Soprano")
    with qtbot.waitSignal(panel.roll.voicesChanged, timeout=1000) as hidden:
        legend[0].click()
    assert hidden.args == [{0}]


def test_exported_midi_reads_back_with_the_same_notes(qtbot, panel, tmp_path):
    out = panel.export_midi(tmp_path / "export.mid")
    assert out is not None and "wrote export.mid" in panel.status.text()
    assert symusic_notes(out) == symusic_notes(panel.current.path)
    tracks = symusic.Score(str(out)).tracks
    assert [t.name for t in tracks] == ["Soprano", "Alto", "Tenor", "Bass"] and [t.program for t in tracks] == [
        52,
        52,
        52,
        32,
    ]
    music21 = pytest.importorskip("music21")
    # music21 splits notes at bar lines into tied pieces (joined again here) and drops zero-length notes;
    # every sounding note is there.
    parsed = music21.converter.parse(str(out)).stripTies()
    pitches = sorted(p.midi for n in parsed.recurse().notes for p in n.pitches)
    assert pitches == sorted(p for _, d, p, _ in symusic_notes(out) if d > 0)


def test_audio_renders_to_wav(qtbot, panel, tmp_path):
    with qtbot.waitSignal(panel.wavExported, timeout=20_000) as exported:
        panel.export_wav(tmp_path / "sample.wav")
    with wave.open(exported.args[0]) as f:
        frames = f.getnframes()
        audio = np.frombuffer(f.readframes(frames), dtype="<i2")
    assert frames / SAMPLE_RATE == pytest.approx(panel.roll.piece.duration_s, abs=0.2)
    assert np.abs(audio).max() > 3000, "audible"


def idle(panel) -> bool:
    return panel.play_button.isEnabled() and not panel.stop_button.isEnabled() and not panel.roll.playhead.isVisible()


def test_play_moves_the_playhead_and_stop_halts_it(qtbot, panel):
    """The newest sample (19 s) plays through miniaudio's null backend, which takes the audio in real time."""
    assert idle(panel) and panel.player.position() == 0.0
    panel.play_button.click()
    assert not panel.play_button.isEnabled() and panel.stop_button.isEnabled(), "Stop cancels the render too"
    qtbot.waitUntil(lambda: panel.player.position() > 0.5 and panel.roll.playhead.isVisible(), timeout=20_000)
    assert panel.status.text().startswith("playing") and "Null" in panel.status.text()
    mark = panel.roll.playhead.value()
    qtbot.waitUntil(lambda: panel.roll.playhead.value() > mark + 0.3, timeout=10_000)
    assert mark < panel.roll.playhead.value() <= panel.player.position(), "the line follows the frames played"
    QtWidgets.QApplication.processEvents()
    SAMPLES_SHOT.parent.mkdir(parents=True, exist_ok=True)
    assert panel.grab().save(str(SAMPLES_SHOT)) and SAMPLES_SHOT.stat().st_size < 300_000
    # Zoomed in, the roll pages along when the playhead runs off its right edge.
    here = panel.player.position()
    panel.roll.view.setXRange(here, here + 0.5, padding=0)
    qtbot.waitUntil(lambda: panel.roll.view.viewRange()[0][0] >= here + 0.5, timeout=10_000)
    assert panel.roll.view.viewRange()[0][0] <= panel.roll.playhead.value()
    # Stop: the position stays where it was however long one waits, the line goes, Play is offered again.
    panel.stop_button.click()
    stopped_at = panel.player.position()
    assert 0.5 < stopped_at < panel.roll.piece.duration_s and idle(panel) and panel.status.text() == ""
    qtbot.wait(6 * PERIOD_MS)
    assert panel.player.position() == stopped_at and idle(panel)
    # Space toggles: it plays from the start again, and stops.
    panel.tree.setFocus()
    qtbot.keyClick(panel.tree, QtCore.Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: panel.player.playing and panel.stop_button.isEnabled(), timeout=20_000)
    assert panel.player.position() < stopped_at
    qtbot.keyClick(panel.tree, QtCore.Qt.Key.Key_Space)
    assert not panel.player.playing and idle(panel)


@pytest.mark.slow
def test_a_piece_ends_by_itself_and_the_panel_returns_to_idle(qtbot, panel):
    panel.tree.setCurrentItem(panel.tree.topLevelItem(1).child(0))  # step 100: the short chorale
    duration = panel.roll.piece.duration_s
    assert duration < 10
    panel.play()
    qtbot.waitUntil(lambda: panel.player.playing, timeout=20_000)
    qtbot.waitUntil(lambda: idle(panel), timeout=int((duration + 20) * 1000))
    assert panel.player.position() == pytest.approx(duration, abs=0.2), "played to the end"
    assert not panel.player.playing and panel.status.text() == ""


def _panel_without_audio(qtbot, run_dir) -> SamplesPanel:
    """A panel whose Play found no audio output: its message is showing."""
    # WebAudio exists only in browsers: on any desktop it is an audio system that cannot be opened.
    panel = SamplesPanel(SampleModel(run_dir), LIGHT, player=Player(["webaudio"]))
    qtbot.addWidget(panel)
    panel.show()
    panel.ingest(rounds(run_dir))
    panel.play_button.click()
    qtbot.waitUntil(lambda: panel.audio_message.isVisible(), timeout=20_000)
    return panel


def test_without_an_audio_output_play_says_why_and_export_remains(qtbot, run_with_samples):
    panel = _panel_without_audio(qtbot, run_with_samples)
    text = panel.audio_message.text()
    assert text.startswith("Cannot play: no audio output") and "webaudio" in text and "WAV… still exports" in text
    assert idle(panel) and panel.wav_button.isEnabled()


def test_manual_sample_gets_the_metrics_podium_sample_left_beside_it_and_the_reference(qtbot, panel, run_with_samples):
    path = run_with_samples / "samples" / "step-100" / "0.mid"
    # What `podium sample` writes next to its MIDI (tests/test_run.py checks the engine side).
    path.with_name("0.mid.metrics.json").write_text(json.dumps({"pitch_class_entropy": 2.75, "pitch_range": None}))
    item = panel.add_manual(path, 30, "step-0000030", seed=5)
    assert panel.current is item and panel.tree.currentItem().parent().text(0) == "from step-0000030"
    rows = {panel.metrics.item(r, 0).text(): r for r in range(panel.metrics.rowCount())}
    row = rows["pitch class entropy"]
    assert panel.metrics.item(row, 3).text() == "2.900 ± 0.200" and float(panel.metrics.item(row, 1).text()) == 2.75
    assert item.metrics == {"pitch_class_entropy": 2.75}


def test_the_wheel_zooms_time_and_shift_wheel_zooms_pitch(qtbot, panel):
    from PySide6 import QtCore, QtGui

    view = panel.roll.view
    (x0, x1), (y0, y1) = view.viewRange()
    center = panel.roll.plot.mapFromScene(view.mapViewToScene(QtCore.QPointF((x0 + x1) / 2, (y0 + y1) / 2)))

    def wheel(modifiers):
        viewport = panel.roll.plot.viewport()
        event = QtGui.QWheelEvent(
            QtCore.QPointF(center),
            QtCore.QPointF(viewport.mapToGlobal(center)),
            QtCore.QPoint(0, 0),
            QtCore.QPoint(0, 240),
            QtCore.Qt.MouseButton.NoButton,
            modifiers,
            QtCore.Qt.ScrollPhase.NoScrollPhase,
            False,
        )
        QtWidgets.QApplication.sendEvent(viewport, event)

    wheel(QtCore.Qt.KeyboardModifier.NoModifier)
    (a0, a1), (b0, b1) = view.viewRange()
    assert a1 - a0 < (x1 - x0) * 0.9 and (b0, b1) == pytest.approx((y0, y1)), "time zoomed, pitch kept"
    wheel(QtCore.Qt.KeyboardModifier.ShiftModifier)
    (c0, c1), (d0, d1) = view.viewRange()
    assert (c0, c1) == pytest.approx((a0, a1)) and d1 - d0 < (b1 - b0) * 0.9, "pitch zoomed, time kept"


def test_rounds_arriving_one_by_one_show_the_newest_unless_a_sample_was_picked(qtbot, panel, run_with_samples):
    panel.reset(run_with_samples)
    first, second = rounds(run_with_samples)
    panel.ingest([first])  # a live run, or a run read in slices: the oldest round arrives first
    assert panel.current.step == 100
    panel.ingest([second])
    assert panel.current.step == 200 and panel.current.index == 0, "the newest evaluation is shown"
    # A sample the user picked stays in view when more rounds come.
    panel.tree.setCurrentItem(panel.tree.topLevelItem(1).child(0))
    picked = panel.current
    assert picked.step == 100
    third = dict(second, step=300, time=second["time"] + 100)
    panel.ingest([third])
    assert panel.tree.topLevelItem(0).text(0).startswith("step 300")
    assert panel.current is picked


def test_an_invalid_sample_says_why(qtbot, panel, run_with_samples):
    invalid = rounds(run_with_samples)[1]
    invalid["step"] = 300
    invalid["samples"][1]["syntax"] = {
        "valid": False,
        "note_validity": 0.75,
        "n_notes": 40,
        "n_errors": 3,
        "first_error": "12: Duration_1.0.8: a Duration without a Pitch before it",
    }
    panel.ingest([invalid])
    item = panel.tree.topLevelItem(0).child(1)
    assert item.text(3) == "invalid"
    tip = item.toolTip(3)
    assert "3 errors" in tip and "token 12" in tip and "a Duration without a Pitch before it" in tip
    panel.tree.setCurrentItem(item)
    assert panel.syntax_label.isVisible() and "Duration_1.0.8: a Duration without a Pitch" in panel.syntax_label.text()
    panel.tree.setCurrentItem(panel.tree.topLevelItem(0).child(0))  # a valid one: no error line
    assert not panel.syntax_label.isVisible()


def test_another_run_drops_the_last_runs_audio_message(qtbot, run_with_samples, tmp_path):
    panel = _panel_without_audio(qtbot, run_with_samples)
    panel.reset(tmp_path / "other")
    assert not panel.audio_message.isVisible() and panel.status.text() == ""


def test_a_picked_sample_undone_by_a_rollback_lets_the_view_follow_the_newest_again(qtbot, panel, run_with_samples):
    first, second = rounds(run_with_samples)
    panel.tree.setCurrentItem(panel.tree.topLevelItem(0).child(1))  # picked: step 200, the second sample
    assert panel.current.step == 200 and panel.current.index == 1
    # A rollback to step 150: the round at 200 is undone and its samples go.
    panel.ingest([dict(first, step=150, time=second["time"] + 10)])
    assert panel.current.step == 150
    panel.ingest([dict(second, step=250, time=second["time"] + 20)])
    assert panel.current.step == 250, "nothing the user chose is left to keep: the newest round is shown"


def test_a_sample_being_played_is_not_cut_off_by_a_new_round(qtbot, panel, run_with_samples):
    second = rounds(run_with_samples)[1]
    assert panel.current.step == 200  # shown because it is the newest, not picked
    panel.play()
    panel.ingest([dict(second, step=300, time=second["time"] + 100)])
    assert panel.current.step == 200
    panel.stop()


def test_in_a_side_dock_metric_names_are_whole_and_three_metrics_stay_in_view(qtbot, panel):
    panel.resize(430, 660)  # a side dock of a 1366x768 screen
    qtbot.waitUntil(lambda: panel.split.orientation() == QtCore.Qt.Orientation.Vertical, timeout=2000)
    table = panel.metrics
    assert table.rowCount() >= 2
    metrics = table.fontMetrics()
    for r in range(table.rowCount()):
        name = table.item(r, 0).text()
        assert table.columnWidth(0) >= metrics.horizontalAdvance(name), f"{name!r} is not cut"
        assert table.item(r, 0).toolTip()
    shown = table.viewport().height() // table.verticalHeader().defaultSectionSize()
    assert shown >= min(3, table.rowCount())


def test_a_sample_copied_from_the_training_set_says_how_much_and_from_which_piece(qtbot, panel, run_with_samples):
    copied = rounds(run_with_samples)[1]
    copied["step"] = 300
    copied["quality_interval"] = [0.0, 0.25]
    copied["samples"][0]["memorization"] = {"share": 0.75, "piece": "bwv10.7.mid", "piece_share": 0.5}
    copied["samples"][1]["memorization"] = {"share": 0.25, "piece": None, "piece_share": 0.0}
    panel.ingest([copied])
    newest = panel.tree.topLevelItem(0)
    assert [newest.text(4), newest.child(0).text(4), newest.child(1).text(4)] == ["50%", "75%", "25%"]
    assert "bwv10.7.mid" in newest.child(0).toolTip(4)
    panel.tree.setCurrentItem(newest.child(0))
    title = panel.metrics_title.text()
    assert "0.00-0.25" in title and "75% of this sample's 2-bar passages" in title and "bwv10.7.mid" in title
    QtWidgets.QApplication.processEvents()  # lay the two-line title out before the screenshot
    panel.grab().save(str(SHOTS / "samples-memorization.png"))


def test_in_a_side_dock_every_voice_chip_is_whole_on_screen(qtbot, panel):
    panel.resize(540, 900)  # the Samples dock of a 1600x1000 window
    roll = panel.roll
    qtbot.waitUntil(lambda: panel.split.orientation() == QtCore.Qt.Orientation.Vertical, timeout=2000)
    panel.tree.setCurrentItem(panel.tree.topLevelItem(0).child(0))  # the four-voice chorale of step 200

    def chips() -> list[QtWidgets.QToolButton]:
        return [b for b in roll.findChildren(QtWidgets.QToolButton) if b.isCheckable() and b.isVisible()]

    qtbot.waitUntil(lambda: len(chips()) == 4, timeout=5000)
    for chip in chips():
        rect = QtCore.QRect(chip.mapTo(roll, QtCore.QPoint(0, 0)), chip.size())
        assert roll.rect().contains(rect), chip.text()
        assert chip.width() >= chip.sizeHint().width(), chip.text()
