"""Everything the GUI knows about one run, built from its events. Qt-free.

:class:`RunModel` ingests event dicts (from a live tail or a finished file)
into metric series, run state, markers and a feed of notable happenings. It
only grows (lists are appended to, counters go up), so views keep an index of
what they have shown and pick up the rest; the session object turns
``ingest``'s return value into Qt signals.
"""

from __future__ import annotations

import collections
import math
import operator
import time as _time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from engine.contract.events import (
    ActionTaken,
    Anomaly,
    Checkpoint,
    CheckpointRemoved,
    ControlAck,
    Data,
    Error,
    Eval,
    MetricsRow,
    Profile,
    Record,
    Rejected,
    Restart,
    RunEnd,
    RunStart,
    Sample,
    Status,
    System,
    TypedEvent,
    is_metrics,
)
from engine.contract.progress import profile_text
from engine.contract.rundir import STALL_SECONDS
from gui.models.series import Series

TERMINAL_STATES = ("finished", "stopped", "early_stopped", "failed", "pruned")
# States in which the engine reads its control inbox.
LIVE_STATES = ("starting", "preparing", "running", "paused", "stopping", "stalled")

_HEADER = frozenset(("v", "type", "time", "step"))
_TIME = operator.itemgetter("time")
_STEP = operator.itemgetter("step")
_ETA_WINDOW = 30
_REJECTED_SHOWN = 100
Floats = npt.NDArray[np.float64]
Pending = dict[str, list[tuple[float, float, float]]]  # points per series, gathered before one extend each
Batch = list[
    tuple[list["MetricsRow"], Floats, Floats]
]  # runs of metrics rows with their steps and times  # feed rows for bad lines; past these they are only counted


@dataclass
class Marker:
    """A vertical marker on every plot: an anomaly, a control action, a restart, an error."""

    step: float
    t: float
    kind: str
    severity: str  # info | warning | critical
    text: str


@dataclass
class FeedItem:
    """One line of the run's event feed (acks, anomalies, checkpoints, errors, ...)."""

    time: float
    step: int
    kind: str
    severity: str
    title: str
    detail: str = ""
    path: str = ""  # a file or folder the line is about (a profile's trace), opened from the Events pane


@dataclass
class Command:
    id: str
    cmd: str
    args: dict[str, Any]
    sent: float
    outcome: str | None = None  # done | refused, once acknowledged
    reason: str = ""


@dataclass
class IngestResult:
    """What one ``ingest`` call changed, for the session's signals."""

    events: int = 0
    new_series: bool = False
    state_changed: bool = False
    acks: list[Command] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    ended: RunEnd | None = None


def _fmt_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in args.items())


