"""The built-in corpus: the Bach chorales that ship with music21, exported once to MIDI with one
program per voice. music21 and symusic load only here, while exporting.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

TICKS_PER_QUARTER = 480
# One woodwind per voice (flute, clarinet, English horn, bassoon): the voices
# stay distinguishable in tokens (Program_*), in a piano roll and by ear.
# music21's own export writes every voice as program 0.
VOICE_PROGRAMS = {"soprano": 73, "alto": 71, "tenor": 69, "bass": 70}

Progress = Callable[[str, int, int], None]


def _chorale_paths() -> list[Path]:
    from music21 import corpus

    return sorted(Path(p) for p in corpus.getComposer("bach"))


def _export_chorale(args: tuple[str, str]) -> tuple[str, str | None]:
    """Parse one chorale with music21 and write it as MIDI. Returns (name, skip reason)."""
    src, out_dir = args
    name = Path(src).name.removesuffix(".mxl").removesuffix(".xml")
    try:
        score = _chorale_to_score(src)
    except Exception as exc:  # music21 raises many kinds on odd files; skip and report
        return name, f"music21 could not read it: {type(exc).__name__}: {exc}"
    if isinstance(score, str):
        return name, score
    score.dump_midi(str(Path(out_dir) / f"{name}.mid"))
    return name, None


def _chorale_to_score(src: str):
    """Build the MIDI directly from the parsed notes.

    Writing our own notes (rather than music21's MIDI exporter) sidesteps the
    chorale whose malformed repeat marks break that exporter, and gives each
    voice its own program. Ties are merged; a pickup bar is padded so that
    bar lines in the tokens fall on real downbeats.
    """
    import symusic
    from music21 import corpus, meter, tempo

    parsed = corpus.parse(src)
    voices = {}
    for part in parsed.parts:
        # Names like "Soprano 1" or "Soprano Oboe 1 Violin1" double the voice with instruments.
        words = (part.partName or "").replace("\r", " ").lower().split()
        if words and words[0] in VOICE_PROGRAMS and words[0] not in voices:
            voices[words[0]] = part
    if not voices and len(parsed.parts) == 4:
        # Humdrum chorales carry no part names: the highest-sounding part is the soprano, and so on down.
        def mean_pitch(part) -> float:
            pitches = [p.midi for n in part.flatten().notes for p in n.pitches]
            return sum(pitches) / len(pitches) if pitches else 0.0

        ordered = sorted(parsed.parts, key=mean_pitch, reverse=True)
        voices = dict(zip(("soprano", "alto", "tenor", "bass"), ordered))
    if len(voices) != 4:
        names = [p.partName for p in parsed.parts]
        return f"not a four-voice chorale (parts: {names})"
    first_measure = voices["soprano"].getElementsByClass("Measure").first()
    pickup = float(first_measure.paddingLeft) if first_measure is not None else 0.0
    # The tick classes the factories (symusic.Score, ...) build: the factories' stubs return generic placeholders.
    score = symusic.core.ScoreTick(TICKS_PER_QUARTER)
    signatures = parsed.flatten().getElementsByClass(meter.TimeSignature)
    ts = signatures.first() if signatures else None
    score.time_signatures.append(
        symusic.core.TimeSignatureTick(0, ts.numerator if ts else 4, ts.denominator if ts else 4)
    )
    marks = parsed.flatten().getElementsByClass(tempo.MetronomeMark)
    qpm = float(marks.first().getQuarterBPM()) if marks else 80.0
    score.tempos.append(symusic.core.TempoTick(0, qpm))
    for key in ("soprano", "alto", "tenor", "bass"):
        track = symusic.core.TrackTick(key.capitalize(), VOICE_PROGRAMS[key], False)
        for note in voices[key].stripTies().flatten().notes:
            # MIDI has no grace notes: written as 1-tick notes they would decode as the grid's shortest
            # note, stealing time from the note they ornament. Left out.
            if note.duration.isGrace:
                continue
            start = round((float(note.offset) + pickup) * TICKS_PER_QUARTER)
            duration = max(1, round(float(note.quarterLength) * TICKS_PER_QUARTER))
            for pitch in note.pitches:
                track.notes.append(symusic.core.NoteTick(start, duration, int(pitch.midi), 80))
        score.tracks.append(track)
    if sum(len(t.notes) for t in score.tracks) == 0:
        return "no notes"
    return score


def export_bach(out_dir: Path, max_pieces: int | None, progress: Progress) -> list[tuple[str, str]]:
    """Export the chorales to ``out_dir``; returns the skipped (name, reason) pairs."""
    paths = _chorale_paths()
    if max_pieces:
        # A few extra: some files in the corpus are not four-voice chorales.
        paths = paths[: max_pieces * 2]
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(str(p), str(out_dir)) for p in paths]
    skipped = []
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    with ProcessPoolExecutor(workers) as pool:
        for done, (name, reason) in enumerate(pool.map(_export_chorale, jobs, chunksize=4), 1):
            if reason:
                skipped.append((name, reason))
            progress("exporting Bach chorales to MIDI", done, len(jobs))
    return skipped
