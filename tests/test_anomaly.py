"""Anomaly detectors: each fires on a crafted series and stays quiet on a healthy, noisy run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from engine.contract.events import EventWriter, read_events
from engine.contract.monitor_config import ACTIONS, DEFAULT_ACTIONS, KINDS, AnomalySection, MusicSection
from engine.monitoring.anomaly import AnomalyMonitor, Policy, Watchdog

LOG_INTERVAL = 10
MAX_STEPS = 2000


def healthy_run(seed: int = 0, min_lr_ratio: float = 0.1):
    """A 2000-step run logged every 10 steps: decaying noisy loss, warmup + cosine LR,
    lognormal gradient norms, 2 ranks; system samples every 50 steps; eval and samples every 200."""
    rng = np.random.default_rng(seed)
    metrics, system, evals, samples = [], [], [], []
    peak, warmup = 1e-3, 100
    for step in range(LOG_INTERVAL, MAX_STEPS + 1, LOG_INTERVAL):
        curve = 0.6 + 5.6 * math.exp(-step / 250)
        if step < warmup:
            lr = peak * step / warmup
        else:
            progress = (step - warmup) / (MAX_STEPS - warmup)
            lr = peak * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
        grad = (0.2 + 0.8 * math.exp(-step / 1000)) * math.exp(0.25 * rng.standard_normal())
        metrics.append(
            {
                "step": step,
                "loss": curve * (1 + 0.02 * rng.standard_normal()),
                "lr": lr,
                "grad_norm": grad,
                "grad_norm_clipped": min(grad, 1.0),
                "samples_per_s": 120 * (1 + 0.05 * rng.standard_normal()),
                "tokens_per_s": 30000 * (1 + 0.05 * rng.standard_normal()),
                "step_time": 0.25,
                "data_wait_frac": float(np.clip(0.05 + 0.02 * rng.standard_normal(), 0, 1)),
                "rank_work_times": list(0.25 * (1 + 0.03 * rng.standard_normal(2))),
                "tokens_seen": step * 8192,
            }
        )
        if step % 50 == 0:
            rss = 1500 + 500 * (1 - math.exp(-step / 50))  # allocators and caches fill, then flat
            system.append(
                {
                    "step": step,
                    "rss_mb": list(rss + 20 * rng.standard_normal(2)),
                    "gpu_mem_alloc_mb": list(3000 + 30 * rng.standard_normal(2)),
                    "gpu_mem_reserved_mb": [4000, 4000],
                    "gpu_mem_peak_mb": [5000, 5100],
                    "gpu_mem_total_mb": [81559, 81559],
                }
            )
        if step % 200 == 0:
            evals.append({"step": step, "val_loss": curve * 1.05 + 0.01 * rng.standard_normal(), "train_loss": curve})
            samples.append(
                {
                    "step": step,
                    "pitch_class_entropy": 2.9 + 0.05 * rng.standard_normal(),
                    "bar_repetition_rate": float(np.clip(0.1 + 0.03 * rng.standard_normal(), 0, 1)),
                }
            )
    return metrics, system, evals, samples


def run(monitor: AnomalyMonitor, metrics=(), system=(), evals=(), samples=()):
    """Feed the streams in step order (system, then metrics, eval, samples at equal steps)."""
    stream = (
        [(r["step"], 0, monitor.observe_system, r) for r in system]
        + [(r["step"], 1, monitor.observe_metrics, r) for r in metrics]
        + [(r["step"], 2, monitor.observe_eval, r) for r in evals]
        + [(r["step"], 3, monitor.observe_samples, r) for r in samples]
    )
    found = []
    for _, _, observe, record in sorted(stream, key=lambda x: (x[0], x[1])):
        found.extend(observe(record))
    return found


def kinds(found):
    return [a.kind for a in found]


def at(metrics, step):
    return next(r for r in metrics if r["step"] == step)


# --------------------------------------------------------------------------- the healthy run


@pytest.mark.parametrize("seed", range(5))
def test_healthy_run_raises_nothing(seed):
    metrics, system, evals, samples = healthy_run(seed)
    monitor = AnomalyMonitor()
    monitor.set_music_reference({"pitch_class_entropy": {"mean": 2.92, "std": 0.15, "n": 30}})
    assert run(monitor, metrics, system, evals, samples) == []


def test_cosine_decay_to_zero_lr_is_not_an_anomaly():
    metrics, *_ = healthy_run(0, min_lr_ratio=0.0)
    assert metrics[-1]["lr"] == 0.0
    assert run(AnomalyMonitor(), metrics) == []


def test_warmup_logged_from_step_one_is_not_an_lr_jump():
    monitor = AnomalyMonitor()
    # Linear warmup from 0 logged at steps 1, 11, 21: the first ratio is 11x.
    records = [{"step": s, "lr": 1e-3 * s / 100} for s in (0, 1, 11, 21, 31, 41)]
    assert run(monitor, records) == []


# --------------------------------------------------------------------------- training-metric detectors


def test_nan_loss_is_critical_and_rolls_back():
    metrics, *_ = healthy_run()
    at(metrics, 1000)["loss"] = math.nan
    at(metrics, 1000)["grad_norm"] = math.nan  # follows from the loss: reported once, as the loss
    (a,) = run(AnomalyMonitor(), metrics)
    assert (a.kind, a.severity, a.step, a.action) == ("nonfinite_loss", "critical", 1000, "rollback")
    assert math.isnan(a.evidence["loss"]) and a.suggestion


def test_infinite_grad_with_finite_loss():
    metrics, *_ = healthy_run()
    at(metrics, 1000)["grad_norm"] = math.inf
    (a,) = run(AnomalyMonitor(), metrics)
    assert (a.kind, a.severity, a.action) == ("nonfinite_grad", "critical", "rollback")


def test_single_loss_spike_alerts_without_divergence():
    metrics, *_ = healthy_run()
    at(metrics, 1000)["loss"] *= 1.6
    (a,) = run(AnomalyMonitor(), metrics)
    assert (a.kind, a.severity, a.step, a.action) == ("loss_spike", "warning", 1000, "alert")
    assert a.evidence["z"] > 8 and a.evidence["window"] == 50 and len(a.evidence["recent"]) == 10


def test_small_bump_on_a_flat_curve_is_not_a_spike():
    # Nearly noiseless plateau: the noise estimate is tiny, so only spike_min_rel (10 %)
    # keeps a 5 % bump from counting as a 100-sigma spike.
    records = [{"step": s, "loss": 1.0 + 1e-4 * ((s // 10) % 3)} for s in range(10, 600, 10)]
    records[-1]["loss"] = 1.05
    assert run(AnomalyMonitor(), records) == []
    records[-1]["loss"] = 1.15
    assert kinds(run(AnomalyMonitor(), records)) == ["loss_spike"]


def test_sustained_rise_is_divergence():
    metrics, *_ = healthy_run()
    base = at(metrics, 1000)["loss"]
    for r in metrics:
        if r["step"] > 1000:
            r["loss"] = base * 1.05 ** ((r["step"] - 1000) / LOG_INTERVAL)
    found = [a for a in run(AnomalyMonitor(), metrics) if a.kind == "loss_divergence"]
    first = found[0]
    assert first.severity == "critical" and first.action == "rollback"
    assert 1000 < first.step <= 1200
    # The EMA lags the turn by a step or two.
    assert first.evidence["rise"] > 0.25 and first.evidence["best_step"] <= 1020


def test_gradient_explosion_relative_and_absolute():
    metrics, *_ = healthy_run()
    at(metrics, 1000)["grad_norm"] *= 30
    (a,) = run(AnomalyMonitor(), metrics)
    assert (a.kind, a.step) == ("grad_explosion", 1000) and a.evidence["ratio"] > 10
    metrics, *_ = healthy_run()
    at(metrics, 20)["grad_norm"] = 50.0  # before any history: only an absolute limit can see it
    assert run(AnomalyMonitor(), metrics) == []
    (a,) = run(AnomalyMonitor(AnomalySection(grad_norm_max=20.0)), metrics)
    assert (a.kind, a.step, a.evidence["limit"]) == ("grad_explosion", 20, 20.0)


def test_vanishing_gradients_need_patience():
    metrics, *_ = healthy_run()
    for s in (1000, 1010, 1020):
        at(metrics, s)["grad_norm"] = 0.0
    (a,) = run(AnomalyMonitor(), metrics)
    assert (a.kind, a.step, a.severity) == ("vanishing_gradients", 1020, "warning")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1e-3])
def test_non_finite_or_negative_lr_is_critical(bad):
    metrics, *_ = healthy_run()
    at(metrics, 1000)["lr"] = bad
    (a,) = run(AnomalyMonitor(), metrics)
    assert (a.kind, a.severity, a.step) == ("lr_anomaly", "critical", 1000)


def test_unexplained_lr_jump_fires_and_announced_one_does_not():
    metrics, *_ = healthy_run()
    for r in metrics:
        if r["step"] >= 1000:
            r["lr"] *= 10
    (a,) = run(AnomalyMonitor(), metrics)
    assert (a.kind, a.severity, a.step) == ("lr_anomaly", "warning", 1000) and a.evidence["ratio"] > 3

    monitor = AnomalyMonitor()
    assert run(monitor, [r for r in metrics if r["step"] < 1000]) == []
    monitor.expect_lr_change()  # e.g. a set_lr command applied between these log steps
    assert run(monitor, [r for r in metrics if r["step"] >= 1000]) == []


def test_lr_stuck_at_zero():
    metrics, *_ = healthy_run()
    for s in (1000, 1010):
        at(metrics, s)["lr"] = 0.0
    assert run(AnomalyMonitor(), metrics) == []  # twice is what a decay end or warmup start can do
    at(metrics, 1020)["lr"] = 0.0
    (a,) = run(AnomalyMonitor(), metrics)
    assert (a.kind, a.step) == ("lr_anomaly", 1020) and a.evidence["log_steps_at_zero"] == 3


def test_throughput_drop_needs_two_slow_log_steps():
    metrics, *_ = healthy_run()
    at(metrics, 1000)["tokens_per_s"] *= 0.3  # one slow interval: a checkpoint, say
    assert run(AnomalyMonitor(), metrics) == []
    at(metrics, 1010)["tokens_per_s"] *= 0.3
    (a,) = run(AnomalyMonitor(), metrics)
    assert (a.kind, a.step, a.evidence["metric"]) == ("throughput_drop", 1010, "tokens_per_s")
    assert a.evidence["ratio"] == pytest.approx(0.3, abs=0.05)


def test_throughput_falls_back_to_samples_per_s():
    metrics, *_ = healthy_run()
    for r in metrics:
        del r["tokens_per_s"]
    for s in (1000, 1010):
        at(metrics, s)["samples_per_s"] *= 0.3
    (a,) = run(AnomalyMonitor(), metrics)
    assert a.evidence["metric"] == "samples_per_s"


def test_dataloader_bottleneck():
    metrics, *_ = healthy_run()
    for s in (1000, 1010, 1020):
        at(metrics, s)["data_wait_frac"] = 0.6
    (a,) = run(AnomalyMonitor(), metrics)
    assert (a.kind, a.step, a.severity) == ("dataloader_bottleneck", 1020, "info")


def test_straggler_rank_must_be_the_same_rank_for_long_enough():
    metrics, *_ = healthy_run()
    for s in (1000, 1010, 1020, 1030):
        at(metrics, s)["rank_work_times"] = [0.25, 0.5]
    (a,) = run(AnomalyMonitor(), metrics)
    assert (a.kind, a.step, a.evidence["rank"], a.evidence["since_step"]) == ("straggler_rank", 1030, 1, 1000)
    assert a.evidence["ratio"] == pytest.approx(2.0)
    # Slow ranks taking turns are noise, not a straggler.
    metrics, *_ = healthy_run()
    for s, times in zip((1000, 1010, 1020, 1030), ([0.25, 0.5], [0.5, 0.25], [0.25, 0.5], [0.25, 0.5])):
        at(metrics, s)["rank_work_times"] = times
    assert run(AnomalyMonitor(), metrics) == []
    # Three log steps of a few steps each (log_interval 1) are a busy moment, not a slow rank.
    brief = [{"step": s, "rank_work_times": [0.007, 0.019]} for s in (1, 2, 3, 4, 5)]
    assert run(AnomalyMonitor(), brief) == []


def test_nonfinite_grad_under_fp16_only_when_the_scaler_skips_every_step_for_long():
    monitor = AnomalyMonitor()
    routine = {"loss": 2.0, "grad_norm": 1.0, "skipped_steps": 1}  # one overflow among the interval's steps
    assert monitor.observe_metrics({"step": 10, **routine}) == []
    all_skipped = {"loss": 2.0, "grad_norm": None, "skipped_steps": 10}
    assert monitor.observe_metrics({"step": 20, **all_skipped}) == []
    assert monitor.observe_metrics({"step": 30, **all_skipped}) == []
    (a,) = monitor.observe_metrics({"step": 40, **all_skipped})
    assert (a.kind, a.severity, a.evidence["log_steps_all_skipped"]) == ("nonfinite_grad", "critical", 3)


# --------------------------------------------------------------------------- watchdog


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_watchdog_fires_once_per_stall_and_rearms_on_the_next_step():
    clock = FakeClock()
    dog = Watchdog(timeout_s=60, startup_timeout_s=300, clock=clock, action="alert")
    assert dog.check() is None  # not started: nothing to watch
    dog.start()
    clock.now = 299
    assert dog.check() is None  # the first step gets the startup allowance
    clock.now = 301
    a = dog.check()
    assert (a.kind, a.severity, a.evidence["last_step"]) == ("stalled_training", "critical", None)
    assert dog.check(400) is None  # once per stall
    for step in range(1, 11):  # training resumes, one step a second
        clock.now = 400 + step
        dog.beat(step)
        assert dog.check() is None
    # Step 11 hangs: only finished steps beat, so the hang itself is the stall.
    assert dog.check(410 + 60) is None
    a = dog.check(410 + 61)
    assert a.step == 10 and a.evidence["last_step"] == 10 and a.evidence["seconds_since_last_step"] == 61
    assert "after 10" in a.message


def test_watchdog_suspended_during_long_legitimate_work():
    clock = FakeClock()
    dog = Watchdog(timeout_s=60, clock=clock)
    dog.beat(100)
    dog.suspend()  # evaluation, checkpoint, pause
    assert dog.check(10_000) is None
    clock.now = 10_000
    dog.beat(100)  # evaluation over
    assert dog.check(10_059) is None
    assert dog.check(10_061) is not None


def test_monitor_builds_the_watchdog_from_config():
    clock = FakeClock()
    cfg = AnomalySection(stall_timeout_s=30, stall_startup_timeout_s=90, policy={"stalled_training": "stop"})
    dog = AnomalyMonitor(cfg).make_watchdog(clock)
    dog.start()
    assert dog.check(89) is None
    assert dog.check(91).action == "stop"
    assert AnomalyMonitor(AnomalySection(disabled=["stalled_training"])).make_watchdog(clock) is None


# --------------------------------------------------------------------------- evaluation and samples


def test_overfitting_when_gap_grows_and_validation_stops_improving():
    train = [2.9, 2.4, 2.0, 1.8, 1.6, 1.4]
    val = [3.0, 2.5, 2.2, 2.25, 2.3, 2.4]
    evals = [{"step": 200 * (i + 1), "val_loss": v, "train_loss": t} for i, (v, t) in enumerate(zip(val, train))]
    found = run(AnomalyMonitor(), evals=evals)
    (a,) = found
    assert (a.kind, a.step, a.severity) == ("overfitting", 1200, "warning")
    assert a.evidence["best_val_loss"] == 2.2 and a.evidence["best_step"] == 600
    assert [e["step"] for e in a.evidence["evals"]] == [600, 800, 1000, 1200]
    # The same gaps while validation still improves are just training outpacing validation.
    improving = [{**e, "val_loss": v} for e, v in zip(evals, (3.0, 2.6, 2.4, 2.2, 2.1, 2.0))]
    assert run(AnomalyMonitor(), evals=improving) == []


def test_overfitting_uses_the_last_training_loss_when_eval_lacks_it():
    monitor = AnomalyMonitor()
    found = []
    for i, (t, v) in enumerate(zip([2.9, 2.4, 2.0, 1.8, 1.6, 1.4], [3.0, 2.5, 2.2, 2.25, 2.3, 2.4])):
        step = 200 * (i + 1)
        found += monitor.observe_metrics({"step": step, "loss": t})
        found += monitor.observe_eval({"step": step, "val_loss": v})
    assert kinds(found) == ["overfitting"]


def test_musical_collapse_on_repetition_and_on_entropy_below_the_floor():
    monitor = AnomalyMonitor()
    assert monitor.observe_samples({"step": 200, "pitch_class_entropy": 2.9, "bar_repetition_rate": 0.1}) == []
    (a,) = monitor.observe_samples({"step": 400, "pitch_class_entropy": 2.9, "bar_repetition_rate": 0.8})
    assert a.kind == "musical_collapse" and "repeat" in a.message and a.evidence["musical_since_step"] == 200
    (a,) = monitor.observe_samples({"step": 600, "pitch_class_entropy": 1.0, "bar_repetition_rate": 0.1})
    assert a.evidence["entropy_floor"] == 1.5
    assert [h["step"] for h in a.evidence["entropy_history"]] == [200, 400, 600]


def test_musical_collapse_waits_until_the_samples_were_musical():
    # An untrained model's samples: near-random (more entropy than chorales), sparse (little
    # entropy) or looping. Not learned yet, not a collapse.
    monitor = AnomalyMonitor()
    monitor.set_music_reference({"pitch_class_entropy": {"mean": 2.9, "std": 0.1, "n": 30}})
    young = [(3.5, 0.0), (1.0, 0.0), (0.8, 0.7), (1.2, 0.2)]
    for i, (entropy, repetition) in enumerate(young):
        step = 200 * (i + 1)
        assert (
            monitor.observe_samples({"step": step, "pitch_class_entropy": entropy, "bar_repetition_rate": repetition})
            == []
        )
    monitor.observe_samples({"step": 1000, "pitch_class_entropy": 2.8, "bar_repetition_rate": 0.1})
    assert kinds(monitor.observe_samples({"step": 1200, "pitch_class_entropy": 1.0, "bar_repetition_rate": 0.1})) == [
        "musical_collapse"
    ]
    monitor.reset()  # a rollback: the model it judged is gone, so it waits again
    assert monitor.observe_samples({"step": 1400, "pitch_class_entropy": 1.0, "bar_repetition_rate": 0.1}) == []


def test_musical_collapse_floor_rises_with_a_reference():
    sample = {"step": 400, "pitch_class_entropy": 2.5, "bar_repetition_rate": 0.1}
    musical = {"step": 200, "pitch_class_entropy": 2.9, "bar_repetition_rate": 0.1}
    monitor = AnomalyMonitor()
    monitor.observe_samples(musical)
    assert monitor.observe_samples(sample) == []
    monitor = AnomalyMonitor()
    monitor.set_music_reference({"pitch_class_entropy": {"mean": 2.9, "std": 0.1, "n": 30}})
    monitor.observe_samples(musical)
    (a,) = monitor.observe_samples(sample)
    assert a.evidence["entropy_floor"] == pytest.approx(2.6)
    monitor.reset()  # the reference outlives a reset
    monitor.observe_samples({**musical, "step": 600})
    assert kinds(monitor.observe_samples({**sample, "step": 800})) == ["musical_collapse"]


# --------------------------------------------------------------------------- system


def test_memory_leak_trend_per_rank():
    _, system, *_ = healthy_run()
    for i, r in enumerate(system):
        r["rss_mb"][1] += 30 * i  # rank 1 leaks 30 MB per sample
    found = run(AnomalyMonitor(), system=system)
    a = found[0]
    assert a.kind == "memory_growth" and a.evidence["series"] == "rss_mb[1]"
    assert a.evidence["r2"] > 0.8 and a.evidence["slope_mb_per_1k_steps"] == pytest.approx(600, rel=0.1)
    assert a.evidence["window_steps"][1] - a.evidence["window_steps"][0] == 50 * 19


def test_gpu_allocation_leak_and_a_small_or_noisy_growth_is_not_one():
    _, system, *_ = healthy_run()
    for i, r in enumerate(system):
        r["gpu_mem_alloc_mb"] = [3000 + 40 * i]
    (a, *_) = run(AnomalyMonitor(), system=system)
    assert a.evidence["series"] == "gpu_mem_alloc_mb[0]"
    rng = np.random.default_rng(1)
    for i, r in enumerate(system):
        r["gpu_mem_alloc_mb"] = [3000 + 5 * i]  # steady but too small to matter
        r["rss_mb"] = [2000 + 300 * rng.standard_normal()]  # large but no trend
    assert run(AnomalyMonitor(), system=system) == []


def test_gpu_memory_near_limit_warning_then_critical():
    monitor = AnomalyMonitor()
    record = {
        "step": 100,
        "gpu_mem_alloc_mb": [30000, 30000],
        "gpu_mem_peak_mb": [40000, 75000],
        "gpu_mem_total_mb": [80000, 80000],
    }
    (a,) = monitor.observe_system(record)
    assert (a.kind, a.severity, a.evidence["rank"]) == ("gpu_memory_near_limit", "warning", "1")
    assert a.evidence["fraction"] == pytest.approx(75000 / 80000)
    # Dict-by-rank form and NVML's figure; more severe, so the cooldown lets it through.
    (a,) = monitor.observe_system({"step": 110, "gpu_mem_used_mb": {"0": 79500}, "gpu_mem_total_mb": {"0": 80000}})
    assert a.severity == "critical"
    assert monitor.observe_system({"step": 120, "gpu_mem_used_mb": 79500, "gpu_mem_total_mb": 80000}) == []


# --------------------------------------------------------------------------- cooldown, policy, config


def test_cooldown_debounces_the_same_kind():
    metrics, *_ = healthy_run()
    for r in metrics:
        if 1010 <= r["step"] <= 1310:
            r["loss"] = math.nan
    found = run(AnomalyMonitor(AnomalySection(cooldown_steps=100)), metrics)
    assert [(a.kind, a.step) for a in found] == [("nonfinite_loss", s) for s in (1010, 1110, 1210, 1310)]
    assert len(run(AnomalyMonitor(AnomalySection(cooldown_steps=0)), metrics)) == 31


def test_step_going_back_or_reset_rearms_the_cooldown():
    monitor = AnomalyMonitor()
    assert len(monitor.observe_metrics({"step": 730, "loss": math.nan})) == 1
    assert monitor.observe_metrics({"step": 740, "loss": math.nan}) == []
    # Rolled back to step 500 without a reset: the step went backwards, so it counts anew.
    assert len(monitor.observe_metrics({"step": 510, "loss": math.nan})) == 1
    monitor.reset()
    assert len(monitor.observe_metrics({"step": 520, "loss": math.nan})) == 1


def test_default_policy_and_overrides():
    assert DEFAULT_ACTIONS["nonfinite_loss"] == DEFAULT_ACTIONS["nonfinite_grad"] == "rollback"
    assert DEFAULT_ACTIONS["loss_divergence"] == "rollback"
    assert DEFAULT_ACTIONS["loss_spike"] == "alert"
    assert set(DEFAULT_ACTIONS) == set(KINDS) and len(KINDS) == 16
    assert set(DEFAULT_ACTIONS.values()) <= set(ACTIONS)
    policy = Policy({"loss_spike": "lower_lr"})
    assert policy.action_for("loss_spike") == "lower_lr" and policy.action_for("overfitting") == "alert"
    with pytest.raises(ValueError, match="unknown anomaly kind 'nan_loss'"):
        Policy({"nan_loss": "rollback"})
    with pytest.raises(ValueError, match="unknown action 'explode'"):
        Policy({"loss_spike": "explode"})
    monitor = AnomalyMonitor(AnomalySection(policy={"nonfinite_loss": "stop"}))
    (a,) = monitor.observe_metrics({"step": 10, "loss": math.nan})
    assert a.action == "stop"


def test_disabled_kinds_and_disabled_monitor_stay_silent():
    record = {"step": 10, "loss": math.nan}
    assert AnomalyMonitor(AnomalySection(disabled=["nonfinite_loss"])).observe_metrics(record) == []
    monitor = AnomalyMonitor(AnomalySection(enabled=False))
    assert monitor.observe_metrics(record) == [] and monitor.make_watchdog() is None


def errors_of(section, **values):
    """(field path, message) of each validation error, as engine.contract.config reports them."""
    with pytest.raises(ValidationError) as info:
        section(**values)
    return [(".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, ")) for e in info.value.errors()]


def test_config_sections_refuse_bad_values_with_the_field_named():
    ((path, msg),) = errors_of(AnomalySection, policy={"nan_loss": "rollback"})
    assert path == "policy" and msg.startswith("unknown anomaly kind 'nan_loss'; kinds: nonfinite_loss,")
    ((path, msg),) = errors_of(AnomalySection, policy={"loss_spike": "explode"})
    assert path == "policy" and msg.startswith("loss_spike: unknown action 'explode'; actions: alert,")
    ((path, msg),) = errors_of(AnomalySection, disabled=["spikes"])
    assert path == "disabled" and msg.startswith("unknown anomaly kind(s) 'spikes'")
    ((path, msg),) = errors_of(AnomalySection, gpu_mem_warn_frac=0.99, gpu_mem_critical_frac=0.95)
    assert path == "" and "gpu_mem_warn_frac (0.99) must not exceed gpu_mem_critical_frac (0.95)" in msg
    ((path, _),) = errors_of(AnomalySection, spike_windw=10)
    assert path == "spike_windw"
    ((path, _),) = errors_of(AnomalySection, spike_z=-1)
    assert path == "spike_z"
    ((path, msg),) = errors_of(MusicSection, num_samples=3, seeds=[1, 2])
    assert "seeds has 2 entries but num_samples is 3" in msg
    ((path, _),) = errors_of(MusicSection, num_samples=1, seeds=[-1])
    assert path == "seeds"
    assert MusicSection(num_samples=3).sample_seeds() == [0, 1, 2]
    assert MusicSection(num_samples=2, seeds=[7, 9]).sample_seeds() == [7, 9]


# --------------------------------------------------------------------------- events


def test_anomalies_round_trip_through_the_event_stream(tmp_path):
    metrics, system, *_ = healthy_run()
    at(metrics, 1000)["loss"] = math.nan
    at(metrics, 1500)["grad_norm"] *= 30
    system[-1]["gpu_mem_peak_mb"] = [78000, 5100]
    direct = run(AnomalyMonitor(), metrics, system)
    assert kinds(direct) == ["nonfinite_loss", "grad_explosion", "gpu_memory_near_limit"]

    with EventWriter(tmp_path / "events.jsonl") as writer:
        for r in metrics:
            writer.emit("metrics", r["step"], **{k: v for k, v in r.items() if k != "step"})
        for a in direct:
            writer.emit("anomaly", a.step, **a.to_event())
    events, garbage = read_events(tmp_path / "events.jsonl")
    assert garbage == 0
    written = [e for e in events if e["type"] == "anomaly"]
    assert [(e["kind"], e["step"], e["id"], e["action"]) for e in written] == [
        (a.kind, a.step, a.id, a.action) for a in direct
    ]
    assert math.isnan(written[0]["evidence"]["loss"])

    # Replaying the metrics events finds the same training-metric anomalies.
    replay = AnomalyMonitor()
    again = [a for e in events for a in replay.observe_event(e)]
    assert [(a.kind, a.step) for a in again] == [(a.kind, a.step) for a in direct if a.kind != "gpu_memory_near_limit"]