class RunModel:
    def __init__(self, path: str | Path | None = None, name: str | None = None):
        self.path = Path(path) if path is not None else None
        self.name = name or (self.path.name if self.path else "run")
        self.series: dict[str, Series] = {}
        self.series_order: list[str] = []  # creation order; views bind new ones by index
        self.t0: float | None = None
        self.last_time: float | None = None
        self.step = 0
        self.events = 0
        self.config: dict[str, Any] | None = None
        self.env: dict[str, Any] = {}
        self.total_steps: int | None = None
        self.status_state: str | None = None
        self.status_message = ""
        self.progress: tuple[float, float] | None = None
        self.data: Data | None = None
        self.end: RunEnd | None = None
        self.fatal_error: Error | None = None
        self.latest: dict[str, Any] = {}  # the last metrics event
        # The schedule's peak LR now, from whichever came last in the file: a metrics event's ``peak_lr``
        # (which also carries an anomaly's LR cut) or a set_lr's ack (its ``new_peak_lr``, also for one
        # sent from the command line). None until either is seen.
        self.peak_lr: float | None = None
        self.best_val_loss: float | None = None
        self.last_checkpoint: Checkpoint | None = None
        self.checkpoints: list[Checkpoint] = []
        self.markers: list[Marker] = []
        # Every event but metrics and system ones, in file order: the panels (alerts, samples, checkpoints)
        # read them from here, so each run's file is parsed once however many views follow it.
        self.notable: list[TypedEvent] = []
        # The corpus level of each musical metric, {name: (mean, std or None)}, from the newest
        # sample event that has one (the engine measures it once per run). Replaced, never
        # mutated, so a view can tell a new one by identity.
        self.music_reference: dict[str, tuple[float, float | None]] = {}
        self.feed: list[FeedItem] = []
        self.commands: dict[str, Command] = {}
        self.unread_anomalies = 0
        self.rejected_lines = 0  # lines of the event file that were not valid events
        self.out_of_order = 0  # metrics lines going back with nothing announcing it
        self.rejected_shown = 0
        self.restarts = 0
        self.rollbacks = 0  # times the metrics went back to an earlier step (a rollback, a resume, a restart)
        self._metrics_step = -math.inf  # the newest training step logged in the current pass
        # Set by the session: the launcher's liveness (None = cannot tell),
        # and why the process ended when it ended without a run_end event.
        self.alive: bool | None = None
        self.exit_note = ""
        # Bytes of the event file not read yet (set by the session): while a
        # big backlog is read, plots redraw rarely, so reading goes first.
        self.backlog = 0
        self.state_version = 0
        self._rate: collections.deque[tuple[float, float]] = collections.deque(maxlen=_ETA_WINDOW)
        self._names: dict[tuple[str, str], str] = {}

    # ----------------------------------------------------------------- state

    def state(self, now: float | None = None) -> str:
        """starting, preparing, running, paused, stopping, stalled, or a terminal reason."""
        if self.end is not None:
            return self.end.reason
        if self.fatal_error is not None or self.alive is False:
            return "failed"
        if not self.events:
            return "starting"
        state = self.status_state or "running"
        if state not in ("preparing", "starting", "running", "paused", "stopping"):
            state = "running"
        now = _time.time() if now is None else now
        if state == "running" and self.last_time is not None and now - self.last_time > STALL_SECONDS:
            return "stalled"
        return state

    def is_live(self, now: float | None = None) -> bool:
        return self.state(now) in LIVE_STATES

    def eta_seconds(self) -> float | None:
        """Remaining steps over the recent wall-clock step rate (pauses reset the window)."""
        if not self.total_steps or len(self._rate) < 2 or self.end is not None:
            return None
        (s0, t0), (s1, t1) = self._rate[0], self._rate[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return max(0.0, (self.total_steps - self.step) * (t1 - t0) / (s1 - s0))

    def mark_anomalies_read(self) -> None:
        self.unread_anomalies = 0
        self.state_version += 1

    def note_command(self, command_id: str, cmd: str, args: dict[str, Any]) -> Command:
        """Record a command this GUI sent, so its ack can be matched and shown."""
        command = Command(command_id, cmd, dict(args), _time.time())
        self.commands[command_id] = command
        shown = f"{cmd}({_fmt_args(args)})" if args else cmd
        self.feed.append(FeedItem(command.sent, self.step, "command", "info", f"sent {shown}", f"id {command_id}"))
        self.state_version += 1
        return command

    def note(self, severity: str, title: str, detail: str = "") -> None:
        """A line in the feed from the GUI itself (a signal sent, a command unanswered)."""
        self.feed.append(FeedItem(_time.time(), self.step, "gui", severity, title, detail))
        self.state_version += 1

    def note_rejected(self, rejected: list[Rejected], total: int) -> None:
        """Lines of the event file that are not valid events: all counted, the first ones shown in the feed
        with their line and reason (everything else in the run is still shown)."""
        for item in rejected:
            if self.rejected_shown >= _REJECTED_SHOWN:
                break
            where = f" (line {item.line})" if item.line else ""
            self.feed.append(
                FeedItem(_time.time(), self.step, "rejected", "warning", f"skipped a bad event{where}", item.reason)
            )
            self.rejected_shown += 1
        self.rejected_lines = total
        self.state_version += 1

    @property
    def rejected(self) -> int:
        """Lines of the run's file that are not shown: not valid events, or metrics out of order."""
        return self.rejected_lines + self.out_of_order

    def note_out_of_order(self, count: int, step: int, newest: float) -> None:
        """Metrics rows that go back with no rollback, restart or resume announcing it: counted with the
        rejected lines, the first ones shown in the feed."""
        self.out_of_order += count
        if self.rejected_shown < _REJECTED_SHOWN:
            title = f"skipped {count} metrics line(s) going back" if count > 1 else "skipped a metrics line going back"
            detail = (
                f"step {step} after step {newest:.0f}, with no rollback, restart or resume announcing it: "
                "not this run's training, so nothing logged after it is faded"
            )
            self.feed.append(FeedItem(_time.time(), self.step, "rejected", "warning", title, detail))
            self.rejected_shown += 1
        self.state_version += 1

    def pending_commands(self) -> list[Command]:
        return [c for c in self.commands.values() if c.outcome is None]

    # ---------------------------------------------------------------- series

    def _series(self, name: str) -> Series:
        s = self.series.get(name)
        if s is None:
            s = self.series[name] = Series(name)
            self.series_order.append(name)
        return s

    def _name(self, prefix: str, key: str) -> str:
        name = self._names.get((prefix, key))
        if name is None:
            name = self._names[(prefix, key)] = f"{prefix}/{key}"
        return name

    # ---------------------------------------------------------------- ingest

    def ingest(self, events: Iterable[Record]) -> IngestResult:
        """Apply records in file order. Metric points are batched per series and
        flushed at the end (or before a restart purges what came before)."""
        events = events if isinstance(events, list) else list(events)
        result = IngestResult(events=len(events))
        n_series = len(self.series_order)
        state_before = (
            self.status_state,
            self.end is not None,
            self.fatal_error is not None,
            self.status_message,
            self.progress,
        )
        pending: Pending = {}
        batch: Batch = []  # runs of metrics rows, their steps and times
        # Metrics rows are nearly every line of a run: runs of them between
        # other events are taken in bulk, the rest one by one.
        start = 0
        for i in [i for i, e in enumerate(events) if not is_metrics(e)] + [len(events)]:
            if i > start:  # between two other events: metrics rows only
                self._metrics_run(cast(list[MetricsRow], events[start:i]), batch, pending)
            if i < len(events):
                self._ingest_one(cast(TypedEvent, events[i]), batch, pending, result)
            start = i + 1
        self.events += result.events
        self._flush(pending, batch)
        result.new_series = len(self.series_order) != n_series
        state_after = (
            self.status_state,
            self.end is not None,
            self.fatal_error is not None,
            self.status_message,
            self.progress,
        )
        if state_after != state_before or result.acks or result.anomalies or result.events:
            self.state_version += 1
        result.state_changed = state_after != state_before
        return result

    def _metrics_run(self, run: list[MetricsRow], batch: Batch, pending: Pending) -> None:
        """Consecutive metrics rows (their envelopes checked by the reader): arrays, the points into ``batch``.

        A training step is logged once per pass, and the engine announces every way back (a rollback's
        ``action_taken``, a restart, a resume's ``run_start``) before it logs a step again: a row at or
        before the newest logged step with no announcement is not the run's, and is skipped and counted
        rather than taken for a rollback that would fade what came after it.
        """
        t_abs = np.array(list(map(_TIME, run)), dtype=np.float64)
        steps = np.array(list(map(_STEP, run)), dtype=np.float64)
        newest_before = np.maximum.accumulate(np.concatenate(([self._metrics_step], steps[:-1])))
        stale = steps <= newest_before
        if stale.any():
            first = int(np.argmax(stale))
            self.note_out_of_order(int(stale.sum()), int(steps[first]), float(newest_before[first]))
            keep = ~stale
            run = [row for row, kept in zip(run, keep.tolist(), strict=True) if kept]
            steps, t_abs = steps[keep], t_abs[keep]
            if not run:
                return
        self._add_metrics(run, steps, t_abs, batch)

    def _add_metrics(self, run: list[MetricsRow], steps: Floats, t_abs: Floats, batch: Batch) -> None:
        """A stretch of metrics rows whose steps only rise, from after the newest one logged."""
        self._metrics_step = float(steps[-1])
        if self.t0 is None:
            self.t0 = float(t_abs[0])
        latest = float(t_abs.max())
        self.last_time = latest if self.last_time is None else max(self.last_time, latest)
        self.step = max(self.step, int(steps.max()))
        self.latest = run[-1]
        self._note_peak(run[-1].get("peak_lr"))
        for step, t_event in zip(steps[-_ETA_WINDOW:].tolist(), t_abs[-_ETA_WINDOW:].tolist(), strict=True):
            if not self._rate or step > self._rate[-1][0]:
                self._rate.append((int(step), t_event))
        batch.append((run, steps, t_abs - self.t0))

    def _ingest_one(self, event: TypedEvent, batch: Batch, pending: Pending, result: IngestResult) -> None:
        if not isinstance(event, System):
            self.notable.append(event)
        if self.t0 is None:
            self.t0 = event.time
        t = event.time - self.t0
        self.last_time = event.time if self.last_time is None else max(self.last_time, event.time)
        self.step = max(self.step, event.step)
        match event:
            case Eval():
                self._add_numbers(pending, "eval", event.to_values(), event.step, t)
                val = event.val_loss
                if val is not None and math.isfinite(val) and (self.best_val_loss is None or val < self.best_val_loss):
                    self.best_val_loss = val
            case System():
                self._on_system(event, t, pending)
            case Sample():
                self._on_sample(event, t, pending)
            case Restart():
                self._flush(pending, batch)
                self._on_restart(event, t)
            case RunStart():
                self._flush(pending, batch)  # a resume supersedes what came after its step
                self._on_start(event, t)
            case Anomaly() if event.action_taken is not None:
                self._flush(pending, batch)  # a rollback supersedes what came after its step
                self._on_recovery(event, event.action_taken, result)
            case Anomaly():
                self._on_anomaly(event, t, result)
            case Status():
                self._on_status(event)
            case Data():
                self._on_data(event)
            case ControlAck():
                self._on_ack(event, t, result)
            case Checkpoint():
                self.last_checkpoint = event
                self.checkpoints.append(event)
                size = f", {event.size_bytes / 1e6:.1f} MB" if event.size_bytes is not None else ""
                title = f"checkpoint {Path(event.path).name} ({event.kind}, {event.reason})"
                self._feed(event, "checkpoint", "info", title, event.path + size)
            case CheckpointRemoved():
                title = f"checkpoint removed {Path(event.path).name}"
                self._feed(event, "checkpoint", "info", title, f"{event.path} ({event.reason})")
            case Profile():
                path = self._local_path(event.path, "profiles")
                detail = f"trace: {path}\nopen it in Perfetto (ui.perfetto.dev), chrome://tracing or TensorBoard\n"
                title = f"profile: {profile_text(event)}"
                self._feed(event, "profile", "info", title, detail + "\n" + event.table, path=path)
            case Error():
                self._on_error(event, t)
            case RunEnd():
                self.end = event
                severity = "critical" if event.reason == "failed" else "info"
                self._feed(event, "end", severity, f"run ended: {event.reason}", event.message)
                result.ended = event

    def _flush(self, pending: Pending, batch: Batch) -> None:
        if batch:
            if len(batch) == 1:
                events, steps, times = batch[0]
            else:
                events = [e for run, _, _ in batch for e in run]
                steps = np.concatenate([part[1] for part in batch])
                times = np.concatenate([part[2] for part in batch])
            batch.clear()
            self._flush_metrics(events, steps, times)
        for name, points in pending.items():
            table = np.array(points, dtype=np.float64)
            self._series(name).extend(table[:, 0], table[:, 1], table[:, 2])
        pending.clear()

    @staticmethod
    def _push(pending: Pending, name: str, step: float, t: float, value: float) -> None:
        bucket = pending.get(name)
        if bucket is None:
            bucket = pending[name] = []
        bucket.append((step, t, value))

    def _flush_metrics(self, events: list[MetricsRow], s: Floats, t: Floats) -> None:
        """Metrics events column by column: the hot path of ingestion.

        Engines log the same fields every time, so all scalar fields become
        one table in one pass and each other field one numpy conversion over
        the batch, instead of a Python step per value; a field that is
        missing, null or oddly typed somewhere takes the per-event path.
        """
        first = events[0]
        keys = dict.fromkeys(first)
        same_keys = all(map(first.keys().__eq__, map(dict.keys, events)))
        if not same_keys:
            for event in events:
                if event.keys() != keys.keys():
                    keys.update(dict.fromkeys(event))
        scalars = [k for k in keys if k not in _HEADER and type(first.get(k)) in (float, int)]
        if same_keys and scalars:
            try:
                table = np.array(list(map(operator.itemgetter(*scalars), events)), dtype=np.float64)
            except (TypeError, ValueError):  # a string somewhere: per field below
                pass
            else:
                table = table.reshape(len(events), len(scalars))
                for i, key in enumerate(scalars):
                    if np.isnan(table[:, i]).any():
                        # numpy reads a null as NaN: tell a NaN value (shown) from a null (no point).
                        self._metrics_slow(key, [e[key] for e in events], s, t)
                    else:
                        self._series(self._name("metrics", key)).extend(s, t, table[:, i])
                keys = {k: None for k in keys if k not in scalars}
        for key in keys:
            if key in _HEADER:
                continue
            first_value = first.get(key)
            column = [e.get(key) for e in events]
            try:
                if type(first_value) is bool or first_value is None:
                    raise TypeError(key)
                table = np.array(column, dtype=np.float64)
                if np.isnan(table).any() and None in column:
                    raise TypeError(key)
            except (TypeError, ValueError):
                self._metrics_slow(key, column, s, t)
                continue
            if table.ndim == 1:
                self._series(self._name("metrics", key)).extend(s, t, table)
            elif table.ndim == 2:  # per-rank values: one series per index
                for i in range(table.shape[1]):
                    self._series(self._name("metrics", f"{key}/{i}")).extend(s, t, table[:, i])

    def _metrics_slow(self, key: str, column: list[Any], s: Floats, t: Floats) -> None:
        pending: Pending = {}
        for value, step, time_ in zip(column, s.tolist(), t.tolist()):
            kind = type(value)
            if kind is float or kind is int:
                self._push(pending, self._name("metrics", key), step, time_, value)
            elif kind is list:
                for i, item in enumerate(value):
                    if type(item) in (float, int):
                        self._push(pending, self._name("metrics", f"{key}/{i}"), step, time_, item)
        self._flush(pending, [])

    def _add_numbers(self, pending: Pending, prefix: str, values: dict[str, Any], step: int, t: float) -> None:
        for key, value in values.items():
            if type(value) in (float, int) and key not in _HEADER:
                self._push(pending, self._name(prefix, key), step, t, value)

    def _on_system(self, event: System, t: float, pending: Pending) -> None:
        self._add_numbers(pending, "system", event.to_values(), event.step, t)
        for rank in event.ranks:
            self._add_numbers(pending, f"system/rank{rank.rank}", rank.to_values(), event.step, t)
        for i, gpu in enumerate(event.gpus):
            self._add_numbers(
                pending, f"system/gpu{i if gpu.index is None else gpu.index}", gpu.to_values(), event.step, t
            )

    def _on_sample(self, event: Sample, t: float, pending: Pending) -> None:
        self._add_numbers(pending, "sample", event.metrics, event.step, t)
        if event.quality_score is not None:
            self._push(pending, "sample/quality_score", event.step, t, event.quality_score)
        reference = {
            name: (stats.mean, stats.std if stats.std is not None and math.isfinite(stats.std) else None)
            for name, stats in event.reference.items()
            if stats.mean is not None and math.isfinite(stats.mean)
        }
        if reference and reference != self.music_reference:
            self.music_reference = reference
        names = ", ".join(Path(s.path).name for s in event.samples) or Path(event.path).name
        metrics = ", ".join(f"{k}={_short(v)}" for k, v in event.metrics.items())
        self._feed(event, "sample", "info", f"samples at step {event.step}: {names}" if names else "sample", metrics)

    def _on_restart(self, event: Restart, t: float) -> None:
        self.restarts += 1
        resumed_step = event.step if event.resumed_from is None else event.resumed_from
        moved = self._went_back(resumed_step)
        text = f"restart #{event.attempt or self.restarts}: resumed from step {resumed_step}"
        if event.steps_lost is not None:
            text += f", {event.steps_lost} steps lost"
        detail = f"{moved} points of the undone stretch kept as superseded (drawn faded)" if moved else ""
        self.markers.append(Marker(resumed_step, t, "restart", "warning", text))
        self._feed(event, "restart", "warning", text, detail)

    def _went_back(self, step: int) -> int:
        """Training continues from ``step``: every series' points past it become a superseded
        segment (kept, drawn faded) and the progress figures restart there; returns how many moved."""
        moved = sum(s.supersede_after(step) for s in self.series.values())
        if moved:
            self.rollbacks += 1
        self.step = step
        self._metrics_step = step
        self._rate.clear()
        return moved

    def _on_start(self, event: RunStart, t: float) -> None:
        self.config = event.config if event.config is not None else self.config
        self.env = event.env or self.env
        self.total_steps = event.total_steps if event.total_steps is not None else self.total_steps
        self.end = None  # a resumed run starts again in the same directory
        self.fatal_error = None
        step = event.resumed_step
        if step is not None:
            # Points logged after that checkpoint are redone: the old ones become a superseded stretch.
            self._went_back(step)
            self.markers.append(Marker(step, t, "restart", "info", f"resumed from the checkpoint at step {step}"))
        env = self.env
        where = f"{env.get('world_size', '?')} x {env.get('device', '?')} ({env.get('backend', '?')})"
        self._feed(event, "start", "info", "run started", f"{where}, {env.get('precision', '?')}")

    def _on_status(self, event: Status) -> None:
        if event.state != self.status_state:
            self._rate.clear()  # a pause (or preparation) is not training time
            self._feed(event, "status", "info", event.state, event.message)
        self.status_state = event.state
        self.status_message = event.message
        progress, total = event.progress, event.total
        if progress is not None and total and math.isfinite(progress) and math.isfinite(total):
            self.progress = (progress, total)
        else:
            self.progress = None

    def _on_data(self, event: Data) -> None:
        self.data = event
        skipped = event.skipped
        self._feed(
            event,
            "data",
            "warning" if skipped else "info",
            "data ready",
            f"{event.pieces_train} train / {event.pieces_val} val pieces, "
            f"{event.tokens_train} train tokens, vocab {event.vocab_size}"
            + (f", {len(skipped)} files skipped" if skipped else ""),
        )

    def _on_recovery(self, event: Anomaly, taken: ActionTaken, result: IngestResult) -> None:
        """The engine's report of what it did about an earlier anomaly (same id): a feed line, not a new alert."""
        if taken.to_step is not None:  # also when it is the newest log step: evaluations after it were undone
            self._went_back(taken.to_step)
        title = f"{event.kind}: {taken.action} {taken.outcome}"
        self._feed(event, "anomaly", "info", title, _short(taken.to_values()))
        result.anomalies.append(event)

    def _on_anomaly(self, event: Anomaly, t: float, result: IngestResult) -> None:
        message = event.message or event.kind
        parts = [message]
        if event.evidence:
            parts.append(f"evidence: {_short(event.evidence)}")
        if event.suggestion:
            parts.append(f"suggestion: {event.suggestion}")
        if event.action:
            parts.append(f"action: {event.action}")
        heading = f"{event.kind} ({event.severity}) at step {event.step}"
        self.markers.append(Marker(event.step, t, "anomaly", event.severity, heading + "\n" + "\n".join(parts)))
        self._feed(event, "anomaly", event.severity, f"{event.kind}: {message}", "\n".join(parts[1:]))
        self.unread_anomalies += 1
        result.anomalies.append(event)

    def _on_error(self, event: Error, t: float) -> None:
        if event.fatal:
            self.fatal_error = event
        severity = "critical" if event.fatal else "warning"
        where = f" in {event.where}" if event.where else ""
        self.markers.append(Marker(event.step, t, "error", severity, f"error{where}: {event.message}"))
        self._feed(event, "error", severity, event.message, event.traceback or event.where)

    def _on_ack(self, event: ControlAck, t: float, result: IngestResult) -> None:
        command_id = event.id or "?"
        command = self.commands.get(command_id)
        if command is None:  # sent by someone else (the CLI, another GUI)
            command = self.commands[command_id] = Command(command_id, event.cmd or "?", {}, event.time)
        command.outcome, command.reason = event.outcome, event.reason
        shown = f"{command.cmd}({_fmt_args(command.args)})" if command.args else command.cmd
        text = f"{shown}: {event.outcome}" + (f" ({event.reason})" if event.reason else "")
        if command.cmd == "set_lr" and event.outcome == "done":
            self._note_peak(event.new_peak_lr if event.new_peak_lr is not None else command.args.get("lr"))
            if event.old_peak_lr is not None and event.new_peak_lr is not None:
                text += f": peak LR {event.old_peak_lr:.3g} -> {event.new_peak_lr:.3g}"
        result.acks.append(command)
        severity = "info" if event.outcome == "done" else "warning"
        self.markers.append(Marker(event.step, t, "control", severity, f"{text} at step {event.step}"))
        self._feed(event, "ack", severity, text, f"id {command_id}")

    def _local_path(self, path: str, folder: str) -> str:
        """Where a path the engine wrote is on this machine: as written when it exists, else under this run's
        directory from ``folder`` on (a run started with a relative ``-r``, or on a server whose run
        directory is mounted here)."""
        if not path or self.path is None:
            return path
        p = Path(path)
        if p.is_absolute() and p.exists():
            return path
        parts = p.parts
        if folder in parts:
            i = len(parts) - 1 - parts[::-1].index(folder)
            return str(self.path / Path(*parts[i:]))
        return str(self.path / p) if not p.is_absolute() else path

    def _note_peak(self, value: Any) -> None:
        if type(value) in (float, int) and math.isfinite(value) and value > 0:
            self.peak_lr = float(value)

    def _feed(self, event: Record, kind: str, severity: str, title: str, detail: str = "", path: str = "") -> None:
        self.feed.append(FeedItem(float(event["time"]), int(event["step"]), kind, severity, title, detail, path))


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."
