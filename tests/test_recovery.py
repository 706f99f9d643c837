"""Recovery actions as a run takes them, and what is protected when there is nothing to recover."""

from __future__ import annotations

import math

import pytest

from tests.conftest import SMOKE, podium
from tests.helpers import events_of, train_to, trainer_in_this_process

pytestmark = pytest.mark.slow  # every test trains a Trainer in this process or starts torchrun

# A NaN loss at step 2 of a 1-rank CPU run (fp32: nothing skips the step, so the weights turn NaN),
# detected at the log step 5, with no checkpoint saved before it.
NAN_EARLY = [
    "run.max_steps=10",
    "run.log_interval=5",
    "run.eval_interval=1000",
    "checkpoint.interval=0",
    "debug.nan_loss_at_steps=[2]",
]


def _taken(run_root) -> list[dict]:
    return [e for e in events_of(run_root, "anomaly") if "action_taken" in e]


def _linked(run_root, kind: str) -> tuple[dict, dict]:
    """The anomaly of ``kind`` and the event of the action taken for it (the same id)."""
    found = next(e for e in events_of(run_root, "anomaly") if e["kind"] == kind and "action_taken" not in e)
    taken = next(e for e in _taken(run_root) if e["id"] == found["id"])
    return found, taken


def test_a_nan_with_no_checkpoint_to_roll_back_to_stops_the_run_and_saves_no_nan(tmp_path):
    run_root = tmp_path / "run"
    # An evaluation at step 3 falls between the NaN and its detection: it must not crash sampling.
    with trainer_in_this_process(run_root, [*NAN_EARLY, "run.eval_interval=3"]) as trainer:
        assert trainer.train() == "failed"
    found, taken = _linked(run_root, "nonfinite_loss")
    assert found["step"] == 5 and taken["action_taken"]["action"] == "rollback"
    assert "weights are not finite" in taken["action_taken"]["outcome"]
    assert trainer.control.stop_reason == "failed" and "no checkpoint was saved yet" in trainer.control.stop_message
    assert any("no samples at step 3" in e.get("message", "") for e in events_of(run_root, "status"))
    assert [e["step"] for e in events_of(run_root, "eval")] == [3, 5]
    # The final save was refused, not written with NaN weights a later resume would restore.
    refused = [e for e in events_of(run_root, "error") if e.get("where") == "checkpoint"]
    assert refused and "not finite" in refused[0]["message"]
    assert not list((run_root / "checkpoints").glob("step-*"))


def test_rollback_restores_the_checkpoint_and_does_not_save_or_evaluate_its_step_again(tmp_path):
    run_root = tmp_path / "run"
    overrides = [
        "run.max_steps=12",
        "run.log_interval=4",
        "run.eval_interval=4",
        "checkpoint.interval=4",
        "checkpoint.async_save=false",
        "debug.nan_loss_at_steps=[6]",
    ]
    with trainer_in_this_process(run_root, overrides) as trainer:
        assert trainer.train() == "finished"
        assert trainer.weights_finite()
    found, taken = _linked(run_root, "nonfinite_loss")
    assert found["step"] == 8 and taken["action_taken"]["to_step"] == 4
    assert taken["action_taken"]["lr_factor"] == 0.5
    # Step 4 was evaluated and saved once, before the NaN; the replayed steps go on from it.
    assert [e["step"] for e in events_of(run_root, "eval")] == [4, 8, 12]
    assert [e["step"] for e in events_of(run_root, "checkpoint")] == [4, 8, 12]
    losses = [(m["step"], math.isfinite(m["loss"])) for m in events_of(run_root, "metrics")]
    assert losses == [(4, True), (8, False), (8, True), (12, True)]


