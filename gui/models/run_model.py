"""Everything the GUI knows about one run, built from its events. Qt-free.

:class:`RunModel` takes records in file order (from a live tail or a finished file): ready metrics
columns go to its :class:`~gui.models.run_series.SeriesStore`, every other record to the run's state,
markers and feed of notable happenings. It only grows (lists are appended to, counters go up), so views
keep an index of what they have shown and pick up the rest; the session object turns ``apply``'s return
value into Qt signals.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.contract.events import (
    ActionTaken,
    Anomaly,
    Checkpoint,
    CheckpointRemoved,
    ControlAck,
    Data,
    Error,
    Eval,
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
)
from engine.contract.progress import profile_text
from engine.contract.rundir import STALL_SECONDS
from gui.models.columns import Item, MetricsColumns, item_count, ready_items
from gui.models.run_feed import (
    BadLines,
    Command,
    CommandBook,
    FeedItem,
    IngestResult,
    Marker,
    anomaly_parts,
    data_line,
    local_path,
    sample_line,
    short,
)
from gui.models.run_series import Pending, SeriesStore
from gui.models.series import Series

__all__ = ["LIVE_STATES", "TERMINAL_STATES", "Command", "FeedItem", "IngestResult", "Marker", "RunModel"]

TERMINAL_STATES = ("finished", "stopped", "early_stopped", "failed", "pruned")
# States in which the engine reads its control inbox.
LIVE_STATES = ("starting", "preparing", "running", "paused", "stopping", "stalled")


class RunModel:
    def __init__(self, path: str | Path | None = None, name: str | None = None):
        self.path = Path(path) if path is not None else None
        self.name = name or (self.path.name if self.path else "run")
        self.store = SeriesStore(self.note_out_of_order)
        self.series: dict[str, Series] = self.store.series
        self.series_order: list[str] = self.store.series_order
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
        self.book = CommandBook()
        self.commands: dict[str, Command] = self.book.commands
        self.unread_anomalies = 0
        self.bad = BadLines(self.feed)
        self.restarts = 0
        # Set by the session: the launcher's liveness (None = cannot tell),
        # and why the process ended when it ended without a run_end event.
        self.alive: bool | None = None
        self.exit_note = ""
        # Bytes of the event file not read yet (set by the session): while a
        # big backlog is read, plots redraw rarely, so reading goes first.
        self.backlog = 0
        # Whether the file has been read to its end once (set by the session): a backlog before that is the
        # run being opened; one after it, a live run writing faster than it is read for a moment.
        self.read_through = False
        self.state_version = 0

    # The store's progress figures, read by the views as the model's own.
    t0 = property(lambda self: self.store.t0)
    last_time = property(lambda self: self.store.last_time)
    step = property(lambda self: self.store.step)
    latest = property(lambda self: self.store.latest)
    rollbacks = property(lambda self: self.store.rollbacks)

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
        return None if self.end is not None else self.store.eta_seconds(self.total_steps)

    def mark_anomalies_read(self) -> None:
        self.unread_anomalies = 0
        self.state_version += 1

    def note_command(self, command_id: str, cmd: str, args: dict[str, Any]) -> Command:
        """Record a command this GUI sent, so its ack can be matched and shown."""
        command = self.book.sent(command_id, cmd, args)
        self.feed.append(
            FeedItem(command.sent, self.step, "command", "info", f"sent {command.shown()}", f"id {command_id}")
        )
        self.state_version += 1
        return command

    def note(self, severity: str, title: str, detail: str = "") -> None:
        """A line in the feed from the GUI itself (a signal sent, a command unanswered)."""
        self.feed.append(FeedItem(_time.time(), self.step, "gui", severity, title, detail))
        self.state_version += 1

    def note_rejected(self, rejected: list[Rejected], total: int) -> None:
        """Lines of the event file that are not valid events (everything else in the run is still shown)."""
        self.bad.invalid(rejected, total, self.step)
        self.state_version += 1

    @property
    def rejected(self) -> int:
        """Lines of the run's file that are not shown: not valid events, or metrics out of order."""
        return self.bad.invalid_lines + self.bad.out_of_order

    def note_out_of_order(self, count: int, step: int, newest: float) -> None:
        """Metrics rows that go back with no rollback, restart or resume announcing it."""
        self.bad.going_back(count, step, newest, self.step)
        self.state_version += 1

    def pending_commands(self) -> list[Command]:
        return self.book.pending()

    # ---------------------------------------------------------------- ingest

    def ingest(self, events: Iterable[Record]) -> IngestResult:
        """Apply records in file order (the session's reader thread hands over ready items instead)."""
        return self.apply(ready_items(events))

    def apply(self, items: list[Item]) -> IngestResult:
        """Apply ready items in file order: metrics columns appended to their series at once, other
        records' points gathered per series and appended at the end (or before a rollback moves them)."""
        result = IngestResult(events=item_count(items))
        n_series = len(self.series_order)
        state_before = self._state_key()
        pending: Pending = {}
        for item in items:
            if isinstance(item, MetricsColumns):
                last = self.store.add_metrics(item)
                if last is not None:
                    self._note_peak(last.get("peak_lr"))
            else:
                self._ingest_one(item, pending, result)
        self.events += result.events
        self.store.flush(pending)
        result.new_series = len(self.series_order) != n_series
        result.state_changed = self._state_key() != state_before
        if result.state_changed or result.acks or result.anomalies or result.events:
            self.state_version += 1
        return result

    def _state_key(self) -> tuple[Any, ...]:
        return (
            self.status_state,
            self.end is not None,
            self.fatal_error is not None,
            self.status_message,
            self.progress,
        )

    def _ingest_one(self, event: TypedEvent, pending: Pending, result: IngestResult) -> None:
        if not isinstance(event, System):
            self.notable.append(event)
        t = self.store.saw(event.step, event.time)
        match event:
            case Eval():
                self.store.push_numbers(pending, "eval", event.to_values(), event.step, t)
                val = event.val_loss
                if val is not None and math.isfinite(val) and (self.best_val_loss is None or val < self.best_val_loss):
                    self.best_val_loss = val
            case System():
                self.store.push_system(pending, event, t)
            case Sample():
                self._on_sample(event, t, pending)
            case Restart():
                self.store.flush(pending)
                self._on_restart(event, t)
            case RunStart():
                self.store.flush(pending)  # a resume supersedes what came after its step
                self._on_start(event, t)
            case Anomaly() if event.action_taken is not None:
                self.store.flush(pending)  # a rollback supersedes what came after its step
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
                path = local_path(self.path, event.path, "profiles")
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

    def _on_sample(self, event: Sample, t: float, pending: Pending) -> None:
        self.store.push_numbers(pending, "sample", event.metrics, event.step, t)
        if event.quality_score is not None:
            self.store.push(pending, "sample/quality_score", event.step, t, event.quality_score)
        reference = {
            name: (stats.mean, stats.std if stats.std is not None and math.isfinite(stats.std) else None)
            for name, stats in event.reference.items()
            if stats.mean is not None and math.isfinite(stats.mean)
        }
        if reference and reference != self.music_reference:
            self.music_reference = reference
        self._feed(event, "sample", "info", *sample_line(event))

    def _on_restart(self, event: Restart, t: float) -> None:
        self.restarts += 1
        resumed_step = event.step if event.resumed_from is None else event.resumed_from
        moved = self.store.went_back(resumed_step)
        text = f"restart #{event.attempt or self.restarts}: resumed from step {resumed_step}"
        if event.steps_lost is not None:
            text += f", {event.steps_lost} steps lost"
        detail = f"{moved} points of the undone stretch kept as superseded (drawn faded)" if moved else ""
        self.markers.append(Marker(resumed_step, t, "restart", "warning", text))
        self._feed(event, "restart", "warning", text, detail)

    def _on_start(self, event: RunStart, t: float) -> None:
        self.config = event.config if event.config is not None else self.config
        self.env = event.env or self.env
        self.total_steps = event.total_steps if event.total_steps is not None else self.total_steps
        self.end = None  # a resumed run starts again in the same directory
        self.fatal_error = None
        step = event.resumed_step
        if step is not None:
            # Points logged after that checkpoint are redone: the old ones become a superseded stretch.
            self.store.went_back(step)
            self.markers.append(Marker(step, t, "restart", "info", f"resumed from the checkpoint at step {step}"))
        env = self.env
        where = f"{env.get('world_size', '?')} x {env.get('device', '?')} ({env.get('backend', '?')})"
        self._feed(event, "start", "info", "run started", f"{where}, {env.get('precision', '?')}")

    def _on_status(self, event: Status) -> None:
        if event.state != self.status_state:
            self.store.rate.clear()  # a pause (or preparation) is not training time
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
        self._feed(event, "data", "warning" if event.skipped else "info", "data ready", data_line(event))

    def _on_recovery(self, event: Anomaly, taken: ActionTaken, result: IngestResult) -> None:
        """The engine's report of what it did about an earlier anomaly (same id): a feed line, not a new alert."""
        if taken.to_step is not None:  # also when it is the newest log step: evaluations after it were undone
            self.store.went_back(taken.to_step)
        title = f"{event.kind}: {taken.action} {taken.outcome}"
        self._feed(event, "anomaly", "info", title, short(taken.to_values()))
        result.anomalies.append(event)

    def _on_anomaly(self, event: Anomaly, t: float, result: IngestResult) -> None:
        parts = anomaly_parts(event)
        heading = f"{event.kind} ({event.severity}) at step {event.step}"
        self.markers.append(Marker(event.step, t, "anomaly", event.severity, heading + "\n" + "\n".join(parts)))
        self._feed(event, "anomaly", event.severity, f"{event.kind}: {parts[0]}", "\n".join(parts[1:]))
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
        command, text = self.book.answered(event)
        if command.cmd == "set_lr" and event.outcome == "done":
            self._note_peak(event.new_peak_lr if event.new_peak_lr is not None else command.args.get("lr"))
        result.acks.append(command)
        severity = "info" if event.outcome == "done" else "warning"
        self.markers.append(Marker(event.step, t, "control", severity, f"{text} at step {event.step}"))
        self._feed(event, "ack", severity, text, f"id {command.id}")

    def _note_peak(self, value: Any) -> None:
        if type(value) in (float, int) and math.isfinite(value) and value > 0:
            self.peak_lr = float(value)

    def _feed(self, event: Record, kind: str, severity: str, title: str, detail: str = "", path: str = "") -> None:
        self.feed.append(FeedItem(float(event["time"]), int(event["step"]), kind, severity, title, detail, path))
