"""The points of the training loop that components react to, and who reacts.

A component subscribes a reaction once, when the Trainer is composed; the loop fires the hook and
does not know who listens. Reactions run in the order they subscribed, on the training thread.

- ``log_step(metrics, system_samples)``: after a log step's ``metrics`` event, on every rank
  (``system_samples``: every rank's latest system sample, on rank 0).
- ``evaluation(result)``: after an ``eval`` event, on every rank.
- ``checkpoint(saved)``: once a save is committed and every rank agrees it is
  (:class:`engine.checkpoints.manager.Saved`), inline or after a background write.
- ``restored(step)``: after a rollback put the weights, optimizer and components back to a
  checkpoint's ``step``, on every rank; the training goes on from there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

Hook = Literal["log_step", "evaluation", "checkpoint", "restored"]


class Hooks:
    def __init__(self) -> None:
        self._reactions: dict[str, list[Callable[..., None]]] = {hook: [] for hook in get_args(Hook)}

    def subscribe(self, hook: Hook, reaction: Callable[..., None]) -> None:
        self._reactions[hook].append(reaction)

    def fire(self, hook: Hook, *args: Any) -> None:
        for reaction in self._reactions[hook]:
            reaction(*args)