def test_a_rollback_applied_after_a_step_drops_the_undone_interval(tmp_path):
    """An evaluation's detectors (or the watchdog) queue their action for the next step, which applies
    it once complete: the steps since the last log step are undone and must not be logged or counted."""
    run_root = tmp_path / "run"
    overrides = [
        "run.max_steps=12",
        "run.log_interval=4",
        "run.eval_interval=4",
        "checkpoint.interval=4",
        "checkpoint.async_save=false",
    ]
    with trainer_in_this_process(run_root, overrides) as trainer:
        interval = trainer.begin()
        interval = train_to(trainer, interval, 6)
        tokens_at_4 = events_of(run_root, "metrics")[0]["tokens_seen"]
        trainer.control.queue({"id": "queued", "kind": "overfitting", "action": "rollback", "step": 6})
        interval = trainer.iteration(interval)
        assert trainer.step == 4 and interval.steps == 0 and trainer.tokens_seen == tokens_at_4
        interval = train_to(trainer, interval, 12)
        assert trainer.end() == "finished"
    assert [e["step"] for e in events_of(run_root, "metrics")] == [4, 8, 12]
    assert [e["step"] for e in events_of(run_root, "eval")] == [4, 8, 12]
    assert [e["step"] for e in events_of(run_root, "checkpoint")] == [4, 8, 12]


@pytest.mark.parametrize("action", ["lower_lr", "skip_batch", "stop"])
def test_each_recovery_action_is_taken_and_linked_to_its_anomaly(tmp_path, action):
    run_root = tmp_path / action
    overrides = [*NAN_EARLY, f"anomaly.policy={{nonfinite_loss: {action}}}"]
    with trainer_in_this_process(run_root, overrides) as trainer:
        peak_lr = trainer.schedule.peak_lr
        interval = trainer.begin()
        interval = train_to(trainer, interval, 5)
        sampler = trainer.batches.sampler
        windows_drawn = sampler.epoch * sampler.per_rank + sampler.position
        assert trainer.control.stop_reason == ("stopped" if action == "stop" else None)
        _, taken = _linked(run_root, "nonfinite_loss")
        assert taken["action_taken"] == {
            "action": action,
            "outcome": "done",
            **({"lr_factor": 0.5} if action == "lower_lr" else {}),
        }
        if action == "lower_lr":
            assert trainer.schedule.peak_lr == pytest.approx(peak_lr * 0.5)
        elif action == "skip_batch":
            # The batch after the detection is passed over: 5 steps' windows drawn, and one step's more.
            assert windows_drawn == 6 * trainer.batches.per_rank
        else:
            assert "stopped by the anomaly policy (nonfinite_loss)" in trainer.control.stop_message
        trainer.control.stop_reason = trainer.control.stop_reason or "stopped"
        trainer.end()


def test_the_pause_action_pauses_the_run_until_resumed(tmp_path):
    run_root = tmp_path / "pause"
    with trainer_in_this_process(run_root, [*NAN_EARLY, "anomaly.policy={nonfinite_loss: pause}"]) as trainer:
        interval = trainer.begin()
        interval = train_to(trainer, interval, 5)
        assert trainer.control.paused
        _, taken = _linked(run_root, "nonfinite_loss")
        assert taken["action_taken"]["action"] == "pause"
        paused = [e for e in events_of(run_root, "status") if e["state"] == "paused"]
        assert paused and "anomaly policy (nonfinite_loss)" in paused[-1]["message"]
        trainer.control.stop_reason = "stopped"
        trainer.end()


def test_a_slow_rank_is_named_by_straggler_rank(tmp_path):
    """Rank 1 sleeps 40 ms in each forward pass; every rank's wall step time is the same (DDP waits for
    the slowest), so only each rank's own work shows it."""
    run_dir = tmp_path / "straggler"
    podium(
        "run",
        "-c",
        str(SMOKE),
        "-r",
        str(run_dir),
        "--nproc",
        "2",
        "--set",
        "run.max_steps=40",
        "--set",
        "run.eval_interval=1000",
        "--set",
        "checkpoint.interval=0",
        "--set",
        "music.enabled=false",
        "--set",
        "debug.slow_ranks_ms={1: 40}",
        check=True,
    )
    metrics = events_of(run_dir, "metrics")
    assert all(m["rank_work_times"][1] > 1.5 * m["rank_work_times"][0] for m in metrics)
    (found,) = [e for e in events_of(run_dir, "anomaly") if e["kind"] == "straggler_rank"]
    # Slowest from the first log step (5) on, and for anomaly.straggler_min_steps (30) steps.
    assert found["step"] == 35 and found["evidence"]["rank"] == 1 and found["evidence"]["ratio"] > 1.5
