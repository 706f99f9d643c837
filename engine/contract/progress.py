"""Progress of a long engine subcommand, as lines a parent process reads (the GUI's job bar),
and the console lines ``main.py run`` prints for a run's anomaly, recovery and profile events.

``checkpoints average --progress json`` prints one JSON object per line on
stdout before its report::

    {"type": "progress", "stage": "validate", "done": 3, "total": 8, "message": "validation loss of step-0000015 (1 of 2)"}

``done`` counts finished units of work out of ``total``; a line comes when a
unit starts (its message says what is being done) and when it ends (with
what came out, e.g. a validation loss). The last line has stage ``done`` and
``done == total``. Qt-free and torch-free: the GUI imports it to parse.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

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


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def recovery_text(taken: dict[str, Any]) -> str:
    """What a recovery action did, from an anomaly follow-up's ``action_taken``: "rolled back to step 10, LR x0.5"."""
    action = str(taken.get("action", "action"))
    parts = []
    if action == "rollback" and "to_step" in taken:
        parts.append(f"rolled back to step {taken['to_step']}")
    elif action == "skip_batch":
        parts.append("skipped the next batch")
    elif action == "pause":
        parts.append("paused the run")
    elif action == "stop":
        parts.append("stopping the run")
    elif action != "rollback":
        parts.append(action.replace("_", " "))
    if "lr_factor" in taken:
        parts.append(f"LR x{_number(taken['lr_factor'])}")
    outcome = taken.get("outcome")
    if outcome and outcome != "done":
        parts.append(str(outcome))
    return ", ".join(parts) or action


def profile_text(event: dict[str, Any], top: int = 3) -> str:
    """A ``profile`` event in one line: steps recorded, the trace's path, the operators that took longest."""
    ops = []
    for op in list(event.get("top") or [])[:top]:
        if not isinstance(op, dict):
            continue
        ms = op.get("self_cuda_ms", op.get("self_cpu_ms"))
        ops.append(f"{op.get('name')} {ms:.1f} ms" if isinstance(ms, (int, float)) else str(op.get("name")))
    text = f"{event.get('steps', '?')} step(s) recorded: {event.get('path', '?')}"
    return text + (f"; top: {', '.join(ops)}" if ops else "")


def event_line(event: dict[str, Any]) -> str | None:
    """The console line of an anomaly, recovery or profile event (``main.py run``), None for other events.

    An anomaly reads ``[anomaly warning] nonfinite_loss at step 20: loss is NaN -> rollback``; the engine's
    follow-up when the recovery was applied (it carries ``action_taken``) reads
    ``[recovery] step 21: rollback after nonfinite_loss: rolled back to step 10, LR x0.5``, so a step
    counter that goes backwards is explained on the line before it does.
    """
    kind, step = event.get("type"), event.get("step", "?")
    if kind == "anomaly":
        taken = event.get("action_taken")
        if isinstance(taken, dict):
            return (
                f"[recovery] step {step}: {taken.get('action', event.get('action'))} after {event.get('kind')}: "
                f"{recovery_text(taken)}"
            )
        action = event.get("action")
        line = f"[anomaly {event.get('severity', 'warning')}] {event.get('kind')} at step {step}: {event.get('message', '')}"
        return line.rstrip(": ") + (f" -> {action}" if action and action != "alert" else "")
    if kind == "profile":
        return f"[profile] step {step}: {profile_text(event)}"
    return None
