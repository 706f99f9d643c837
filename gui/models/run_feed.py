"""What a run's feed is made of: markers, feed lines, the commands sent and their answers. Qt-free."""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.contract.events import Anomaly, ControlAck, Data, Rejected, RunEnd, Sample


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

    def shown(self) -> str:
        return f"{self.cmd}({fmt_args(self.args)})" if self.args else self.cmd


@dataclass
class IngestResult:
    """What one ``ingest`` call changed, for the session's signals."""

    events: int = 0
    new_series: bool = False
    state_changed: bool = False
    acks: list[Command] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    ended: RunEnd | None = None

    def merge(self, later: IngestResult) -> IngestResult:
        self.events += later.events
        self.new_series |= later.new_series
        self.state_changed |= later.state_changed
        self.acks += later.acks
        self.anomalies += later.anomalies
        self.ended = later.ended or self.ended
        return self


_SHOWN = 100  # feed rows for bad lines; past these they are only counted


class BadLines:
    """Lines of the event file that are not shown: all counted, the first ones in the feed with the line
    and the reason."""

    def __init__(self, feed: list[FeedItem]):
        self.feed = feed
        self.invalid_lines = 0  # not valid events
        self.out_of_order = 0  # metrics lines going back with nothing announcing it
        self.shown = 0

    def invalid(self, rejected: list[Rejected], total: int, step: int) -> None:
        for item in rejected[: max(0, _SHOWN - self.shown)]:
            where = f" (line {item.line})" if item.line else ""
            self.feed.append(
                FeedItem(_time.time(), step, "rejected", "warning", f"skipped a bad event{where}", item.reason)
            )
            self.shown += 1
        self.invalid_lines = total

    def going_back(self, count: int, step: int, newest: float, now_step: int) -> None:
        self.out_of_order += count
        if self.shown < _SHOWN:
            title = f"skipped {count} metrics line(s) going back" if count > 1 else "skipped a metrics line going back"
            detail = (
                f"step {step} after step {newest:.0f}, with no rollback, restart or resume announcing it: "
                "not this run's training, so nothing logged after it is faded"
            )
            self.feed.append(FeedItem(_time.time(), now_step, "rejected", "warning", title, detail))
            self.shown += 1


class CommandBook:
    """The commands of a run: sent from here (matched to their acks) or seen answered (sent by others)."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def sent(self, command_id: str, cmd: str, args: dict[str, Any]) -> Command:
        command = self.commands[command_id] = Command(command_id, cmd, dict(args), _time.time())
        return command

    def answered(self, event: ControlAck) -> tuple[Command, str]:
        """The command an ack answers, with its outcome recorded, and the line that says so."""
        command_id = event.id or "?"
        command = self.commands.get(command_id)
        if command is None:  # sent by someone else (the CLI, another GUI)
            command = self.commands[command_id] = Command(command_id, event.cmd or "?", {}, event.time)
        command.outcome, command.reason = event.outcome, event.reason
        text = f"{command.shown()}: {event.outcome}" + (f" ({event.reason})" if event.reason else "")
        if command.cmd == "set_lr" and event.outcome == "done":
            if event.old_peak_lr is not None and event.new_peak_lr is not None:
                text += f": peak LR {event.old_peak_lr:.3g} -> {event.new_peak_lr:.3g}"
        return command, text

    def pending(self) -> list[Command]:
        return [c for c in self.commands.values() if c.outcome is None]


def fmt_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in args.items())


def sample_line(event: Sample) -> tuple[str, str]:
    """A sample event's feed line: its files, and its metrics."""
    names = ", ".join(Path(s.path).name for s in event.samples) or Path(event.path).name
    metrics = ", ".join(f"{k}={short(v)}" for k, v in event.metrics.items())
    return (f"samples at step {event.step}: {names}" if names else "sample"), metrics


def data_line(event: Data) -> str:
    skipped = f", {len(event.skipped)} files skipped" if event.skipped else ""
    return (
        f"{event.pieces_train} train / {event.pieces_val} val pieces, "
        f"{event.tokens_train} train tokens, vocab {event.vocab_size}{skipped}"
    )


def anomaly_parts(event: Anomaly) -> list[str]:
    """An anomaly's message, then its evidence, suggestion and action where it has them."""
    parts = [event.message or event.kind]
    if event.evidence:
        parts.append(f"evidence: {short(event.evidence)}")
    if event.suggestion:
        parts.append(f"suggestion: {event.suggestion}")
    if event.action:
        parts.append(f"action: {event.action}")
    return parts


def local_path(run: Path | None, path: str, folder: str) -> str:
    """Where a path the engine wrote is on this machine: as written when it exists, else under the run's
    directory from ``folder`` on (a run started with a relative ``-r``, or on a server whose run
    directory is mounted here)."""
    if not path or run is None:
        return path
    p = Path(path)
    if p.is_absolute() and p.exists():
        return path
    parts = p.parts
    if folder in parts:
        i = len(parts) - 1 - parts[::-1].index(folder)
        return str(run / Path(*parts[i:]))
    return str(run / p) if not p.is_absolute() else path


def short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."
