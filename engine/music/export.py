"""What a decoded sample needs to play right in any MIDI player: the data's tempo, a standard resolution,
one time signature per change the model wrote, and the data's voice names."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from engine.music.chorales import TICKS_PER_QUARTER

DEFAULT_QPM = 120.0  # MIDI's own default, for data that says nothing


@dataclass(frozen=True)
class DataFacts:
    """What a sample's export and grammar take from its data: the tempo, each program's voice name, and whether
    the data changes time signature. Saved in each checkpoint's manifest (``music``) so ``podium sample``
    exports as training does."""

    qpm: float = DEFAULT_QPM
    voice_names: dict[str, str] = field(default_factory=dict)
    meter_changes: bool = False

    @classmethod
    def of_corpus(cls, meta: dict) -> DataFacts:
        return cls(corpus_tempo(meta), dict(meta.get("voice_names") or {}), bool(meta.get("meter_changes", False)))

    def as_json(self) -> dict:
        return {"qpm": self.qpm, "voice_names": self.voice_names, "meter_changes": self.meter_changes}


def corpus_tempo(meta: dict) -> float:
    """The corpus's typical tempo (median of each piece's opening tempo, quarter notes per minute)."""
    return float(statistics.median(meta["qpm"])) if meta.get("qpm") else DEFAULT_QPM


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
