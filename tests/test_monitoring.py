"""Monitoring in real runs: system metrics, samples with musical metrics, anomalies acted on, sinks, profiles."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import symusic

from engine import music_metrics as mm
from engine.control import send_command
from tests.conftest import SMOKE, podium
from tests.helpers import ack_for, events_of, start_run, trainer_in_this_process, wait_until


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory, podium_cache) -> Path:
    """A 2-rank smoke run with a NaN loss injected at step 20, both sinks switched on and the step clock."""
    run_dir = tmp_path_factory.mktemp("monitoring") / "nan"
    podium("run", "-c", str(SMOKE), "-r", str(run_dir), "--nproc", "2", "--set", "debug.nan_loss_at_steps=[20]",
           "--set", "sinks.tensorboard=true", "--set", "sinks.wandb=true", "--set", "monitor.system_interval_s=0.5",
           "--set", "debug.step_times=true", check=True)
    return run_dir


def test_nan_loss_is_rolled_back_with_a_lower_lr_and_the_run_finishes(nan_run):
    anomalies = events_of(nan_run, "anomaly")
    detected = next(a for a in anomalies if a["kind"] == "nonfinite_loss" and "action_taken" not in a)
    assert detected["severity"] == "critical" and detected["action"] == "rollback" and detected["suggestion"]
    taken = next(a for a in anomalies if a.get("id") == detected["id"] and "action_taken" in a)
    assert taken["action_taken"] == {"action": "rollback", "outcome": "done", "to_step": 15, "lr_factor": 0.5}
    end = events_of(nan_run, "run_end")[-1]
    assert end["reason"] == "finished" and end["step"] == 30
    metrics = events_of(nan_run, "metrics")
    assert math.isfinite(metrics[-1]["loss"])
    assert metrics[-1]["peak_lr"] == pytest.approx(metrics[0]["peak_lr"] * 0.5)


def test_step_clock_ticks_once_per_step_and_follows_the_rollback(nan_run):
    clock = json.loads((nan_run / "step_times.json").read_text())
    steps = clock["step"]
    assert len(steps) == len(clock["wall"]) == len(clock["cpu"])
    assert steps[0] == 0 and steps[-1] == 30
    # One tick per loop iteration, after the step. The NaN at step 20 is seen at the log step 25, whose
    # iteration rolls back to the checkpoint at 15 and so ends there.
    assert [(a, b) for a, b in zip(steps, steps[1:]) if b != a + 1] == [(24, 15)]
    assert all(b > a for a, b in zip(clock["wall"], clock["wall"][1:]))
    assert all(b >= a for a, b in zip(clock["cpu"], clock["cpu"][1:]))


def test_system_events_carry_every_rank_and_the_host(nan_run):
    system = events_of(nan_run, "system")
    assert system, "no system event"
    last = system[-1]
    assert [r["rank"] for r in last["ranks"]] == [0, 1]
    assert all(r["rss_mb"] > 50 for r in last["ranks"])
    assert 0 < last["host_mem_percent"] < 100 and last["host_mem_total_mb"] > 0


def test_samples_are_midi_with_metrics_and_a_quality_score(nan_run):
    rounds = events_of(nan_run, "sample")
    assert rounds and all(0.0 <= r["quality_score"] <= 1.0 for r in rounds)
    last = rounds[-1]
    assert len(last["samples"]) == 4 and "pitch_class_entropy" in last["metrics"]
    assert "syntax_validity_rate" in last["metrics"] and last["reference"]["pitch_range"]["mean"] > 0
    for sample in last["samples"]:
        score = symusic.Score(sample["path"])
        again = mm.compute_all(mm.notes_from_score(score), 8, mm.score_beats_per_bar(score))
        assert again == pytest.approx(sample["metrics"], nan_ok=True)
        assert score.note_num() <= sample["syntax"]["n_notes"]
    evals = events_of(nan_run, "eval")
    assert all(0.0 <= e["quality_score"] <= 1.0 for e in evals)
    assert (nan_run / "samples" / "reference.json").exists()


def test_tensorboard_sink_matches_the_events_and_a_missing_wandb_is_reported(nan_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(nan_run / "tensorboard"))
    accumulator.Reload()
    logged = {e.step: e.value for e in accumulator.Scalars("train/loss")}
    # After the rollback steps repeat; the newest value of each step is the one that stands.
    expected = {m["step"]: m["loss"] for m in events_of(nan_run, "metrics")}
    finite = {step: loss for step, loss in expected.items() if math.isfinite(loss)}
    assert set(finite) <= set(logged) and len(finite) >= 5
    assert all(logged[step] == pytest.approx(loss, rel=1e-6) for step, loss in finite.items())
    problems = [e["message"] for e in events_of(nan_run, "error")]
    assert any("wandb package is not installed" in p for p in problems)
    assert events_of(nan_run, "run_end")[-1]["reason"] == "finished"


def test_profile_command_records_a_trace_and_top_operators(tmp_path):
    run_dir = tmp_path / "profiled"
    proc = start_run(run_dir, "-c", str(SMOKE), "--set", "run.max_steps=100000", "--set", "checkpoint.interval=0",
                     "--set", "music.enabled=false")
    try:
        wait_until(lambda: events_of(run_dir, "metrics"), 120, "the first metrics event")
        command = send_command(run_dir, "profile", steps=3)
        assert wait_until(lambda: ack_for(run_dir, command), 60, "the profile ack")["outcome"] == "done"
        report = wait_until(lambda: events_of(run_dir, "profile"), 120, "the profile event")[0]
        send_command(run_dir, "stop")
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    trace = Path(report["path"])
    assert trace.name.endswith(".pt.trace.json") and json.loads(trace.read_text())["traceEvents"]
    assert report["steps"] == 3 and len(report["top"]) > 3 and "Self CPU" in report["table"]


def test_the_loop_runs_one_iteration_at_a_time_in_this_process(tmp_path):
    """What bench/overhead.py's in-process mode drives: a 1-rank Trainer without torchrun, through begin,
    iteration and end, writes what ``train`` writes: metrics at each log step, one clock tick per step, the end."""
    run_root = tmp_path / "run"
    with trainer_in_this_process(run_root, ["run.max_steps=10", "checkpoint.interval=0", "debug.step_times=true"]) \
            as trainer:
        interval = trainer.begin()
        for step in range(1, 11):
            interval = trainer.iteration(interval)
            assert trainer.step == step and interval.steps == step % 5  # a new interval after each log step
        assert trainer.end() == "finished"
    assert [e["step"] for e in events_of(run_root, "metrics")] == [5, 10]
    assert [e["step"] for e in events_of(run_root, "eval")] == [10]
    assert json.loads((run_root / "step_times.json").read_text())["step"] == list(range(11))


def test_a_pause_keeps_the_steps_before_it_and_leaves_its_time_out(tmp_path):
    """Paused after step 1 for 2 s: the interval's tokens still count (tokens_seen equals an unpaused run's)
    and its step time leaves the pause out."""
    import threading

    overrides = ["run.max_steps=10", "checkpoint.interval=0", "run.eval_interval=1000"]
    with trainer_in_this_process(tmp_path / "straight", overrides) as trainer:
        assert trainer.train() == "finished"
        expected = trainer.tokens_seen
    paused_root = tmp_path / "paused"
    with trainer_in_this_process(paused_root, overrides) as trainer:
        send_command(paused_root, "pause")  # read at the first step, applied once it is complete
        resume = threading.Timer(2.0, send_command, (paused_root, "resume"))
        resume.start()
        try:
            assert trainer.train() == "finished"
        finally:
            resume.cancel()
        assert trainer.tokens_seen == expected
    first = events_of(paused_root, "metrics")[0]
    assert first["step"] == 5 and first["tokens_seen"] == events_of(tmp_path / "straight", "metrics")[0]["tokens_seen"]
    assert first["step_time"] < 2.0 / 5 / 2  # the 2 s pause would make it 0.4 s at least
    paused = next(e for e in events_of(paused_root, "status") if e["state"] == "paused")
    assert paused["step"] == 1


def test_a_stop_between_log_steps_still_reports_the_steps_since_the_last(tmp_path):
    with trainer_in_this_process(tmp_path / "run", ["run.max_steps=10", "checkpoint.interval=0"]) as trainer:
        send_command(tmp_path / "run", "stop")  # read at the first step, applied once it is complete
        assert trainer.train() == "stopped"
        assert trainer.tokens_seen > 0
    metrics = events_of(tmp_path / "run", "metrics")
    assert [m["step"] for m in metrics] == [1] and metrics[0]["tokens_seen"] == trainer.tokens_seen
    assert math.isfinite(metrics[0]["loss"])
