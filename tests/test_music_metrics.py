"""Musical metrics against hand-computed values on tiny note lists, and the REMI syntax check."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.music import metrics as mm
from engine.music import reference as mref
from engine.music import syntax as msyntax


def notes(*rows):
    """Rows of (start, duration, pitch[, voice]) in beats; velocity 80."""
    return np.array([(r[0], r[1], r[2], 80, r[3] if len(r) > 3 else 0) for r in rows], dtype=np.float64)


# C major scale in quarter notes: C D E F G A B C, two 4/4 bars.
SCALE = notes(*[(i, 1, p) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])])
# A whole-note C major chord in four voices, soprano (voice 0) on top.
CHORD = notes((0, 4, 67, 0), (0, 4, 64, 1), (0, 4, 60, 2), (0, 4, 48, 3))
EMPTY = np.zeros((0, 5))


def test_c_major_scale_by_hand():
    m = mm.compute_all(SCALE, resolution=8)
    assert m["pitch_range"] == 12
    assert m["n_pitches_used"] == 8
    assert m["n_pitch_classes_used"] == 7
    # C twice in 8 notes, six other classes once: -(1/4 log2 1/4 + 6 * 1/8 log2 1/8) = 0.5 + 2.25
    assert m["pitch_class_entropy"] == pytest.approx(2.75)
    assert m["pitch_entropy"] == pytest.approx(3.0)  # 8 distinct pitches, 1/8 each
    assert m["scale_consistency"] == 1.0
    assert m["mean_abs_interval"] == pytest.approx(12 / 7)  # 2+2+1+2+2+2+1 over 7 steps
    assert m["polyphony"] == 1.0
    assert m["polyphony_rate"] == 0.0
    assert m["empty_beat_rate"] == 0.0
    assert m["note_density"] == 1.0  # 8 notes over 8 beats
    assert m["groove_consistency"] == 1.0  # both bars have onsets on every beat
    assert m["bar_repetition_rate"] == 0.0
    assert math.isnan(m["voice_crossing_rate"])  # one voice


def test_chord_by_hand():
    m = mm.compute_all(CHORD, resolution=8)
    assert m["pitch_range"] == 19
    assert m["n_pitch_classes_used"] == 3
    assert m["pitch_class_entropy"] == pytest.approx(1.5)  # C 2/4, E 1/4, G 1/4
    assert m["polyphony"] == 4.0
    assert m["polyphony_rate"] == 1.0  # 4 > 2 pitches at every step
    assert m["note_density"] == 1.0  # 4 notes over 4 beats
    assert m["voice_crossing_rate"] == 0.0
    assert math.isnan(m["groove_consistency"])  # a single bar has no neighbour


def test_polyphony_counts_steps_by_hand():
    # resolution 2: A sounds at steps 0-2, B at 1-2, C at 2, silence at 3, D at 4.
    piece = notes((0, 1.5, 60), (0.5, 1, 64), (1, 0.5, 67), (2, 0.5, 72))
    assert mm.polyphony(piece, 2) == pytest.approx((1 + 2 + 3 + 1) / 4)
    assert mm.polyphony_rate(piece, 2) == pytest.approx(1 / 5)
    assert mm.polyphony_rate(piece, 2, threshold=1) == pytest.approx(2 / 5)
    assert mm.note_density(piece, 2) == pytest.approx(4 / 2.5)
    assert mm.empty_beat_rate(piece, 2) == 0.0  # step 3 is silent, but beat 1 has step 2


def test_unison_voices_count_once_as_in_muspy():
    assert mm.polyphony(notes((0, 1, 60, 0), (0, 1, 60, 1)), 8) == 1.0


def test_silence_gaps_make_empty_beats():
    # Notes on beats 0 and 3 of four: beats 1 and 2 are empty.
    piece = notes((0, 1, 60), (3, 1, 62))
    assert mm.empty_beat_rate(piece, 4) == 0.5
    assert mm.note_density(piece, 4) == 0.5
    assert mm.polyphony(piece, 4) == 1.0  # only sounding steps count


def test_scale_consistency_with_a_chromatic_note():
    piece = np.vstack([SCALE, notes((8, 1, 61))])
    assert mm.scale_consistency(piece) == pytest.approx(8 / 9)


def test_grid_rounding_and_zero_length_notes():
    # A zero-length note still sounds for one step: density 1 note / (1/8 beat).
    assert mm.note_density(notes((0, 0, 60)), 8) == 8.0
    # Onsets round half up on the grid: 1/16 beat at resolution 8 is step 0.5 -> 1.
    assert mm.polyphony(notes((0, 1, 60), (1 / 16, 1, 64)), 8) == pytest.approx((1 + 2 * 7 + 1) / 9)


def test_groove_consistency_by_hand():
    # Resolution 1, 4/4: bar 1 has onsets on all four beats, bar 2 on beats 1 and 3.
    piece = notes((0, 1, 60), (1, 1, 62), (2, 1, 64), (3, 1, 65), (4, 2, 67), (6, 2, 69))
    assert mm.groove_consistency(piece, 1, beats_per_bar=4) == 0.5  # Hamming 2 of 4
    # In 3/4 the same onsets give bars {0,1,2}, {0,1}, {0}: Hamming 1 + 1 over 2 bars * 3.
    assert mm.groove_consistency(piece, 1, beats_per_bar=3) == pytest.approx(1 - 2 / 6)


def test_bar_repetition_rate_by_hand():
    bar_a = [(0, 2, 60), (2, 2, 64)]
    bar_b = [(0, 4, 67)]
    rows = [(s + 4 * i, d, p) for i, bar in enumerate([bar_a, bar_a, bar_b, bar_a]) for s, d, p in bar]
    assert mm.bar_repetition_rate(notes(*rows), 8) == 0.5  # bars 2 and 4 repeat bar 1
    # An empty bar is neither a repetition nor in the denominator.
    rows = [(s + 8 * i, d, p) for i, bar in enumerate([bar_a, bar_a]) for s, d, p in bar]
    assert mm.bar_repetition_rate(notes(*rows), 8) == 0.5


def test_voice_crossing_rate_by_hand():
    # Voice 0 (mean 69.5) is the upper voice; it dips under voice 1 on beat 2 of 4.
    upper = [(i, 1, p, 0) for i, p in enumerate([72, 74, 60, 72])]
    lower = [(i, 1, 64, 1) for i in range(4)]
    assert mm.voice_crossing_rate(notes(*upper, *lower), 1) == 0.25
    # Track order does not matter: the same music with the voice ids swapped.
    swapped = [(s, d, p, 1 - v) for s, d, p, v in upper + lower]
    assert mm.voice_crossing_rate(notes(*swapped), 1) == 0.25
    # A unison is not a crossing.
    assert mm.voice_crossing_rate(notes((0, 1, 64, 0), (0, 1, 64, 1), (1, 1, 67, 0), (1, 1, 60, 1)), 1) == 0.0


def test_mean_abs_interval_pools_voices_and_takes_the_top_of_chords():
    # Voice 0: 60 -> 67 (7); voice 1 plays a chord 48+52 then 50: top line 52 -> 50 (2).
    piece = notes((0, 1, 60, 0), (1, 1, 67, 0), (0, 1, 48, 1), (0, 1, 52, 1), (1, 1, 50, 1))
    assert mm.mean_abs_interval(piece) == pytest.approx(4.5)


def test_empty_piece_has_documented_values_and_does_not_crash():
    m = mm.compute_all(EMPTY, 8)
    assert set(m) == set(mm.METRICS)
    assert (m["pitch_range"], m["n_pitches_used"], m["n_pitch_classes_used"]) == (0, 0, 0)
    for name in set(mm.METRICS) - {"pitch_range", "n_pitches_used", "n_pitch_classes_used"}:
        assert math.isnan(m[name]), name
    assert mm.compute_all([], 8) == pytest.approx(m, nan_ok=True)


def test_bad_note_arrays_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="shape"):
        mm.as_notes(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=">= 0"):
        mm.as_notes(notes((-1, 1, 60)))
    with pytest.raises(ValueError, match="0..127"):
        mm.as_notes(notes((0, 1, 128)))
    with pytest.raises(ValueError, match="NaN"):
        mm.as_notes(notes((math.nan, 1, 60)))


def test_crop_windows_shifts_and_clips():
    windows = mm.crop_windows(SCALE, 4)
    assert len(windows) == 2
    np.testing.assert_array_equal(windows[1][:, mm.START], [0, 1, 2, 3])
    np.testing.assert_array_equal(windows[1][:, mm.PITCH], [67, 69, 71, 72])
    # A note running over the window's end is cut there.
    (only,) = mm.crop_windows(notes((3, 2, 60)), 4)
    assert only[0, mm.DURATION] == 1
    # Empty windows are dropped.
    assert len(mm.crop_windows(notes((0, 1, 60), (9, 1, 60)), 4)) == 2


def test_notes_from_score_converts_ticks_to_beats_and_skips_drums():
    from symusic import Note, Score, Track

    score = Score(480)
    for program, is_drum, pitch in ((52, False, 72), (0, True, 36), (53, False, 60)):
        track = Track(name=str(program), program=program, is_drum=is_drum)
        track.notes.append(Note(240, 960, pitch, 90))
        score.tracks.append(track)
    got = mm.notes_from_score(score)
    np.testing.assert_array_equal(got, [[0.5, 2.0, 60, 90, 2], [0.5, 2.0, 72, 90, 0]])
    np.testing.assert_array_equal(mm.notes_from_score(score.to("quarter")), got)
    assert mm.score_beats_per_bar(score) == 4.0


def test_reference_stats_by_hand_and_json_serialisable():
    ref = mref.reference_stats([SCALE, CHORD], resolution=8)
    assert ref["pitch_range"] == {"mean": 15.5, "std": 3.5, "n": 2, "defined_frac": 1.0}
    # NaN (one bar, one voice) is left out of mean and std and shows in defined_frac.
    assert ref["groove_consistency"] == {"mean": 1.0, "std": 0.0, "n": 1, "defined_frac": 0.5}
    assert ref["voice_crossing_rate"] == {"mean": 0.0, "std": 0.0, "n": 1, "defined_frac": 0.5}
    json.dumps(ref)
    # With windows, the 8-beat scale counts as two 4-beat pieces.
    assert mref.reference_stats([SCALE], 8, window_beats=4)["pitch_range"]["n"] == 2


def test_held_out_windows_are_whole_windows_and_a_sample_is_measured_on_its_first():
    # Five 4/4 bars of quarter notes: one 16-beat window and a closing bar that is no window of its own.
    five_bars = notes(*[(i, 1, 60 + i) for i in range(20)])
    windows = mref.bar_windows(five_bars, 4.0, 16.0)
    assert [len(w) for w in windows] == [16] and windows[0][:, mm.PITCH].max() == 75
    assert len(mref.bar_windows(five_bars[:-1], 4.0, 8.0)) == 2  # 19 beats: two windows; a 3-beat tail is none
    # A last window short by less than a bar (a shortened final bar) is kept.
    assert len(mref.bar_windows(notes(*[(i, 1, 60) for i in range(15)]), 4.0, 8.0)) == 2  # 0-8, 8-15
    # A piece shorter than one window is measured whole.
    assert len(mref.bar_windows(SCALE, 4.0, 16.0)) == 1 and len(mref.bar_windows(SCALE, 4.0, 16.0)[0]) == 8
    # A sample longer than a window is measured on the same length, its notes cut at the window's end.
    opening = mref.opening_window(notes((0, 20, 48), *[(i, 1, 60 + i) for i in range(20)]), 4.0, 16.0)
    assert mm.compute_all(opening, 8) == mm.compute_all(notes((0, 16, 48), *[(i, 1, 60 + i) for i in range(16)]), 8)
    # 3/4: the whole bars nearest to the window, as for the held-out pieces.
    assert mref.window_length(3.0, 16.0) == 15.0 and len(mref.opening_window(five_bars, 3.0, 16.0)) == 15


def test_quality_score_is_one_for_the_reference_itself_and_falls_with_distance():
    pieces = [SCALE, CHORD, np.vstack([SCALE, notes((8, 1, 61))])]
    ref = mref.reference_stats(pieces, 8)
    own = [mm.compute_all(p, 8) for p in pieces]
    assert mref.quality_score(own, ref) == pytest.approx(1.0)
    # One reference std off on every metric that varies gives 1 / (1 + 1).
    shifted = [{k: v + ref[k]["std"] for k, v in m.items()} for m in own]
    varying = [k for k in ref if ref[k]["n"] and ref[k]["std"] > 0]
    assert mref.quality_score(shifted, ref, varying) == pytest.approx(0.5)
    farther = [{k: v + 3 * ref[k]["std"] for k, v in m.items()} for m in own]
    assert mref.quality_score(farther, ref, varying) == pytest.approx(0.25)


def test_quality_score_counts_undefined_sample_metrics_against_the_samples():
    ref = mref.reference_stats([SCALE, np.vstack([SCALE, notes((8, 1, 61))])], 8)
    good = mm.compute_all(SCALE, 8)
    empty = mm.compute_all(EMPTY, 8)
    report = mref.quality_report([good, empty], ref, ["scale_consistency"])
    assert report["scale_consistency"]["defined_frac"] == 0.5
    # Reference 1 and 8/9 (mean 17/18, std 1/18); the sample mean 1 is z = 1 off, and half
    # the samples lack the metric that every reference piece has: (1 - 0.5) / (1 + 1).
    assert report["scale_consistency"]["z"] == pytest.approx(1.0)
    assert report["scale_consistency"]["similarity"] == pytest.approx(0.25)
    assert mref.quality_score([good, empty], ref) < mref.quality_score([good, good], ref)
    assert mref.quality_score([empty], ref, ["scale_consistency"]) == 0.0
    assert math.isnan(mref.quality_score([], ref))


def test_quality_score_survives_a_reference_without_spread():
    ref = mref.reference_stats([SCALE, SCALE], 8)  # std 0 everywhere
    assert mref.quality_score([mm.compute_all(SCALE, 8)], ref) == 1.0
    report = mref.quality_report([mm.compute_all(CHORD, 8)], ref, ["pitch_range", "polyphony"])
    # The std floor (1e-3 of the mean) turns a real difference into a large, finite z.
    assert report["pitch_range"]["z"] == pytest.approx((19 - 12) / 0.012)
    assert 0 < report["polyphony"]["similarity"] < 0.01


# --------------------------------------------------------------------------- syntax


def _remi(velocities: bool):
    import miditok

    # Podium's data.build_tokenizer settings, with velocities on or off (Podium: off).
    config = miditok.TokenizerConfig(
        use_programs=True,
        one_token_stream_for_programs=True,
        use_velocities=velocities,
        use_time_signatures=True,
        beat_res={(0, 4): 8, (4, 12): 4},
        special_tokens=["PAD", "BOS", "EOS"],
    )
    return miditok.REMI(config)


@pytest.fixture(scope="module", params=[False, True], ids=["no-velocity", "velocity"])
def two_voice_tokens(request):
    from symusic import Note, Score, TimeSignature, Track

    score = Score(480)
    score.time_signatures.append(TimeSignature(0, 4, 4))
    for program, pitches in ((73, [72, 74, 76, 77, 79]), (70, [60, 62, 64, 65, 67])):
        track = Track(name=str(program), program=program)
        for i, p in enumerate(pitches):
            track.notes.append(Note(i * 480, 480, p, 80))
        score.tracks.append(track)
    remi = _remi(request.param)
    return remi, request.param, remi.encode(score).tokens


def test_real_remi_stream_is_valid(two_voice_tokens):
    from miditok import TokSequence

    remi, velocities, tokens = two_voice_tokens
    first = ["Bar_None", "TimeSig_4/4", "Position_0", "Program_73", "Pitch_72"] + ["Velocity_79"] * velocities
    assert tokens[: len(first) + 1] == first + ["Duration_1.0.8"]
    report = msyntax.check_remi_syntax(tokens, resolution=8)
    assert report.valid and report.first_error is None
    assert (report.n_notes, report.n_valid_notes, report.note_validity) == (10, 10, 1.0)
    assert remi.tokens_errors(TokSequence(tokens=list(tokens))) == 0


def _note_end(tokens, i):
    """Index of the Duration closing the note group that starts at Program index i."""
    return next(j for j in range(i, len(tokens)) if tokens[j].startswith("Duration_"))


CORRUPTIONS = {
    "pitch before its program": lambda t: t[:3] + [t[4], t[3]] + t[5:],
    "drop a program": lambda t: t[:3] + t[4:],
    "duration dropped": lambda t: t[: _note_end(t, 3)] + t[_note_end(t, 3) + 1 :],
    "time goes back": lambda t: [x if i != t.index("Position_8") else "Position_0" for i, x in enumerate(t)],
    "program right after a bar": lambda t: t[:1] + t[3:],
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupted_streams_are_invalid_like_miditok_says(two_voice_tokens, name):
    from miditok import TokSequence

    remi, _, tokens = two_voice_tokens
    bad = CORRUPTIONS[name](list(tokens))
    assert bad != tokens
    report = msyntax.check_remi_syntax(bad, resolution=8)
    assert not report.valid and report.first_error
    assert report.n_valid_notes < report.n_notes
    assert remi.tokens_errors(TokSequence(tokens=bad)) > 0  # miditok's own checker agrees


def test_velocity_tokens_are_required_or_refused_by_vocabulary():
    with_velocity = ["Bar_None", "Position_0", "Program_0", "Pitch_60", "Velocity_80", "Duration_1.0.8"]
    without = ["Bar_None", "Position_0", "Program_0", "Pitch_60", "Duration_1.0.8"]
    assert msyntax.check_remi_syntax(with_velocity).valid and msyntax.check_remi_syntax(without).valid
    assert not msyntax.check_remi_syntax(with_velocity, velocities=False).valid
    assert not msyntax.check_remi_syntax(without, velocities=True).valid


def test_note_validity_counts_the_broken_group_only():
    tokens = [
        "Bar_None",
        "Position_0",
        "Program_0",
        "Pitch_60",
        "Velocity_80",
        "Duration_1.0.8",
        "Program_0",
        "Pitch_64",
        "Duration_1.0.8",  # no velocity
        "Program_0",
        "Pitch_67",
        "Velocity_80",
        "Duration_1.0.8",
    ]
    report = msyntax.check_remi_syntax(tokens)
    assert (report.n_notes, report.n_valid_notes, report.n_errors) == (3, 2, 1)
    assert report.first_error == "8: Duration_1.0.8: Duration may not follow Pitch"
    # Without velocities: Program Pitch Program ... leaves the first group without its Duration.
    tokens = ["Bar_None", "Position_0", "Program_0", "Pitch_60", "Program_0", "Pitch_64", "Duration_1.0.8"]
    report = msyntax.check_remi_syntax(tokens)
    assert (report.n_notes, report.n_valid_notes, report.n_errors) == (2, 0, 1)


def test_value_errors_and_unknown_tokens():
    base = ["Bar_None", "TimeSig_3/4", "Position_0", "Program_0", "Pitch_60", "Velocity_80", "Duration_1.0.8"]
    assert msyntax.check_remi_syntax(base, resolution=8).valid
    for i, bad, reason in (
        (4, "Pitch_200", "pitch out of range"),
        (5, "Velocity_0", "velocity out of range"),
        (6, "Duration_1.0", "duration"),
        (2, "Position_24", "beyond the end of the bar"),
        (3, "Chord_maj", "not a token of this REMI vocabulary"),
        (1, "TimeSig_x", "time signature"),
    ):
        tokens = base[:i] + [bad] + base[i + 1 :]
        report = msyntax.check_remi_syntax(tokens, resolution=8)
        assert not report.valid and reason in report.first_error, (bad, report)
    # Position 24 is fine without a resolution to size the bar.
    assert msyntax.check_remi_syntax(base[:2] + ["Position_24"] + base[3:]).valid


def test_special_tokens_and_a_group_cut_off_by_the_token_budget():
    body = ["Bar_None", "Position_0", "Program_0", "Pitch_60", "Velocity_80", "Duration_1.0.8"]
    report = msyntax.check_remi_syntax(["BOS_None", *body, "Program_0", "Pitch_62", "Velocity_80"])
    assert report.valid and report.n_notes == 1 and report.n_tokens == 9
    report = msyntax.check_remi_syntax([*body, "EOS_None", "Velocity_80", "PAD_None"])
    assert report.valid and report.n_tokens == 6
    # A stream may start mid-bar at a Position (a prompt cut from a piece)...
    assert msyntax.check_remi_syntax(["Position_8", *body[2:]]).valid
    # ...but a note needs a Position in its bar.
    assert not msyntax.check_remi_syntax(body[2:]).valid
    assert msyntax.check_remi_syntax([]).valid and math.isnan(msyntax.check_remi_syntax([]).note_validity)


def test_rest_lets_position_restart_as_in_miditok():
    tokens = [
        "Bar_None",
        "Position_16",
        "Program_0",
        "Pitch_60",
        "Velocity_80",
        "Duration_1.0.8",
        "Rest_1.0.8",
        "Position_8",
        "Program_0",
        "Pitch_62",
        "Velocity_80",
        "Duration_1.0.8",
    ]
    assert msyntax.check_remi_syntax(tokens).valid
    assert not msyntax.check_remi_syntax(tokens[:6] + tokens[7:]).valid


def test_syntax_validity_rate():
    good = ["Bar_None", "Position_0", "Program_0", "Pitch_60", "Velocity_80", "Duration_1.0.8"]
    bad = ["Bar_None", "Pitch_60"]
    assert msyntax.syntax_validity_rate([good, good, bad, good]) == 0.75
    assert math.isnan(msyntax.syntax_validity_rate([]))


def test_module_stays_light():
    code = (
        "import sys, engine.music.metrics, engine.music.reference, engine.music.syntax;"
        "import engine.monitoring.anomaly, engine.contract.monitor_config;"
        "heavy = {'torch', 'symusic', 'miditok', 'music21', 'PySide6'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
