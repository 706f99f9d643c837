"""Musical quality metrics on notes: what one piece measures, as plain floats.

Plain numpy, no torch and no Qt, so the GUI can recompute or read them cheaply.
Most definitions follow MusPy (Dong et al., "MusPy: A Toolkit for Symbolic
Music Generation", ISMIR 2020; ``muspy/metrics/metrics.py``); each docstring
says where it comes from and where it deliberately differs.

The note array
--------------
A piece is a float64 array of shape ``(N, 5)``; the columns are named by the
constants below::

    START     onset in beats (quarter notes) from the start of the piece, >= 0
    DURATION  length in beats, >= 0
    PITCH     MIDI pitch 0..127
    VELOCITY  MIDI velocity 1..127 (carried along, unused by the metrics)
    VOICE     track / voice id (any integer; ordering does not matter)

An empty piece is ``np.zeros((0, 5))``. :func:`as_notes` checks and converts
anything array-like; :func:`notes_from_score` reads a symusic ``Score``.

The grid
--------
Metrics are computed on a fixed grid of ``resolution`` steps per beat (8 in
Podium, the tokenizer's ``positions_per_beat``), so that samples and reference
pieces are measured alike. A note occupies steps ``[round(start * res),
max(that + 1, round(end * res)))``: every note, however short, sounds for at
least one step. The piece spans steps ``[0, T)`` where ``T`` is the last note
end; leading silence belongs to the piece, trailing silence after the last
note does not (no note tells us it is there).

Empty pieces
------------
Counting metrics (``pitch_range``, ``n_pitches_used``,
``n_pitch_classes_used``) are 0 for an empty piece, as in MusPy; every ratio
whose denominator would be zero is NaN (documented per function). No metric
raises on an empty piece.

Drums
-----
Drum tracks are left out of every metric (:func:`notes_from_score`): a drum
note's pitch names an instrument, not a pitch, so pitch, interval, scale and
voice metrics would measure nonsense, and a rhythm section would make texture
metrics (polyphony, empty beats) compare a band with four voices. A corpus of
drums alone has no metrics (NaN, every metric undefined).

Grace notes
-----------
The chorale export leaves grace notes out (MIDI has none), so they never
reach the metrics; a user's MIDI file writes them as short notes, measured as
one grid step.

Using it in training
--------------------
::

    # once, cached (JSON-serialisable); validation pieces after the same
    # tokenize/decode round trip the samples go through (see reference_stats)
    ref = reference.reference_stats([notes_from_score(tok.decode(tok.encode(s))) for s in val_scores],
                          resolution=8, window_beats=32)
    per_sample = [compute_all(notes_from_score(s), resolution=8) for s in samples]
    score = reference.quality_score(per_sample, ref)    # [0, 1], 1 = like the reference
    detail = reference.quality_report(per_sample, ref)  # per-metric z and similarity

The reference and the score are :mod:`engine.music.reference`; token syntax is checked
separately, on the generated token strings, by :mod:`engine.music.syntax`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

START, DURATION, PITCH, VELOCITY, VOICE = range(5)
N_COLUMNS = 5

# MusPy's scale masks (C major and C natural minor); other keys are rotations.
_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)
_SCALES = np.array([np.roll(m, k) for m in (_MAJOR, _MINOR) for k in range(12)])  # (24, 12)


# --------------------------------------------------------------------------- notes


def as_notes(notes: Any) -> np.ndarray:
    """Return ``notes`` as a checked float64 ``(N, 5)`` array (see the module docstring)."""
    arr = np.asarray(notes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, N_COLUMNS))
    if arr.ndim != 2 or arr.shape[1] != N_COLUMNS:
        raise ValueError(f"notes must have shape (N, 5) [start, duration, pitch, velocity, voice], got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("notes contain NaN or infinite values")
    if (arr[:, START] < 0).any() or (arr[:, DURATION] < 0).any():
        raise ValueError("note starts and durations must be >= 0")
    if ((arr[:, PITCH] < 0) | (arr[:, PITCH] > 127)).any():
        raise ValueError("pitches must be MIDI numbers 0..127")
    return arr


def notes_from_score(score: Any) -> np.ndarray:
    """Notes of a symusic ``Score`` (any time unit) as a note array; drum tracks are left out (see Drums above).

    Times are converted to beats (quarter notes) from the score's ticks per
    quarter; the voice id is the track's index in ``score.tracks``. Only the
    Score's own methods are used, so this module never imports symusic.
    """
    tick_score = score if str(score.ttype).endswith("Tick") else score.to("tick")
    tpq = float(tick_score.ticks_per_quarter)
    parts = []
    for voice, track in enumerate(tick_score.tracks):
        if track.is_drum or len(track.notes) == 0:
            continue
        cols = track.notes.numpy()
        n = len(cols["time"])
        parts.append(
            np.column_stack(
                [
                    cols["time"] / tpq,
                    cols["duration"] / tpq,
                    cols["pitch"].astype(np.float64),
                    cols["velocity"].astype(np.float64),
                    np.full(n, float(voice)),
                ]
            )
        )
    if not parts:
        return np.zeros((0, N_COLUMNS))
    notes = np.concatenate(parts)
    return notes[np.lexsort((notes[:, PITCH], notes[:, START]))]


def score_beats_per_bar(score: Any, default: float = 4.0) -> float:
    """Bar length in beats (quarter notes) from the score's first time signature, else ``default``."""
    sigs = score.time_signatures
    if len(sigs) == 0:
        return default
    first = sigs[0]
    return first.numerator * 4.0 / first.denominator


