"""What a decoded sample needs to play right in any MIDI player: the data's tempo, a standard resolution,
one time signature per change the model wrote, and the data's voice names."""

from __future__ import annotations

import statistics

from engine.music.chorales import TICKS_PER_QUARTER


def corpus_tempo(meta: dict) -> float:
    """The corpus's typical tempo (median of each piece's opening tempo, quarter notes per minute)."""
    return float(statistics.median(meta["qpm"])) if meta.get("qpm") else 120.0


def finish_score(score, qpm: float, voice_names: dict[str, str] | None = None):
    """``score`` (as miditok decodes it) at 480 ticks per quarter, at ``qpm``, with each track named after
    its voice in the data, and a time signature only where it changes."""
    import symusic

    score = score.resample(TICKS_PER_QUARTER)
    score.tempos = [symusic.Tempo(0, qpm)]
    changes: list[symusic.core.TimeSignatureTick] = []  # resampled to ticks above
    for ts in score.time_signatures:
        if not changes or (changes[-1].numerator, changes[-1].denominator) != (ts.numerator, ts.denominator):
            changes.append(ts)
    score.time_signatures = changes
    for track in score.tracks:
        program = "-1" if track.is_drum else str(track.program)
        if voice_names and program in voice_names:
            track.name = voice_names[program]
    return score
