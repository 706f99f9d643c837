"""Curricula: short windows before long ones, simple pieces before the whole corpus.

Both are pure functions of the step (or tokens seen), which every rank knows,
so ranks change stage together without a collective.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stage_at(stages: Sequence[tuple[int, float]], position: int) -> int:
    """Index of the stage in force at ``position`` (stages sorted by their start)."""
    index = 0
    for i, (start, _) in enumerate(stages):
        if position >= start:
            index = i
    return index


class SeqLenCurriculum:
    """Window length by stage: ``stages`` = [(start, length), ...], counted in steps or tokens."""

    def __init__(self, stages: list[tuple[int, int]], unit: str):
        self.stages, self.unit = sorted(stages), unit

    def length(self, step: int, tokens: int) -> int:
        return int(self.stages[stage_at(self.stages, step if self.unit == "steps" else tokens)][1])

    @property
    def longest(self) -> int:
        return max(length for _, length in self.stages)


def piece_difficulty(
    pieces: list[np.ndarray], pitch_of_token: np.ndarray, bar_token: int, program_of_token: np.ndarray
) -> np.ndarray:
    """Notes per bar times voices used: denser writing in more voices is harder to model.

    Computed from tokens, so it works for any MIDI folder, not only chorales.
    """
    scores = np.empty(len(pieces))
    for i, ids in enumerate(pieces):
        notes = int((pitch_of_token[ids] >= 0).sum())
        bars = max(1, int((ids == bar_token).sum()))
        voices = max(1, len(set(program_of_token[ids][program_of_token[ids] >= 0].tolist())))
        scores[i] = notes / bars * voices
    return scores


class DifficultyCurriculum:
    """The easiest fraction of pieces by stage: ``stages`` = [(start_step, fraction), ...]."""

    def __init__(self, stages: list[tuple[int, float]], difficulty: np.ndarray):
        self.stages = sorted(stages)
        self.order = np.argsort(difficulty, kind="stable")

    def stage(self, step: int) -> int:
        return stage_at(self.stages, step)

    def pieces(self, stage: int) -> np.ndarray:
        """Indices (into the training pieces) allowed in ``stage``, at least one."""
        fraction = self.stages[stage][1]
        return np.sort(self.order[: max(1, round(fraction * len(self.order)))])
