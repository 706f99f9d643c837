"""What watches a run from inside: system sampling, detectors, the stall watchdog, music, sinks, profiler."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from engine.monitoring.anomaly import Anomaly, AnomalyMonitor
from engine.monitoring.monitors import Profiler, StepClock, SystemSampler, system_event
from engine.monitoring.music_evaluator import MusicEvaluator
from engine.monitoring.sinks import Sinks
from engine.monitoring.watchdog import Watchdog

if TYPE_CHECKING:
    from engine.training.trainer import Trainer

WATCHDOG_PERIOD_S = 5.0


class RunMonitors:
    """System sampling on every rank; detectors, music, sinks and the watchdog on rank 0.

    A detector's prescribed action is not taken here: it is queued on the dispatcher and travels
    with the next control agreement, so every rank applies it at the same step.
    """

    def __init__(self, trainer: Trainer, tokenizer, val_pieces: list):
        self.trainer = trainer
        cfg, run, main = trainer.cfg, trainer.run, trainer.dist.is_main
        self.system = SystemSampler(
            trainer.dist.rank, trainer.dist.local_rank, trainer.device, cfg.monitor.system_interval_s
        )
        self.system.start()
        self.last_system_time = 0.0
        self.anomalies = AnomalyMonitor(cfg.anomaly) if main and cfg.anomaly.enabled else None
        self.music = (
            MusicEvaluator(
                cfg.music,
                cfg.sample,
                tokenizer,
                val_pieces,
                run.samples,
                cfg.tokenizer.positions_per_beat,
                corpus=trainer.batches.corpus,
                data_cfg=cfg.data,
            )
            if main and cfg.music.enabled
            else None
        )
        if self.music and self.anomalies:
            self.anomalies.set_music_reference(self.music.reference)
        self.sinks = (
            Sinks(cfg.sinks, run.root, run.root.name, cfg.model_dump(mode="json"), start_step=trainer.step)
            if main
            else None
        )
        for problem in self.sinks.problems if self.sinks else []:
            trainer.emit("error", message=problem, where="sinks", fatal=False)
        self.profiler: Profiler | None = None
        self.clock: StepClock | None = None  # debug.step_times, from begin()
        self.watchdog = self.anomalies.make_watchdog() if self.anomalies else None
        if self.watchdog is not None:
            threading.Thread(target=self._watch, args=(self.watchdog,), name="podium-watchdog", daemon=True).start()
        if main:
            hooks = trainer.hooks
            hooks.subscribe("log_step", self.on_log_step)
            hooks.subscribe("evaluation", self.on_evaluation)
            hooks.subscribe("checkpoint", lambda _saved: self.sinks.flush() if self.sinks else None)
            hooks.subscribe("restored", self.on_restored)

    def _watch(self, watchdog: Watchdog) -> None:
        """Fires ``stalled_training`` when no step finishes in time, even while a step hangs.

        Its action is queued like any detector's and taken at the next agreement, once the slow
        step is over; a step that never returns (a deadlocked collective) cannot act, and only
        ending the processes (the GUI's Stop escalates to signals) gets past it.
        """
        while True:
            time.sleep(WATCHDOG_PERIOD_S)
            anomaly = watchdog.check()
            if anomaly is not None:
                self._report(anomaly)

    def begin(self, step: int) -> None:
        if self.watchdog is not None:
            self.watchdog.start()
        cfg = self.trainer.cfg
        if cfg.debug.step_times and self.trainer.dist.is_main:
            self.clock = StepClock(self.trainer.run.root / "step_times.json")
            self.clock.tick(step)

    def step_done(self, step: int) -> None:
        if self.watchdog is not None:
            self.watchdog.beat(step)
        if self.profiler is not None:
            report = self.profiler.step_done()
            if report is not None:
                self.profiler = None
                self.trainer.emit("profile", **report)

    def tick(self, step: int) -> None:
        """The end of a loop iteration, its side work included."""
        if self.clock is not None:
            self.clock.tick(step)

    def pause(self) -> None:
        if self.watchdog is not None:
            self.watchdog.suspend()

    def loop_ended(self) -> None:
        if self.clock is not None:
            self.clock.save()
        self.pause()

    def close(self, final: dict[str, Any] | None = None) -> None:
        """``final``: the run's last metrics, for the sinks' summary of the run."""
        self.system.stop()
        if self.sinks is not None:
            self.sinks.close(final)

    def unwatched(self) -> AbstractContextManager:
        """Legitimate long work (evaluation, a save, a checkpoint load) is not a stalled step."""
        return self.watchdog.off() if self.watchdog is not None else nullcontext()

    def on_log_step(self, metrics: dict[str, Any], samples: list[dict[str, Any] | None]) -> None:
        """Rank 0, at a log step: the metrics and every rank's latest system sample (a ``system`` event when newer)."""
        self.observe("train", metrics, self.anomalies.observe_metrics if self.anomalies else None)
        system = system_event(samples)
        newest = max((s["time"] for s in samples if s), default=0.0)
        if system and newest > self.last_system_time:
            self.last_system_time = newest
            self.trainer.emit("system", **system)
            self.observe(
                "system",
                {"host_cpu_percent": system["host_cpu_percent"], "host_mem_percent": system["host_mem_percent"]},
                self.anomalies.observe_system if self.anomalies else None,
                system,
            )

    def on_restored(self, step: int) -> None:
        """Rank 0, after a rollback: the detectors' series and the mirrors' curves go on from ``step``."""
        if self.anomalies is not None:
            self.anomalies.reset()
        if self.sinks is not None:
            self.sinks.rewound_to(step)

    def on_evaluation(self, result: dict[str, Any]) -> None:
        self.observe("eval", result, self.anomalies.observe_eval if self.anomalies else None)

    def on_samples(self, metrics: dict[str, Any]) -> None:
        self.observe("music", metrics, self.anomalies.observe_samples if self.anomalies else None)

    def observe(
        self,
        prefix: str,
        values: dict[str, Any],
        detector: Callable[[dict[str, Any]], list[Anomaly]] | None,
        record: dict[str, Any] | None = None,
    ) -> None:
        """Rank 0: mirror values to the sinks and run the detectors."""
        step = self.trainer.step
        assert self.sinks is not None, "observe runs on rank 0, which has the sinks"
        for problem in self.sinks.scalars(prefix, step, values):
            self.trainer.emit("error", message=problem, where="sinks", fatal=False)
        if detector is None:
            return
        for anomaly in detector({"step": step, **(record or values)}):
            self._report(anomaly)

    def _report(self, anomaly: Anomaly) -> None:
        self.trainer.emit("anomaly", **anomaly.to_event())
        if anomaly.action != "alert":
            self.trainer.control.queue(
                {"id": anomaly.id, "kind": anomaly.kind, "action": anomaly.action, "step": anomaly.step}
            )
