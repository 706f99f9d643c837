"""The grammar check of generated REMI token streams: :func:`check_remi_syntax` and the share of
sequences that pass it.

Plain Python on token strings, no tokenizer needed; the tests check it agrees with miditok's own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Which token type may follow which in a miditok REMI stream with
# use_programs=True (one stream, no program changes) and duration tokens: the
# union of miditok 3.1's REMI._create_token_types_graph over
# use_time_signatures / use_tempos / use_rests on and off, so one table serves
# any of those settings. With velocities a Velocity token sits between Pitch
# and Duration. Special tokens (BOS, EOS, PAD) are handled apart.
_REMI_NEXT: dict[str, frozenset[str]] = {
    "Bar": frozenset({"Bar", "TimeSig", "Position"}),
    "TimeSig": frozenset({"Bar", "Position", "Program", "Rest"}),
    "Position": frozenset({"Program", "Tempo"}),
    "Tempo": frozenset({"Bar", "Position", "Program", "Rest", "TimeSig"}),
    "Rest": frozenset({"Bar", "Position", "Program", "Rest", "Tempo", "TimeSig"}),
    "Program": frozenset({"Pitch", "PitchDrum"}),
    "Pitch": frozenset({"Duration"}),
    "PitchDrum": frozenset({"Duration"}),
    "Duration": frozenset({"Bar", "Position", "Program", "Rest"}),
}
_REMI_NEXT_VELOCITY: dict[str, frozenset[str]] = {
    **_REMI_NEXT,
    "Pitch": frozenset({"Velocity"}),
    "PitchDrum": frozenset({"Velocity"}),
    "Velocity": frozenset({"Duration"}),
}


@dataclass(frozen=True)
class SyntaxReport:
    """Outcome of :func:`check_remi_syntax`.

    ``n_notes`` counts note groups (one per Pitch token, a trailing group cut
    off by the token budget excluded); ``n_valid_notes`` those that are
    well-formed. ``n_errors`` counts every offending token once, whether in a
    note group or not. ``first_error`` is ``"index: token: reason"`` or None.
    """

    n_tokens: int
    n_notes: int
    n_valid_notes: int
    n_errors: int
    first_error: str | None

    @property
    def valid(self) -> bool:
        """No error anywhere. A sequence without notes is syntactically valid (its emptiness
        shows in the note metrics instead)."""
        return self.n_errors == 0

    @property
    def note_validity(self) -> float:
        """Fraction of note groups that are well-formed; NaN without notes."""
        return self.n_valid_notes / self.n_notes if self.n_notes else math.nan


def check_remi_syntax(
    tokens: Sequence[str], resolution: int | None = None, velocities: bool | None = None
) -> SyntaxReport:
    """Check a miditok REMI token stream (``use_programs=True``) for grammatical errors.

    ``tokens`` are token strings as miditok emits them, e.g. ``Bar_None
    TimeSig_4/4 Position_0 Program_73 Pitch_60 Velocity_63 Duration_1.0.8``.
    ``velocities`` says whether the vocabulary has Velocity tokens (Podium's
    has not: chorales carry no dynamics); None infers it from the stream,
    which is exact unless a velocity vocabulary's sample has none at all.
    A leading ``BOS_None`` is skipped; the sequence ends at the first
    ``EOS_None`` or ``PAD_None``. The stream may start anywhere (a prompt cut
    from the middle of a piece); what a token needs must have come before it.

    Errors, each counted once at the offending token:

    * a token type that may not follow the previous one (table above: e.g.
      ``Position`` comes after ``Bar``/``TimeSig``/``Duration``/..., ``Pitch``
      only after ``Program``, ``Duration`` only after ``Pitch``, or after
      ``Velocity`` which comes after ``Pitch``), or a malformed token or one
      of a type outside the vocabulary;
    * a value that does not parse or is out of range (Pitch 0..127, Velocity
      1..127, Duration ``beats.steps.resolution``, TimeSig ``n/d``);
    * time not moving forward: a ``Position`` not after the previous one in
      the same bar (except after a ``Rest``, which moves time itself, as in
      miditok), or, when ``resolution`` is given and the bar's ``TimeSig`` is
      known, a Position beyond the bar's end;
    * a note before any Position in its bar.

    Duplicate notes (same program, pitch and position) are not errors: voices
    sharing a program sing unisons. miditok flags them only with
    ``remove_duplicated_notes``.

    A note group (Program, Pitch, [Velocity,] Duration) is valid when none of
    its tokens nor the Position it sits at is an error. A group cut off at the end of the sequence
    is not counted: generation stops at a token budget, not at a note
    boundary. The rules mirror miditok's own ``tokens_errors`` for REMI (the
    tests check that the two agree on real and corrupted streams), with one
    addition: miditok lets a note follow ``TimeSig`` with no Position (and
    decodes it at the bar's start), which its encoder never writes; here it
    is an error, since a model that skips Positions has not learnt the grid.
    """
    seq = list(tokens)
    if seq and seq[0] == "BOS_None":
        seq = seq[1:]
    for i, tok in enumerate(seq):
        if tok in ("EOS_None", "PAD_None"):
            seq = seq[:i]
            break
    if velocities is None:
        velocities = any(tok.startswith("Velocity_") for tok in seq)
    table = _REMI_NEXT_VELOCITY if velocities else _REMI_NEXT

    n_errors = n_notes = n_valid = 0
    first_error: str | None = None
    prev: str | None = None  # type of the previous token; None = no constraint on the next
    position = -1  # position in the current bar; -1 = none since the last Bar
    bar_len: int | None = None  # positions in the current bar, when known
    after_rest = False
    position_ok = False  # whether the last Position token was well-formed
    program_ok = False  # whether the last Program token was well-formed
    group_ok: bool | None = None  # None = not inside a note group

    for i, tok in enumerate(seq):
        kind, sep, value = tok.partition("_")
        known = bool(sep) and kind in table
        error: str | None = None
        if not known:
            error = "not a token of this REMI vocabulary"
        elif prev is not None and kind not in table[prev]:
            error = f"{kind} may not follow {prev}"
        elif kind == "Bar":
            position, bar_len = -1, None
        elif kind == "TimeSig":
            num, _, den = value.partition("/")
            if not (num.isdigit() and den.isdigit() and int(num) > 0 and int(den) > 0):
                error = "time signature is not n/d"
            elif resolution:
                bar_len = int(round(int(num) * 4 / int(den) * resolution))
        elif kind == "Rest":
            after_rest = True
        elif kind == "Position":
            if not value.isdigit():
                error = "position is not a number"
            elif int(value) <= position and not after_rest:
                error = f"time does not move forward (position {value} after {position})"
            elif bar_len is not None and int(value) >= bar_len:
                error = f"position beyond the end of the bar ({bar_len} positions)"
            else:
                position = int(value)
            after_rest = False
        elif kind == "Program":
            if not value.removeprefix("-").isdigit() or not -1 <= int(value) <= 127:
                error = "program is not a number"
        elif kind in ("Pitch", "PitchDrum"):
            if not value.isdigit() or int(value) > 127:
                error = "pitch out of range"
            elif position < 0:
                error = "note before any Position in its bar"
        elif kind == "Velocity":
            if not value.isdigit() or not 1 <= int(value) <= 127:
                error = "velocity out of range"
        elif kind == "Duration":
            parts = value.split(".")
            if len(parts) != 3 or not all(p.isdigit() for p in parts) or int(parts[2]) == 0:
                error = "duration is not beats.steps.resolution"

        if error is not None:
            n_errors += 1
            if first_error is None:
                first_error = f"{i}: {tok}: {error}"

        # A note group opens at its Pitch (with the Program just before it)
        # and closes at its Duration; anything else in between abandons it,
        # and that token is already a type error.
        if kind in ("Pitch", "PitchDrum"):
            n_notes += 1
            group_ok = error is None and prev == "Program" and program_ok and position_ok
        elif group_ok is not None and kind == "Velocity":
            group_ok = group_ok and error is None
        elif group_ok is not None and kind == "Duration":
            n_valid += group_ok and error is None
            group_ok = None
        else:
            group_ok = None
        if kind == "Program":
            program_ok = error is None
        elif kind == "Position":
            position_ok = error is None
        prev = kind if known else None

    if group_ok is not None:
        n_notes -= 1
    return SyntaxReport(len(seq), n_notes, n_valid, n_errors, first_error)


def syntax_validity_rate(sequences: Iterable[Sequence[str]], resolution: int | None = None) -> float:
    """Fraction of token sequences with no syntax error (:func:`check_remi_syntax`); NaN for none."""
    reports = [check_remi_syntax(s, resolution) for s in sequences]
    if not reports:
        return math.nan
    return sum(r.valid for r in reports) / len(reports)
