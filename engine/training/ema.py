"""Exponential moving average of the weights, updated without waiting on the device."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel


class WeightEma(AveragedModel):
    """``AveragedModel`` (so its ``state_dict``, and checkpoints, keep their layout) with its own update.

    ``AveragedModel.update_parameters`` tests its ``n_averaged`` counter and copies it to the
    device on every call; the counter lives on the CPU, so on CUDA that copy blocks until the
    stream is idle, a full synchronisation each step. Here the count is a host integer and the
    update is one fused lerp over the floating-point tensors (integer buffers, counters, are copied):
    ``ema = decay * ema + (1 - decay) * weights``; the first update copies the weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__(model, use_buffers=True)
        self.decay = decay
        self.updates = 0
        # Sorted once, not every step: the averaged tensors are updated in place and never replaced.
        self._averaged = [*self.module.parameters(), *self.module.buffers()]
        self._floating = [i for i, t in enumerate(self._averaged) if t.is_floating_point()]
        self._counters = [i for i, t in enumerate(self._averaged) if not t.is_floating_point()]  # e.g. BatchNorm's

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        averaged = self._averaged
        current = [t.detach() for t in (*model.parameters(), *model.buffers())]
        if self.updates == 0:
            torch._foreach_copy_(averaged, current)
        else:
            torch._foreach_lerp_(
                [averaged[i] for i in self._floating], [current[i] for i in self._floating], 1.0 - self.decay
            )
            if self._counters:
                torch._foreach_copy_([averaged[i] for i in self._counters], [current[i] for i in self._counters])
        self.updates += 1
        self.n_averaged.fill_(self.updates)  # a CPU tensor: saved in checkpoints, no device work

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._averaged = [*self.module.parameters(), *self.module.buffers()]  # assign=True replaces them
        self.updates = int(self.n_averaged)
        return result
