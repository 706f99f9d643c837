"""Retention decisions over synthetic checkpoint histories: a pure function, no files, no torch."""

from __future__ import annotations

import math
import random

import pytest

from engine.checkpoints.retention import Action, Policy, Snapshot, apply, keep_reasons, plan, rank_key

NAN = float("nan")
HOUR = 3600.0


def history(*metrics, kind="full", every=10, t0=0.0) -> list[Snapshot]:
    """Checkpoints at steps every, 2*every, ... written an hour apart, with these metric values."""
    return [
        Snapshot(f"step-{(i + 1) * every:07d}", (i + 1) * every, kind, t0 + i * HOUR, m) for i, m in enumerate(metrics)
    ]


def kept_after(hist, policy, now=None, protected=frozenset()) -> dict[int, str]:
    """Step -> kind of what remains once the plan is applied."""
    now = hist[-1].time if now is None else now
    return {s.step: s.kind for s in apply(hist, plan(hist, policy, now, protected))}


def test_keep_last_keeps_the_newest_full_checkpoints_only():
    hist = history(5.0, 4.0, 3.0, 2.0, 1.0)
    assert kept_after(hist, Policy(keep_last=2)) == {40: "full", 50: "full"}
    removed = plan(hist, Policy(keep_last=2), hist[-1].time)
    assert [a.name for a in removed] == ["step-0000010", "step-0000020", "step-0000030"]
    assert all(a.action == "remove" and "not among the last 2 full checkpoints" in a.reason for a in removed)


def test_weights_only_checkpoints_do_not_count_towards_the_last_k():
    hist = history(5.0, 4.0, 3.0)
    hist.append(Snapshot("avg", 35, "weights", 9 * HOUR, 9.0))
    assert kept_after(hist, Policy(keep_last=1)) == {30: "full"}


def test_nan_ranks_worst_whatever_the_mode():
    hist = history(NAN, 3.0, NAN, 4.0, None)
    assert kept_after(hist, Policy(keep_last=1, keep_best=1, archive="full")) == {20: "full", 50: "full"}
    assert kept_after(hist, Policy(keep_last=1, keep_best=1, mode="max", archive="full")) == {40: "full", 50: "full"}
    assert kept_after(history(NAN, NAN, 1.0), Policy(keep_last=1, keep_best=2, archive="full")) == {
        10: "full",
        30: "full",
    }
    infinite = history(float("inf"), 2.0, float("-inf"))
    assert kept_after(infinite, Policy(keep_last=1, keep_best=1, archive="full")) == {20: "full", 30: "full"}


def test_ties_go_to_the_earlier_step():
    hist = history(2.0, 1.0, 1.0, 1.0, 3.0)
    assert kept_after(hist, Policy(keep_last=1, keep_best=2, archive="full")) == {20: "full", 30: "full", 50: "full"}
    assert sorted(hist, key=lambda s: rank_key(s, "min"))[0].step == 20


def test_best_and_milestones_outside_the_last_k_are_archived_to_weights_only():
    hist = history(5.0, 1.0, 4.0, 3.0, 2.5, 2.0)
    policy = Policy(keep_last=2, keep_best=1, milestone_every=30, archive="weights")
    assert kept_after(hist, policy) == {20: "weights", 30: "weights", 50: "full", 60: "full"}
    actions = {a.name: a for a in plan(hist, policy, hist[-1].time)}
    assert actions["step-0000020"].action == "archive" and "best 1 by val_loss (1)" in actions["step-0000020"].reason
    assert (
        actions["step-0000030"].action == "archive" and "milestone (every 30 steps)" in actions["step-0000030"].reason
    )
    assert actions["step-0000010"].action == actions["step-0000040"].action == "remove"
    # A milestone inside the last K stays full; it is archived only once it leaves the last K.
    assert "step-0000060" not in actions


def test_archive_full_keeps_best_and_milestones_resumable():
    hist = history(5.0, 1.0, 4.0, 3.0)
    assert kept_after(hist, Policy(keep_last=1, keep_best=1, milestone_every=30, archive="full")) == {
        20: "full",
        30: "full",
        40: "full",
    }


