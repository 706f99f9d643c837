"""The steps since the last log step: what its ``metrics`` event reports, gathered at no per-step device cost."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# Steps between folds of the kept device values into partial sums: bounds the memory of a long
# log interval (each kept 0-d CUDA tensor takes a 512-byte allocator block) at two kernels per fold.
FOLD_EVERY = 256


@dataclass
class Interval:
    """Host figures of the interval, and each step's device values kept as they are.

    Adding every step's loss, norms and flags into running device sums cost a kernel launch per
    value per step. A list append launches nothing; :meth:`totals` reduces the kept values at the
    log step in a few kernels. ``clip_totals`` is the clipper's reduction of its records.
    """

    device: torch.device
    clip_totals: Callable[[list[tuple[torch.Tensor, ...]]], torch.Tensor]
    start: float = field(default_factory=time.perf_counter)
    steps: int = 0
    tokens: int = 0
    data_wait: float = 0.0
    lr: float = 0.0
    seq_len: int = 0
    stage: int = 0
    losses: list[torch.Tensor] = field(default_factory=list)  # loss sums, one per micro-batch
    clip_records: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    skipped: list[torch.Tensor] = field(default_factory=list)  # fp16: whether the scaler skipped the step
    _folded: torch.Tensor | None = None

    def add_step(self, losses: list[torch.Tensor], clip_record: tuple[torch.Tensor, ...],
                 skipped: torch.Tensor | None = None) -> None:
        self.losses.extend(losses)
        self.clip_records.append(clip_record)
        if skipped is not None:
            self.skipped.append(skipped)
        self.steps += 1
        if len(self.clip_records) >= FOLD_EVERY:
            self._folded = self._kept_totals() if self._folded is None else self._folded + self._kept_totals()
            self.losses, self.clip_records, self.skipped = [], [], []

    def totals(self) -> torch.Tensor:
        """Device float32 sums over the interval: loss, norm before clipping, norm after, clipped fraction, skipped."""
        kept = self._kept_totals()
        return kept if self._folded is None else self._folded + kept

    def _kept_totals(self) -> torch.Tensor:
        def total(values: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack(values).float().sum().reshape(1) if values else torch.zeros(1, device=self.device)
        return torch.cat([total(self.losses), self.clip_totals(self.clip_records), total(self.skipped)])
