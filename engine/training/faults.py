"""Debug fault injection (``debug.*``): simulated failures that exercise the recovery paths of a real run."""

from __future__ import annotations

import time

import torch

from engine.contract.config import DebugSection


class SimulatedOOM(torch.OutOfMemoryError):
    """Raised by ``debug.oom_at_steps`` to exercise the back-off path."""


def is_oom(exc: BaseException) -> bool:
    # A CPU allocation failure surfaces as a plain RuntimeError from the allocator.
    return isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc)


class FaultInjector:
    """The faults ``debug`` asks for, at the step points the training step calls.

    Each fault fires once per step, so a rollback past the step does not meet it again. Every check
    is a host set lookup: with no faults configured the step costs the same.
    """

    def __init__(self, debug: DebugSection, rank: int, micro_batch_min: int):
        self.debug = debug
        self.rank = rank
        self.micro_batch_min = micro_batch_min
        self.straggle_s = debug.slow_ranks_ms.get(rank, 0.0) / 1000.0
        self.poisoned_steps: set[int] = set()
        self.oom_steps: set[int] = set()

    def poisons_loss(self, step: int) -> bool:
        """Whether this step's losses are to be NaN (``debug.nan_loss_at_steps``); ask once per step."""
        if step in self.debug.nan_loss_at_steps and step not in self.poisoned_steps:
            self.poisoned_steps.add(step)
            return True
        return False

    def before_forward(self, step: int, micro: int) -> None:
        """Rank 0 runs out of memory at ``debug.oom_at_steps`` while a smaller micro-batch is left to retry at."""
        if (
            step in self.debug.oom_at_steps
            and self.rank == 0
            and step not in self.oom_steps
            and micro > self.micro_batch_min
        ):
            self.oom_steps.add(step)
            raise SimulatedOOM(f"simulated out-of-memory at step {step} (debug.oom_at_steps)")

    def after_forward(self) -> None:
        """``debug.slow_ranks_ms``: a simulated straggler."""
        if self.straggle_s:
            time.sleep(self.straggle_s)

    def after_backward(self, step: int, params: list[torch.Tensor]) -> None:
        """``debug.inf_grad_at_steps``: one infinite gradient element, for the clipper and the fp16 scaler."""
        if step in self.debug.inf_grad_at_steps:
            grad = params[0].grad
            assert grad is not None  # called after backward, which gives every trained parameter a gradient
            grad.view(-1)[0] = float("inf")
