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
    clip_totals: Callable[[list[tuple[torch.Tensor, ...]], torch.Tensor | None], torch.Tensor]
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

    def add_step(
        self, losses: list[torch.Tensor], clip_record: tuple[torch.Tensor, ...], skipped: torch.Tensor | None = None
    ) -> None:
        self.losses.extend(losses)
        self.clip_records.append(clip_record)
        if skipped is not None:
            self.skipped.append(skipped)
        self.steps += 1
        if len(self.clip_records) >= FOLD_EVERY:
            self._folded = self._kept_totals() if self._folded is None else self._folded + self._kept_totals()
            self.losses, self.clip_records, self.skipped = [], [], []

    def totals(self) -> torch.Tensor:
        """Device float32 sums over the interval: loss, then over the steps the fp16 scaler applied the norm
        before clipping, the norm after and the clipped fraction, then the number of skipped steps."""
        kept = self._kept_totals()
        return kept if self._folded is None else self._folded + kept

    def _kept_totals(self) -> torch.Tensor:
        def total(values: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack(values).float().sum().reshape(1) if values else torch.zeros(1, device=self.device)

        skipped = torch.stack(self.skipped) if self.skipped else None
        return torch.cat([total(self.losses), self.clip_totals(self.clip_records, skipped), total(self.skipped)])


class WorkClock:
    """Each rank's own compute time, for straggler detection: its forward passes.

    Wall time between log steps is the same on every rank (DDP's gradient all-reduce and the
    control agreement make every rank wait for the slowest), so it cannot show a slow rank. A
    forward pass has no collective (the model has no buffers for DDP to broadcast): its time is
    the rank's own. On CUDA it is timed by events, read at the log step after the step's values
    were copied to the host (so they are complete: no extra wait); the events are reused. On CPU
    the host clock times it.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.host_s = 0.0
        self.timed: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.spare: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def start(self) -> tuple[torch.cuda.Event, torch.cuda.Event] | float:
        if not self.cuda:
            return time.perf_counter()
        pair = (
            self.spare.pop()
            if self.spare
            else (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        )
        pair[0].record()
        return pair

    def stop(self, started: tuple[torch.cuda.Event, torch.cuda.Event] | float) -> None:
        if isinstance(started, float):
            self.host_s += time.perf_counter() - started
        else:
            started[1].record()
            self.timed.append(started)

    def collect(self) -> float:
        """Seconds timed since the last call. Call after the step's values reached the host."""
        seconds = self.host_s + sum(begin.elapsed_time(end) for begin, end in self.timed) / 1000.0
        self.spare.extend(self.timed)
        self.timed, self.host_s = [], 0.0
        return seconds
