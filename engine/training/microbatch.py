"""How many sequences go through the model at once: chosen to fit memory, halved on out-of-memory."""

from __future__ import annotations

import psutil
import torch

from engine.contract.config import BatchSection
from engine.training import distributed, precision


class MicroBatchPlanner:
    """The micro-batch of each rank's share of the global batch (``per_rank`` sequences a step).

    Its state (the size in force) goes into checkpoints: a run that backed off keeps the smaller size.
    """

    def __init__(
        self,
        batch: BatchSection,
        per_rank: int,
        longest: int,
        model: torch.nn.Module,
        precision_name: str,
        dist: distributed.Dist,
    ):
        self.batch, self.per_rank, self.longest = batch, per_rank, longest
        self.model, self.precision, self.dist = model, precision_name, dist
        self.device = dist.device
        self.size, self.reason = self.choose()

    def chunks(self, examples: list) -> list[list]:
        return [examples[i : i + self.size] for i in range(0, len(examples), self.size)]

    def candidates(self) -> list[int]:
        b = self.batch
        fits = [m for m in range(1, self.per_rank + 1) if self.per_rank % m == 0]
        inside = [m for m in fits if b.micro_batch_min <= m <= b.micro_batch_max]
        return inside or [min(fits, key=lambda m: abs(m - b.micro_batch_min))]

    def choose(self) -> tuple[int, str]:
        """From config, or the largest that fits the memory budget (agreed: the smallest over ranks)."""
        b = self.batch
        if b.micro_batch_size != "auto":
            micro = min(b.micro_batch_size, self.per_rank)
            if self.device.type == "cuda":
                self._probe(micro)  # reserves memory for the longest windows up front
            return micro, "set in config"
        candidates = self.candidates()
        if self.device.type == "cuda":
            micro = next((m for m in reversed(candidates) if self._probe(m)), candidates[0])
            why = f"largest of {candidates} that ran forward+backward at length {self.longest} on this GPU"
        else:
            per_seq = self._activation_bytes()
            budget = (
                b.memory_budget_mb * 2**20
                if b.memory_budget_mb
                else psutil.virtual_memory().available / 4 / self.dist.local_world_size
            )
            fitting = [m for m in candidates if m * per_seq <= budget]
            micro = fitting[-1] if fitting else candidates[0]
            why = (
                f"largest of {candidates} within {budget / 2**20:.0f} MB of activations "
                f"at {per_seq / 2**20:.1f} MB per sequence of length {self.longest}"
            )
        micro = min(self.dist.gather_objects(micro))
        return micro, why

    def back_off(self) -> int:
        """Halve the size (to a divisor of the rank's share) after an out-of-memory step; returns the old size."""
        if self.size <= self.batch.micro_batch_min:
            raise torch.OutOfMemoryError(
                f"out of memory at the smallest micro-batch ({self.size}, batch.micro_batch_min)"
            )
        old, self.size = self.size, max(self.batch.micro_batch_min, self.size // 2)
        while self.per_rank % self.size:
            self.size -= 1
        return old

    def state_dict(self) -> int:
        return self.size

    def load_state_dict(self, size: int) -> None:
        self.size = int(size)
        if self.per_rank % self.size:  # a fork changed the batch size
            self.size, self.reason = self.choose()

    def _activation_bytes(self) -> int:
        """Bytes autograd saves for backward for one sequence: what a micro-batch costs per sample."""
        saved = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            saved += t.numel() * t.element_size()
            return t

        x = torch.zeros(1, self.longest, dtype=torch.long, device=self.device)
        with (
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
            precision.autocast(self.precision, self.device),
        ):
            self.model(x).float().sum()
        return max(saved, 1)

    def _probe(self, micro: int) -> bool:
        x = torch.zeros(micro, self.longest, dtype=torch.long, device=self.device)
        try:
            with precision.autocast(self.precision, self.device):
                self.model(x).float().mean().backward()
            ok = True
        except torch.OutOfMemoryError:
            ok = False
        self.model.zero_grad(set_to_none=True)
        if not ok:
            torch.cuda.empty_cache()
        return ok
