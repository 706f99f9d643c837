"""Anomaly detection on the values the engine already has at log steps, with a recovery policy.

This module holds the monitor (cooldown, policy) and the list of detectors; the
detectors live by what they watch: ``loss_detectors`` (loss, gradients, LR),
``system_detectors`` (speed, memory), ``quality_detectors`` (evaluation,
samples), ``watchdog`` (stalled steps, on a clock), on the base in ``detector``.

Plain Python and numpy: no torch, no Qt, no threads of its own. Detectors read
the dictionaries the engine writes as events anyway, so they add no
host-device synchronisation; each keeps a small window of past values.

How the engine uses it (rank 0; every action it takes must still be agreed on
all ranks at the same step)::

    monitor = AnomalyMonitor(config.anomaly)
    monitor.set_music_reference(reference)      # engine.music.reference.reference_stats(...)
    watchdog = monitor.make_watchdog()          # None when stalled_training is disabled
    watchdog.start()
    ...
    watchdog.beat(step)                         # after every optimizer step (cheap)
    for a in monitor.observe_metrics(metrics_payload):      # at each log step
        writer.emit("anomaly", a.step, **a.to_event()); act(a.action, a)
    monitor.observe_eval(eval_payload)          # after each validation pass
    monitor.observe_system(system_payload)      # from the system sampler
    monitor.observe_samples(sample_metrics)     # after each sampling round
    monitor.expect_lr_change()                  # when set_lr / lower_lr / resume changes the LR
    monitor.reset()                             # after a rollback: the series restart
    # a monitor thread: a = watchdog.check(); if a: emit it
    watchdog.suspend() / watchdog.beat(step)    # around evaluation, sampling, checkpoints, pauses

Input records (missing keys are simply not checked; each needs ``step``):

* metrics: ``loss``, ``lr``, ``grad_norm`` (global norm before clipping),
  ``tokens_per_s`` (else ``samples_per_s``), ``data_wait_frac`` (0..1),
  ``rank_work_times`` (each rank's own seconds per step, one per rank). Others (``step_time``,
  ``grad_norm_clipped``, ``tokens_seen``) are ignored.
* eval: ``val_loss`` and ``train_loss``; without ``train_loss`` the last
  logged training loss stands in (noisier: send the averaged one).
* system: ``rss_mb`` and GPU memory ``gpu_mem_alloc_mb``,
  ``gpu_mem_reserved_mb``, ``gpu_mem_peak_mb``, ``gpu_mem_used_mb`` (NVML) and
  ``gpu_mem_total_mb``; each a number, a list indexed by rank or a dict
  ``{rank: value}``.
* samples: the mean over the round's samples of ``pitch_class_entropy`` and
  ``bar_repetition_rate`` (engine.music.metrics).

Each detection is an :class:`Anomaly`; ``to_event()`` is the payload of an
``anomaly`` event. Its ``action`` is what the :class:`Policy` prescribes; the
engine reports what it did in a later event naming ``anomaly.id``.
Debounce: after a kind fires it is quiet for ``cooldown_steps`` unless it
comes back more severe (or the step goes backwards, as after a rollback).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from engine.contract.monitor_config import ACTIONS, DEFAULT_ACTIONS, KINDS, AnomalySection
from engine.monitoring.detector import SEVERITIES, SUGGESTIONS, Anomaly, Detector, number_of
from engine.monitoring.loss_detectors import (
    GradExplosion,
    LossDivergence,
    LossSpike,
    LrAnomaly,
    NonFiniteGrad,
    NonFiniteLoss,
    VanishingGradients,
)
from engine.monitoring.quality_detectors import Memorization, MusicalCollapse, Overfitting
from engine.monitoring.system_detectors import (
    DataloaderBottleneck,
    GpuMemoryNearLimit,
    MemoryGrowth,
    StragglerRank,
    ThroughputDrop,
)
from engine.monitoring.watchdog import Watchdog


class Policy:
    """Recovery action per anomaly kind: :data:`DEFAULT_ACTIONS` with overrides."""

    def __init__(self, overrides: Mapping[str, str] | None = None):
        overrides = dict(overrides or {})
        for kind, action in overrides.items():
            if kind not in KINDS:
                raise ValueError(f"unknown anomaly kind {kind!r}; kinds: {', '.join(KINDS)}")
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r} for {kind}; actions: {', '.join(ACTIONS)}")
        self.actions: dict[str, str] = {**DEFAULT_ACTIONS, **overrides}

    def action_for(self, kind: str) -> str:
        return self.actions[kind]


DETECTORS: tuple[type[Detector], ...] = (
    NonFiniteLoss,
    NonFiniteGrad,
    LossSpike,
    LossDivergence,
    GradExplosion,
    VanishingGradients,
    LrAnomaly,
    ThroughputDrop,
    DataloaderBottleneck,
    StragglerRank,
    Overfitting,
    MemoryGrowth,
    GpuMemoryNearLimit,
    MusicalCollapse,
    Memorization,
)


class AnomalyMonitor:
    """Runs every enabled detector on the records the engine produces, applies the cooldown and
    the policy, and returns the :class:`Anomaly` records to emit. Not thread-safe: call it from
    one thread (the :class:`Watchdog` is the part meant for a second thread)."""

    def __init__(self, config: AnomalySection | None = None):
        self.config = config if config is not None else AnomalySection()
        self.policy = Policy(self.config.policy)
        self._music_reference: Mapping[str, Mapping[str, float]] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget all windows and cooldowns: call after a rollback or resume, when the series restart."""
        disabled = set(self.config.disabled) if self.config.enabled else set(KINDS)
        self.detectors: list[Detector] = [d(self.config) for d in DETECTORS if d.kind not in disabled]
        for d in self.detectors:
            if isinstance(d, MusicalCollapse):
                d.reference = self._music_reference
        self._last: dict[str, tuple[int, int]] = {}  # kind -> (step, severity rank) it last fired at
        self._last_loss: float | None = None

    def set_music_reference(self, reference: Mapping[str, Mapping[str, float]] | None) -> None:
        """The validation pieces' :func:`engine.music.reference.reference_stats`, for musical_collapse."""
        self._music_reference = reference
        for d in self.detectors:
            if isinstance(d, MusicalCollapse):
                d.reference = reference

    def expect_lr_change(self) -> None:
        """The next LR jump is intended (set_lr, lower_lr, resume): lr_anomaly lets it pass."""
        for d in self.detectors:
            if isinstance(d, LrAnomaly):
                d.expect_change()

    def make_watchdog(self, clock: Callable[[], float] = time.monotonic) -> Watchdog | None:
        """A :class:`Watchdog` configured from ``stall_*``; None when stalled_training is off."""
        if not self.config.enabled or "stalled_training" in self.config.disabled:
            return None
        return Watchdog(
            self.config.stall_timeout_s,
            self.config.stall_startup_timeout_s,
            clock,
            self.policy.action_for("stalled_training"),
        )

    def observe_metrics(self, record: Mapping[str, Any]) -> list[Anomaly]:
        loss = number_of(record, "loss")
        if loss is not None and math.isfinite(loss):
            self._last_loss = loss
        return self._run("metrics", record)

    def observe_eval(self, record: Mapping[str, Any]) -> list[Anomaly]:
        if number_of(record, "train_loss") is None and self._last_loss is not None:
            record = {**record, "train_loss": self._last_loss}
        return self._run("eval", record)

    def observe_system(self, record: Mapping[str, Any]) -> list[Anomaly]:
        return self._run("system", record)

    def observe_samples(self, record: Mapping[str, Any]) -> list[Anomaly]:
        return self._run("samples", record)

    def observe_event(self, event: Mapping[str, Any]) -> list[Anomaly]:
        """Dispatch an event from ``events.jsonl`` by type (metrics, eval, system, sample), e.g.
        to replay a finished run. A ``sample`` event's mean metrics are read from ``metrics``."""
        kind = event.get("type")
        if kind == "metrics":
            return self.observe_metrics(event)
        if kind == "eval":
            return self.observe_eval(event)
        if kind == "system":
            return self.observe_system(event)
        if kind == "sample":
            return self.observe_samples({"step": event.get("step", 0), **(event.get("metrics") or {})})
        return []

    def _run(self, source: str, record: Mapping[str, Any]) -> list[Anomaly]:
        step = int(record["step"])
        out = []
        for detector in self.detectors:
            if detector.source != source:
                continue
            found = detector.update(step, record)
            if found is not None and self._admit(found):
                out.append(replace(found, action=self.policy.action_for(found.kind)))
        return out

    def _admit(self, anomaly: Anomaly) -> bool:
        """Cooldown: quiet for cooldown_steps after a kind fired, unless it is now more severe or
        the step went backwards (a rollback that did not call reset)."""
        rank = SEVERITIES.index(anomaly.severity)
        last = self._last.get(anomaly.kind)
        if last is not None:
            last_step, last_rank = last
            if 0 <= anomaly.step - last_step < self.config.cooldown_steps and rank <= last_rank:
                return False
        self._last[anomaly.kind] = (anomaly.step, rank)
        return True


__all__ = [
    "SEVERITIES",
    "SUGGESTIONS",
    "DETECTORS",
    "Anomaly",
    "AnomalyMonitor",
    "Detector",
    "Policy",
    "Watchdog",
]
