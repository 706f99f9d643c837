"""Progress of a long engine subcommand, as lines a parent process reads (the GUI's job bar),
and the console lines ``main.py run`` prints for a run's anomaly, recovery and profile events.

``checkpoints average --progress json`` prints one JSON object per line on
stdout before its report::

    {"type": "progress", "stage": "validate", "done": 3, "total": 8,
     "message": "validation loss of step-0000015 (1 of 2)"}

``done`` counts finished units of work out of ``total``; a line comes when a
unit starts (its message says what is being done) and when it ends (with
what came out, e.g. a validation loss). The last line has stage ``done`` and
``done == total``. Qt-free and torch-free: the GUI imports it to parse.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the event models load with the first event line, not with a progress bar
    from engine.contract.events import ActionTaken, Profile, Record

TYPE = "progress"


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int
    message: str

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def line(self) -> str:
        return json.dumps({"type": TYPE, **asdict(self)})

    def text(self) -> str:
        """For a person at a terminal."""
        return f"[{self.done}/{self.total}] {self.message}"


def parse(line: str) -> Progress | None:
    """The progress in ``line``, or None for any other output (a report line, a warning, a traceback)."""
    line = line.strip()
    if not line.startswith("{") or f'"{TYPE}"' not in line:
        return None
    try:
        obj = json.loads(line)
        if obj.get("type") != TYPE:
            return None
        return Progress(str(obj["stage"]), int(obj["done"]), int(obj["total"]), str(obj["message"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class Tracker:
    """Counts units of work out of ``total`` and hands a :class:`Progress` to ``sink`` at each start and end."""

    def __init__(self, total: int, sink: Callable[[Progress], None] | None = None):
        self.total = total
        self.done = 0
        self.sink = sink

    def begin(self, stage: str, message: str) -> None:
        self._report(stage, message)

    def end(self, stage: str, message: str) -> None:
        self.done = min(self.done + 1, self.total)
        self._report(stage, message)

    def _report(self, stage: str, message: str) -> None:
        if self.sink is not None:
            self.sink(Progress(stage, self.done, self.total, message))


# ---------------------------------------------------------------- console lines of a run's events


def recovery_text(taken: ActionTaken) -> str:
    """What a recovery action did, from an anomaly follow-up's ``action_taken``: "rolled back to step 10, LR x0.5"."""
    action = taken.action
    parts = []
    if action == "rollback" and taken.to_step is not None:
        parts.append(f"rolled back to step {taken.to_step}")
    elif action == "skip_batch":
        parts.append("skipped the next batch")
    elif action == "pause":
        parts.append("paused the run")
    elif action == "stop":
        parts.append("stopping the run")
    elif action != "rollback":
        parts.append(action.replace("_", " "))
    factor = taken.get("lr_factor")
    if type(factor) in (int, float):
        parts.append(f"LR x{factor:g}")
    if taken.outcome and taken.outcome != "done":
        parts.append(taken.outcome)
    return ", ".join(parts) or action


def profile_text(event: Profile, top: int = 3) -> str:
    """A ``profile`` event in one line: steps recorded, the trace's path, the operators that took longest."""
    ops = []
    for op in event.top[:top]:
        ms = op.get("self_cuda_ms", op.get("self_cpu_ms"))
        ops.append(f"{op.get('name')} {ms:.1f} ms" if type(ms) in (int, float) else str(op.get("name")))
    text = f"{event.steps if event.steps is not None else '?'} step(s) recorded: {event.path}"
    return text + (f"; top: {', '.join(ops)}" if ops else "")


def event_line(event: Record) -> str | None:
    """The console line of an anomaly, recovery or profile event (``podium run``), None for other events.

    An anomaly reads ``[anomaly warning] nonfinite_loss at step 20: loss is NaN -> rollback``; the engine's
    follow-up when the recovery was applied (it carries ``action_taken``) reads
    ``[recovery] step 21: rollback after nonfinite_loss: rolled back to step 10, LR x0.5``, so a step
    counter that goes backwards is explained on the line before it does.
    """
    from engine.contract.events import ActionTaken, Anomaly, Profile

    match event:
        case Anomaly(action_taken=ActionTaken() as taken):
            return f"[recovery] step {event.step}: {taken.action} after {event.kind}: {recovery_text(taken)}"
        case Anomaly():
            line = f"[anomaly {event.severity}] {event.kind} at step {event.step}: {event.message}"
            action = event.action
            return line.rstrip(": ") + (f" -> {action}" if action and action != "alert" else "")
        case Profile():
            return f"[profile] step {event.step}: {profile_text(event)}"
    return None
