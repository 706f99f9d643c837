"""The REMI grammar as a state machine over token ids: which tokens may come next, for a batch of sequences.

Generation masks every token the grammar forbids at that point, so a sample is
well-formed by construction, from an untrained model on. The rules are those
:func:`engine.music.syntax.check_remi_syntax` checks, narrowed to what
Podium's REMI encoder writes (programs in one stream, no velocities, tempos or
rests): ``Bar TimeSig (Position (Program Pitch Duration)+)* ...``, positions
increasing within a bar and inside it, a drum program followed by
``PitchDrum`` and any other by ``Pitch``. A time signature may change only
when the data changes one (``allow_meter_changes``); otherwise every ``TimeSig``
repeats the first one of the sequence. A bar may be empty only when the data
has empty bars (``allow_empty_bars``): an untrained model would otherwise fill
its token budget with bar lines.

All state is a few integers per sequence, so a step costs a table lookup and
two comparisons over the vocabulary.
"""

from __future__ import annotations

import numpy as np
import torch

# Token kinds; index into the transition table.
_KINDS = ("Start", "Bar", "TimeSig", "Position", "Program", "ProgramDrum", "Pitch", "PitchDrum", "Duration", "EOS")
_K = {kind: i for i, kind in enumerate(_KINDS)}
_OTHER = len(_KINDS)  # PAD, BOS and anything the grammar never allows
_NEXT = {
    "Start": ("Bar",),
    "Bar": ("TimeSig",),
    "TimeSig": ("Bar", "Position"),
    "Position": ("Program", "ProgramDrum"),
    "Program": ("Pitch",),
    "ProgramDrum": ("PitchDrum",),
    "Pitch": ("Duration",),
    "PitchDrum": ("Duration",),
    "Duration": ("Bar", "Position", "Program", "ProgramDrum", "EOS"),
    # A finished sequence is padded with EOS by the generator.
    "EOS": ("EOS",),
}


def positions_per_beat(tokenizer) -> int:
    """Positions per beat of a miditok tokenizer: the finest resolution of its first beat range."""
    return max(tokenizer.config.beat_res.values())


def has_empty_bars(pieces: list[np.ndarray], tokenizer) -> bool:
    """Whether any piece has a bar without notes: a Bar followed, TimeSig tokens aside, by another Bar."""
    timesigs = [i for t, i in tokenizer.vocab.items() if t.startswith("TimeSig_")]
    bar = tokenizer["Bar_None"]
    for piece in pieces:
        ids = np.asarray(piece)
        ids = ids[~np.isin(ids, timesigs)]
        if np.any((ids[:-1] == bar) & (ids[1:] == bar)):
            return True
    return False


class RemiGrammar:
    """Call it with the tokens so far (batch, t) to get a (batch, vocab) bool mask of the tokens allowed next.

    The calls must see the same sequences growing (as in
    :meth:`engine.training.model.MusicTransformer.generate`): each call reads
    only the tokens it has not seen. A leading BOS is the start of a sequence.
    """

    def __init__(
        self, tokenizer, positions_per_beat: int, allow_meter_changes: bool = False, allow_empty_bars: bool = True
    ):
        vocab: dict[str, int] = tokenizer.vocab
        size = len(tokenizer)
        kind = torch.full((size,), _OTHER, dtype=torch.long)
        position = torch.full((size,), -1, dtype=torch.long)
        bar_positions = torch.full((size,), -1, dtype=torch.long)
        for token, idx in vocab.items():
            name, _, value = token.partition("_")
            if name == "Program":
                kind[idx] = _K["ProgramDrum" if value == "-1" else "Program"]
            elif name in _K:
                kind[idx] = _K[name]
            if name == "Position":
                position[idx] = int(value)
            elif name == "TimeSig":
                num, _, den = value.partition("/")
                bar_positions[idx] = round(int(num) * 4 / int(den) * positions_per_beat)
        transitions = dict(_NEXT)
        if not allow_empty_bars:
            transitions["TimeSig"] = ("Position",)
        if not (kind == _K["TimeSig"]).any():
            transitions["Bar"] = transitions["TimeSig"]
        table = torch.zeros((len(_KINDS), size), dtype=torch.bool)
        for prev, nexts in transitions.items():
            for nxt in nexts:
                table[_K[prev]] |= kind == _K[nxt]
        self.kind, self.position, self.bar_positions, self.table = kind, position, bar_positions, table
        self.is_position = kind == _K["Position"]
        self.is_timesig = kind == _K["TimeSig"]
        self.bos = tokenizer["BOS_None"]
        self.default_bar = 4 * positions_per_beat  # 4/4 until a TimeSig says otherwise, as in miditok
        self.allow_meter_changes = allow_meter_changes
        self.seen = 0
        self.state: dict[str, torch.Tensor] | None = None

    def _start(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        for name in ("kind", "position", "bar_positions", "table", "is_position", "is_timesig"):
            setattr(self, name, getattr(self, name).to(device))
        full = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.state = state = {
            "kind": torch.full((batch,), _K["Start"], dtype=torch.long, device=device),
            "position": full.clone(),
            "bar_positions": torch.full((batch,), self.default_bar, dtype=torch.long, device=device),
            "timesig": full.clone(),
        }
        return state

    def advance(self, ids: torch.Tensor) -> None:
        """Move each sequence's state past its token ``ids`` (batch,)."""
        s = self.state
        assert s is not None, "advance() comes after the first call, which starts the state"
        kind = self.kind[ids]
        is_bos = ids == self.bos
        known = kind != _OTHER
        s["kind"] = torch.where(known, kind, torch.where(is_bos, _K["Start"], s["kind"]))
        is_bar = kind == _K["Bar"]
        s["position"] = torch.where(is_bar, -1, s["position"])
        s["position"] = torch.where(kind == _K["Position"], self.position[ids], s["position"])
        is_timesig = kind == _K["TimeSig"]
        s["bar_positions"] = torch.where(is_timesig, self.bar_positions[ids], s["bar_positions"])
        s["timesig"] = torch.where(is_timesig & (s["timesig"] < 0), ids, s["timesig"])

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        s = self.state if self.state is not None else self._start(tokens.shape[0], tokens.device)
        for column in range(self.seen, tokens.shape[1]):
            self.advance(tokens[:, column])
        self.seen = tokens.shape[1]
        allowed = self.table[s["kind"]]
        # A Position moves forward and stays inside the bar.
        pos = self.position[None, :]
        in_bar = (pos > s["position"][:, None]) & (pos < s["bar_positions"][:, None])
        allowed &= ~self.is_position[None, :] | in_bar
        if not self.allow_meter_changes:
            first = s["timesig"][:, None]
            ids = torch.arange(allowed.shape[1], device=allowed.device)[None, :]
            allowed &= ~self.is_timesig[None, :] | (first < 0) | (ids == first)
        return allowed
