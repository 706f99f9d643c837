"""Progress of a long engine subcommand, as lines a parent process reads (the GUI's job bar).

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
from dataclasses import asdict, dataclass
from typing import Callable

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