def test_the_checkpoint_a_run_resumed_from_is_never_removed_or_archived():
    hist = history(1.0, 4.0, 3.0, 2.0)
    policy = Policy(keep_last=1, keep_best=1, archive="weights")
    assert kept_after(hist, policy) == {10: "weights", 40: "full"}
    # Resumed from the best one: it stays full (resumable), not archived.
    assert kept_after(hist, policy, protected={"step-0000010"}) == {10: "full", 40: "full"}
    assert kept_after(hist, Policy(keep_last=1), protected={"step-0000020"}) == {20: "full", 40: "full"}
    assert keep_reasons(hist, Policy(keep_last=1), hist[-1].time, {"step-0000020"})["step-0000020"] == ["resumed"]


def test_the_age_limit_removes_even_best_and_milestones_but_never_the_newest_full_one():
    hist = history(1.0, 5.0, 4.0, 3.0)  # steps 10..40 written at hours 0..3
    policy = Policy(keep_last=4, keep_best=1, milestone_every=10, max_age_s=2.5 * HOUR)
    now = 4 * HOUR  # 10 and 20 are older than 2.5 h; the best (10) goes too
    actions = plan(hist, policy, now)
    assert [(a.name, a.action) for a in actions] == [("step-0000010", "remove"), ("step-0000020", "remove")]
    assert all("older than the age limit of 2.5 h" in a.reason for a in actions)
    everything_old = plan(hist, policy, 100 * HOUR)
    assert [a.name for a in everything_old] == ["step-0000010", "step-0000020", "step-0000030"]
    protected = plan(hist, policy, 100 * HOUR, {"step-0000020"})
    assert [a.name for a in protected] == ["step-0000010", "step-0000030"]


def test_nothing_happens_while_every_checkpoint_has_a_reason_to_stay():
    assert plan(history(3.0, 2.0, 1.0), Policy(keep_last=3, keep_best=1), 0.0) == []


def test_a_weights_only_checkpoint_that_falls_out_of_the_best_is_removed():
    hist = history(3.0, 2.0, kind="weights") + [Snapshot("step-0000030", 30, "full", 2 * HOUR, 1.0)]
    actions = plan(hist, Policy(keep_last=1, keep_best=1), 2 * HOUR)
    assert [(a.name, a.action) for a in actions] == [("step-0000010", "remove"), ("step-0000020", "remove")]
    assert "weights-only and no longer among the best 1" in actions[0].reason


@pytest.mark.parametrize("seed", range(20))
def test_invariants_hold_over_random_histories(seed):
    """Over a run's lifetime, saving one checkpoint at a time and applying each plan."""
    rng = random.Random(seed)
    policy = Policy(
        keep_last=rng.randint(1, 4),
        keep_best=rng.randint(0, 3),
        milestone_every=rng.choice([0, 20, 50]),
        archive=rng.choice(["full", "weights"]),
        max_age_s=rng.choice([None, 30 * HOUR]),
    )
    protected = {"step-0000030"} if seed % 2 else set()
    hist: list[Snapshot] = []
    seen: list[Snapshot] = []
    for i in range(1, 80):
        value = rng.choice([NAN, None]) if rng.random() < 0.1 else rng.uniform(1.0, 5.0)
        record = Snapshot(f"step-{i * 10:07d}", i * 10, "full", i * HOUR, value)
        seen.append(record)
        hist = apply(hist + [record], plan(hist + [record], policy, record.time, protected))
        names = {s.name for s in hist}
        fulls = [s for s in hist if s.kind == "full"]
        assert fulls and fulls[-1].step == record.step, "the newest checkpoint is always kept, and full"
        expected_last = [
            s.step for s in seen[-policy.keep_last :] if record.time - s.time <= (policy.max_age_s or math.inf)
        ]
        assert set(expected_last) <= {s.step for s in fulls}, "the last K full checkpoints survive"
        if "step-0000030" in protected and i >= 3:
            assert "step-0000030" in names and next(s for s in hist if s.name == "step-0000030").kind == "full"
        if policy.keep_best and not policy.max_age_s:
            ranked = sorted(seen, key=lambda s: rank_key(s, "min"))[: policy.keep_best]
            assert {s.name for s in ranked} <= names, "the best M so far survive"
        if policy.milestone_every and not policy.max_age_s:
            assert {s.name for s in seen if s.step % policy.milestone_every == 0} <= names
        # Deterministic: the same history gives the same plan (what makes ranks agree).
        assert plan(hist, policy, record.time, protected) == plan(list(hist), policy, record.time, set(protected))
        assert all(isinstance(a, Action) for a in plan(hist, policy, record.time, protected))