def crop_windows(notes: Any, window_beats: float) -> list[np.ndarray]:
    """Cut a piece into consecutive windows of ``window_beats`` beats, each shifted to start at 0.

    A note belongs to the window its onset falls in and is cut at the window's
    end. Empty windows are dropped. Used to measure reference pieces at the
    length of generated samples, because some metrics (pitch range, pitches
    used) grow with length.
    """
    notes = as_notes(notes)
    if window_beats <= 0:
        raise ValueError(f"window_beats must be positive, got {window_beats}")
    if len(notes) == 0:
        return []
    index = np.floor(notes[:, START] / window_beats).astype(int)
    out = []
    for w in np.unique(index):
        part = notes[index == w].copy()
        part[:, START] -= w * window_beats
        part[:, DURATION] = np.minimum(part[:, DURATION], window_beats - part[:, START])
        out.append(part)
    return out


# --------------------------------------------------------------------------- grid


def _grid(notes: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Onset and end steps (ints) of each note on the grid; see the module docstring."""
    if resolution < 1:
        raise ValueError(f"resolution must be a positive number of steps per beat, got {resolution}")
    # floor(x + 0.5) rounds halves up; np.rint would round them to even.
    starts = np.floor(notes[:, START] * resolution + 0.5).astype(np.int64)
    ends = np.floor((notes[:, START] + notes[:, DURATION]) * resolution + 0.5).astype(np.int64)
    return starts, np.maximum(ends, starts + 1)


def _pianoroll(notes: np.ndarray, resolution: int) -> np.ndarray:
    """Binary ``(T, 128)`` pianoroll: which pitches sound at each step (unisons merge, as in MusPy)."""
    starts, ends = _grid(notes, resolution)
    length = int(ends.max()) if len(ends) else 0
    delta = np.zeros((length + 1, 128), np.int64)
    pitches = notes[:, PITCH].astype(np.int64)
    np.add.at(delta, (starts, pitches), 1)
    np.add.at(delta, (ends, pitches), -1)
    return np.cumsum(delta, axis=0)[:length] > 0


def _steps_per_bar(resolution: int, beats_per_bar: float) -> int:
    steps = int(round(beats_per_bar * resolution))
    if steps < 1:
        raise ValueError(f"beats_per_bar must be positive, got {beats_per_bar}")
    return steps


# --------------------------------------------------------------------------- pitch metrics


def pitch_range(notes: Any) -> int:
    """Highest minus lowest pitch in semitones; 0 for an empty piece.

    MusPy ``pitch_range`` (Dong et al. 2020).
    """
    notes = as_notes(notes)
    if len(notes) == 0:
        return 0
    return int(notes[:, PITCH].max() - notes[:, PITCH].min())


def n_pitches_used(notes: Any) -> int:
    """Number of distinct MIDI pitches; 0 for an empty piece. MusPy ``n_pitches_used``."""
    return int(len(np.unique(as_notes(notes)[:, PITCH])))


def n_pitch_classes_used(notes: Any) -> int:
    """Number of distinct pitch classes (pitch mod 12), 0..12; 0 for an empty piece.

    MusPy ``n_pitch_classes_used``.
    """
    return int(len(np.unique(as_notes(notes)[:, PITCH].astype(np.int64) % 12)))


def _entropy_bits(counts: np.ndarray) -> float:
    total = counts.sum()
    if total < 1:
        return math.nan
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def pitch_entropy(notes: Any) -> float:
    """Shannon entropy (bits) of the histogram of note pitches, each note counted once.

    MusPy ``pitch_entropy``: ``-sum_i P(pitch=i) log2 P(pitch=i)``. NaN for an
    empty piece.
    """
    pitches = as_notes(notes)[:, PITCH].astype(np.int64)
    return _entropy_bits(np.bincount(pitches, minlength=128))


def pitch_class_entropy(notes: Any) -> float:
    """Shannon entropy (bits) of the pitch-class histogram, 0..log2(12) = 3.585.

    MusPy ``pitch_class_entropy`` (after Wu & Yang, "The Jazz Transformer on
    the Front Line", ISMIR 2020): ``-sum_{i=0}^{11} P(pc=i) log2 P(pc=i)``,
    each note counted once regardless of its length. Low values mean few pitch
    classes dominate (a collapsing model); tonal music sits near 3. NaN for an
    empty piece.
    """
    pcs = as_notes(notes)[:, PITCH].astype(np.int64) % 12
    return _entropy_bits(np.bincount(pcs, minlength=12))


def scale_consistency(notes: Any) -> float:
    """Largest fraction of notes that fit one major or natural-minor scale, over all 24.

    MusPy ``scale_consistency`` (after Mogren, C-RNN-GAN, 2016):
    ``max_{root, mode} #(notes in scale) / #(notes)``. Each note counts once.
    NaN for an empty piece.
    """
    notes = as_notes(notes)
    if len(notes) == 0:
        return math.nan
    counts = np.bincount(notes[:, PITCH].astype(np.int64) % 12, minlength=12)
    return float((_SCALES @ counts).max() / len(notes))


def mean_abs_interval(notes: Any) -> float:
    """Mean absolute melodic interval (semitones) between successive onsets within each voice.

    Not in MusPy. Per voice, the highest pitch at each onset time is the
    melody note (chorale voices are monophonic, so this is just the voice);
    intervals are taken between successive onsets of the same voice and
    averaged over all voices. Large values flag jumpy, unvocal lines. NaN when
    no voice has two onsets.
    """
    notes = as_notes(notes)
    intervals = []
    for voice in np.unique(notes[:, VOICE]):
        part = notes[notes[:, VOICE] == voice]
        order = np.lexsort((-part[:, PITCH], part[:, START]))
        part = part[order]
        # After sorting by (start, -pitch) the first note of each onset group is its highest.
        first = np.ones(len(part), bool)
        first[1:] = part[1:, START] != part[:-1, START]
        line = part[first, PITCH]
        intervals.append(np.abs(np.diff(line)))
    joined = np.concatenate(intervals) if intervals else np.zeros(0)
    return float(joined.mean()) if len(joined) else math.nan


# --------------------------------------------------------------------------- texture metrics


def polyphony(notes: Any, resolution: int) -> float:
    """Mean number of pitches sounding, over the grid steps where at least one sounds.

    MusPy ``polyphony``: ``#(pitches when >= 1 on) / #(steps with >= 1 on)``,
    on the binary pianoroll, so two voices in unison count once. A four-part
    chorale is close to 4. NaN for an empty piece.
    """
    roll = _pianoroll(as_notes(notes), resolution)
    active = roll.any(axis=1)
    if not active.any():
        return math.nan
    return float(roll.sum() / active.sum())


def polyphony_rate(notes: Any, resolution: int, threshold: int = 2) -> float:
    """Fraction of grid steps where more than ``threshold`` pitches sound.

    MusPy ``polyphony_rate`` ("polyphonicity" in MuseGAN, Dong et al. 2018):
    ``#(steps with > threshold pitches on) / #(steps)``. MusPy's default
    threshold 2 is kept, so by default a step counts when three or more
    pitches sound: for four-part writing this measures how often the texture
    is (nearly) full. Silent steps are in the denominator. NaN for an empty
    piece.
    """
    roll = _pianoroll(as_notes(notes), resolution)
    if len(roll) == 0:
        return math.nan
    return float(np.count_nonzero(roll.sum(axis=1) > threshold) / len(roll))


def empty_beat_rate(notes: Any, resolution: int) -> float:
    """Fraction of beats in which no note sounds.

    MusPy ``empty_beat_rate`` (also in Pypianoroll): ``#(empty beats) /
    #(beats)``. Beats are ``[b, b + 1)`` for ``b`` in ``0 .. ceil(T / res) - 1``
    and a beat is non-empty when any note sounds during any of its steps. This
    follows MusPy's definition; MusPy 0.5's loop differs by one beat at the
    edges (it also marks the beat in which a note *ends* exactly, and counts
    ``T // res + 1`` beats), which would report a half-empty piece as less
    empty than it is. NaN for an empty piece.
    """
    roll = _pianoroll(as_notes(notes), resolution)
    if len(roll) == 0:
        return math.nan
    n_beats = -(-len(roll) // resolution)
    active = np.zeros(n_beats * resolution, bool)
    active[: len(roll)] = roll.any(axis=1)
    return float(1.0 - active.reshape(n_beats, resolution).any(axis=1).mean())


def note_density(notes: Any, resolution: int) -> float:
    """Notes per beat: number of notes divided by the piece's length in beats (``T / res``).

    Not in MusPy. The length is measured on the grid from 0 to the last note
    end, so leading silence lowers the density. A four-part chorale in
    quarter notes has 4. NaN for an empty piece.
    """
    notes = as_notes(notes)
    if len(notes) == 0:
        return math.nan
    _, ends = _grid(notes, resolution)
    return float(len(notes) / (ends.max() / resolution))


def voice_crossing_rate(notes: Any, resolution: int) -> float:
    """Fraction of grid steps, among those where two or more voices sound, at which voices cross.

    Not in MusPy. Voices are ranked by their mean pitch over the piece
    (soprano highest), so the result does not depend on track order. At each
    step each sounding voice contributes its highest sounding pitch; the step
    is crossed when a voice ranked higher sounds strictly lower than a voice
    ranked below it. Bach crosses voices rarely; a model that has not learnt
    part writing crosses often. NaN when fewer than two voices ever sound
    together.
    """
    notes = as_notes(notes)
    voices = np.unique(notes[:, VOICE])
    if len(voices) < 2:
        return math.nan
    starts, ends = _grid(notes, resolution)
    mean_pitch = np.array([notes[notes[:, VOICE] == v, PITCH].mean() for v in voices])
    rank = {v: r for r, v in enumerate(voices[np.argsort(-mean_pitch, kind="stable")])}
    top = np.full((len(voices), int(ends.max())), -1.0)  # -1 = voice silent at that step
    for (s, e), pitch, voice in zip(zip(starts, ends), notes[:, PITCH], notes[:, VOICE]):
        row = top[rank[voice]]
        row[s:e] = np.maximum(row[s:e], pitch)
    sounding = top >= 0
    together = sounding.sum(axis=0) >= 2
    if not together.any():
        return math.nan
    # Going down the ranks, a crossed step has some sounding voice above the
    # lowest pitch already seen in higher-ranked voices.
    seen_min = np.full(top.shape[1], np.inf)
    crossed = np.zeros(top.shape[1], bool)
    for r in range(len(voices)):
        row = top[r]
        crossed |= sounding[r] & (row > seen_min)
        seen_min = np.where(sounding[r], np.minimum(seen_min, row), seen_min)
    return float(crossed[together].mean())


# --------------------------------------------------------------------------- rhythm and form


def groove_consistency(notes: Any, resolution: int, beats_per_bar: float = 4.0) -> float:
    """One minus the mean Hamming distance between onset patterns of neighbouring bars.

    MusPy ``groove_consistency`` (after Wu & Yang 2020): ``1 - 1/(T-1)
    sum_i d(G_i, G_{i+1}) / steps_per_bar`` where ``G_i`` is bar ``i``'s
    binary onset vector on the grid and ``T`` the number of bars. Bars are
    ``ceil(length / steps_per_bar)``; MusPy 0.5 counts ``length //
    steps_per_bar + 1``, which adds an empty phantom bar to every piece that
    ends on a bar line. Assumes a constant metre. NaN with fewer than two bars.
    """
    notes = as_notes(notes)
    if len(notes) == 0:
        return math.nan
    per_bar = _steps_per_bar(resolution, beats_per_bar)
    starts, ends = _grid(notes, resolution)
    n_bars = -(-int(ends.max()) // per_bar)
    if n_bars < 2:
        return math.nan
    onsets = np.zeros(n_bars * per_bar, bool)
    onsets[starts] = True
    patterns = onsets.reshape(n_bars, per_bar)
    hamming = np.count_nonzero(patterns[:-1] != patterns[1:])
    return float(1.0 - hamming / (per_bar * (n_bars - 1)))


def bar_repetition_rate(notes: Any, resolution: int, beats_per_bar: float = 4.0) -> float:
    """Fraction of non-empty bars whose notes repeat an earlier bar exactly.

    Not in MusPy; a detector of "musical collapse" (a model looping one bar).
    A bar's content is the set of (onset step within the bar, pitch, length in
    steps) of the notes starting in it, voices ignored. NaN when no bar has an
    onset.
    """
    notes = as_notes(notes)
    if len(notes) == 0:
        return math.nan
    per_bar = _steps_per_bar(resolution, beats_per_bar)
    starts, ends = _grid(notes, resolution)
    bars = starts // per_bar
    seen: set[frozenset] = set()
    repeated = 0
    for bar in np.unique(bars):
        sel = bars == bar
        content = frozenset(
            zip(
                (starts[sel] % per_bar).tolist(),
                notes[sel, PITCH].astype(int).tolist(),
                (ends[sel] - starts[sel]).tolist(),
            )
        )
        repeated += content in seen
        seen.add(content)
    return float(repeated / len(np.unique(bars)))


# --------------------------------------------------------------------------- all together

METRICS: tuple[str, ...] = (
    "pitch_range",
    "n_pitches_used",
    "n_pitch_classes_used",
    "pitch_entropy",
    "pitch_class_entropy",
    "scale_consistency",
    "mean_abs_interval",
    "polyphony",
    "polyphony_rate",
    "empty_beat_rate",
    "note_density",
    "voice_crossing_rate",
    "groove_consistency",
    "bar_repetition_rate",
)


def compute_all(notes: Any, resolution: int = 8, beats_per_bar: float = 4.0) -> dict[str, float]:
    """Every metric in :data:`METRICS` for one piece, as plain floats (NaN where undefined)."""
    notes = as_notes(notes)
    return {
        "pitch_range": float(pitch_range(notes)),
        "n_pitches_used": float(n_pitches_used(notes)),
        "n_pitch_classes_used": float(n_pitch_classes_used(notes)),
        "pitch_entropy": pitch_entropy(notes),
        "pitch_class_entropy": pitch_class_entropy(notes),
        "scale_consistency": scale_consistency(notes),
        "mean_abs_interval": mean_abs_interval(notes),
        "polyphony": polyphony(notes, resolution),
        "polyphony_rate": polyphony_rate(notes, resolution),
        "empty_beat_rate": empty_beat_rate(notes, resolution),
        "note_density": note_density(notes, resolution),
        "voice_crossing_rate": voice_crossing_rate(notes, resolution),
        "groove_consistency": groove_consistency(notes, resolution, beats_per_bar),
        "bar_repetition_rate": bar_repetition_rate(notes, resolution, beats_per_bar),
    }
