"""How much of a sample is copied from the training set.

A piece is cut into overlapping windows of ``bars`` bars (2 by default: a
phrase member, long enough that two pieces rarely share one by chance), one
starting at every bar line. A window's content is the set of its notes as
(onset step within the window, pitch above the window's lowest pitch, length
in steps), voices ignored, so the same passage in another key or sung by
other voices is the same window. A sample's memorization is the share of its
windows whose content occurs in some training piece; the training piece it
shares most windows with is named. Windows with fewer than ``min_notes`` notes
are not counted: a bar of one held chord says nothing about copying.

Plain numpy on note arrays (:mod:`engine.music.metrics`), no torch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.music import metrics as mm


def window_keys(
    notes: np.ndarray, resolution: int, beats_per_bar: float, bars: int = 2, min_notes: int = 4
) -> list[int]:
    """Hashes of the transposition-invariant content of each ``bars``-bar window starting at a bar line."""
    notes = mm.as_notes(notes)
    if len(notes) == 0:
        return []
    per_bar = int(round(beats_per_bar * resolution))
    starts = np.floor(notes[:, mm.START] * resolution + 0.5).astype(np.int64)
    lengths = np.maximum(1, np.floor(notes[:, mm.DURATION] * resolution + 0.5).astype(np.int64))
    pitches = notes[:, mm.PITCH].astype(np.int64)
    span = bars * per_bar
    # Windows lie wholly inside the piece: a last, shorter one would match nothing in a piece that goes on.
    n_bars = -(-int((starts + lengths).max()) // per_bar)
    keys = []
    for first in range(0, max(n_bars - bars, 0) * per_bar + 1, per_bar):
        inside = (starts >= first) & (starts < first + span)
        if np.count_nonzero(inside) < min_notes:
            continue
        onset = starts[inside] - first
        content = sorted(
            zip(
                onset.tolist(),
                (pitches[inside] - pitches[inside].min()).tolist(),
                np.minimum(lengths[inside], span - onset).tolist(),
                strict=True,
            )
        )
        keys.append(hash(tuple(content)))
    return keys


@dataclass(frozen=True)
class Memorization:
    share: float  # of the sample's windows found in the training set; NaN when it has none
    piece: str | None  # the training piece it shares most windows with
    piece_share: float  # of the sample's windows found in that piece

    def as_dict(self) -> dict:
        return {"share": self.share, "piece": self.piece, "piece_share": self.piece_share}


class TrainingIndex:
    """Every window of the training pieces, to look samples up in."""

    def __init__(
        self,
        pieces: Sequence[np.ndarray],
        names: Sequence[str],
        beats_per_bar: Sequence[float],
        resolution: int,
        bars: int = 2,
    ):
        self.resolution, self.bars = resolution, bars
        self.where: dict[int, set[int]] = {}
        self.names = list(names)
        for index, (notes, bar) in enumerate(zip(pieces, beats_per_bar, strict=True)):
            for key in window_keys(notes, resolution, bar, bars):
                self.where.setdefault(key, set()).add(index)

    def __len__(self) -> int:
        return len(self.where)

    def lookup(self, notes: np.ndarray, beats_per_bar: float) -> Memorization:
        keys = window_keys(notes, self.resolution, beats_per_bar, self.bars)
        if not keys:
            return Memorization(math.nan, None, math.nan)
        found = [self.where[k] for k in keys if k in self.where]
        by_piece = Counter(i for pieces in found for i in pieces)
        if not by_piece:
            return Memorization(0.0, None, 0.0)
        piece, count = by_piece.most_common(1)[0]
        return Memorization(len(found) / len(keys), self.names[piece], count / len(keys))
