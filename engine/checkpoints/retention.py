"""Which checkpoints to keep: a pure function of the checkpoint history.

Torch-free and side-effect-free so it is tested over synthetic histories and
gives the same answer wherever it runs. The engine's rank 0 applies the plan
after a save commits and tells every rank what it did.

A checkpoint is kept when at least one of these holds:

- it is one of the ``keep_last`` newest *full* (resumable) checkpoints;
- it is one of the ``keep_best`` best by the chosen metric: a missing or NaN
  value ranks worst (a diverged run never displaces a good checkpoint), and
  equal values go to the earlier step (a later checkpoint must be strictly
  better to displace an earlier one, as in Lightning's ModelCheckpoint);
- its step is a multiple of ``milestone_every``;
- the run resumed from it (never deleted while that run lives).

With ``max_age_s`` set, a checkpoint older than that loses its last/best/
milestone reasons, except the newest full one (the run must stay resumable)
and the one the run resumed from.

A full checkpoint kept only as best or milestone is *archived* to weights-only
when ``archive`` is "weights": its optimizer and training state go, which is
most of its size (measured in bench/checkpoint.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Snapshot:
    name: str
    step: int
    kind: str  # "full" (resumable) or "weights"
    time: float  # Unix seconds when it was written
    metric: float | None = None


@dataclass(frozen=True)
class Policy:
    keep_last: int = 3
    keep_best: int = 0
    mode: Literal["min", "max"] = "min"
    metric_name: str = "val_loss"
    milestone_every: int = 0
    archive: Literal["full", "weights"] = "weights"
    max_age_s: float | None = None

    @classmethod
    def from_config(cls, section) -> Policy:
        """From a ``CheckpointSection`` (duck-typed, so this module needs no config import)."""
        return cls(
            keep_last=section.keep_last,
            keep_best=section.keep_best,
            mode=section.best_mode,
            metric_name=section.best_metric,
            milestone_every=section.milestone_every,
            archive=section.archive,
            max_age_s=section.max_age_hours * 3600.0 if section.max_age_hours else None,
        )


@dataclass(frozen=True)
class Action:
    name: str
    action: Literal["remove", "archive"]
    reason: str


def rank_key(snapshot: Snapshot, mode: str) -> tuple:
    """Sort key: best first. Missing/NaN last; equal values by earlier step."""
    value = snapshot.metric
    # No value, NaN or infinite: a diverged run's checkpoint ranks worst in either mode.
    if value is None or not math.isfinite(value):
        return (1, 0.0, snapshot.step)
    return (0, value if mode == "min" else -value, snapshot.step)


def keep_reasons(
    history: Iterable[Snapshot], policy: Policy, now: float, protected: frozenset[str] | set[str] = frozenset()
) -> dict[str, list[str]]:
    """Each checkpoint's reasons to stay (empty list: nothing keeps it)."""
    snaps = sorted(history, key=lambda s: s.step)
    reasons: dict[str, list[str]] = {s.name: [] for s in snaps}
    fulls = [s for s in snaps if s.kind == "full"]
    for s in fulls[-policy.keep_last :] if policy.keep_last else []:
        reasons[s.name].append("last")
    if policy.keep_best:
        for s in sorted(snaps, key=lambda s: rank_key(s, policy.mode))[: policy.keep_best]:
            reasons[s.name].append("best")
    if policy.milestone_every:
        for s in snaps:
            if s.step % policy.milestone_every == 0:
                reasons[s.name].append("milestone")
    if policy.max_age_s is not None:
        newest_full = fulls[-1].name if fulls else None
        for s in snaps:
            if now - s.time > policy.max_age_s and s.name != newest_full:
                reasons[s.name] = [r for r in reasons[s.name] if r == "resumed"]
                reasons[s.name].append("expired")
    for name in protected:
        if name in reasons:
            reasons[name].append("resumed")
    return reasons


def plan(
    history: Iterable[Snapshot], policy: Policy, now: float, protected: frozenset[str] | set[str] = frozenset()
) -> list[Action]:
    """What to remove or archive, oldest step first, each with the reason a user reads in the event."""
    snaps = {s.name: s for s in history}
    actions = []
    for name, why in keep_reasons(snaps.values(), policy, now, protected).items():
        snap = snaps[name]
        keep = [r for r in why if r != "expired"]
        if not keep:
            actions.append(Action(name, "remove", _removal_reason(snap, policy, expired="expired" in why)))
        elif snap.kind == "full" and policy.archive == "weights" and not {"last", "resumed"} & set(keep):
            kept_as = " and ".join(_describe(r, snap, policy) for r in keep)
            actions.append(
                Action(
                    name,
                    "archive",
                    f"kept as {kept_as}; no longer among the last {policy.keep_last} "
                    f"full checkpoints, so its optimizer and training state go",
                )
            )
    return sorted(actions, key=lambda a: snaps[a.name].step)


def _describe(reason: str, snap: Snapshot, policy: Policy) -> str:
    if reason == "best":
        value = "missing" if snap.metric is None else f"{snap.metric:.4g}"
        return f"one of the best {policy.keep_best} by {policy.metric_name} ({value})"
    if reason == "milestone":
        return f"a milestone (every {policy.milestone_every} steps)"
    return reason


def _removal_reason(snap: Snapshot, policy: Policy, expired: bool) -> str:
    if expired:
        hours = policy.max_age_s / 3600.0 if policy.max_age_s else 0.0
        return f"older than the age limit of {hours:g} h"
    others = []
    if policy.keep_best:
        others.append(f"the best {policy.keep_best} by {policy.metric_name}")
    if policy.milestone_every:
        others.append(f"the milestones (every {policy.milestone_every} steps)")
    if snap.kind == "full":
        return (
            "superseded: not among "
            + ", ".join([f"the last {policy.keep_last} full checkpoints", *others[:-1]])
            + (f" or {others[-1]}" if others else "")
        )
    return "superseded: weights-only and no longer among " + " or ".join(others or ["anything kept"])


def apply(history: Iterable[Snapshot], done: Iterable[Action]) -> list[Snapshot]:
    """The history after ``done`` actions: removed ones dropped, archived ones now weights-only."""
    by_name = {a.name: a for a in done}
    out = []
    for s in history:
        action = by_name.get(s.name)
        if action is None:
            out.append(s)
        elif action.action == "archive":
            out.append(Snapshot(s.name, s.step, "weights", s.time, s.metric))
    return out
