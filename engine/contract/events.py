"""The run directory's event stream: one typed model per event, one writer, one tolerant reader.

The models live in :mod:`engine.contract.event_models` and the line reading in
:mod:`engine.contract.line_tail`; this module is the stream's public face.

Every line of ``events.jsonl`` is one JSON object with ``v`` (schema version),
``type``, ``time`` (Unix seconds) and ``step``, plus the fields of its type's
model. The engine emits through these models (a field of the wrong type
is a bug caught where it is written) and every reader decodes through them, so
what reaches the app is a typed record or a counted rejection with a reason,
never a crash. Non-finite floats are written as ``NaN``/``Infinity`` (Python's
JSON extension) on purpose: a NaN loss is what a user needs to see.

Types are strict, as JSON's are: a string is never read as a number, a float
never as an integer, ``true`` never as 1. Fields a model does not name are
kept (``model_extra``) so an older app shows what a newer engine adds.

``metrics`` events are nearly every line of a run; they are checked column by
column (:func:`check_metrics_rows`, the same rules as :class:`Metrics`) and
handed over as plain dicts in :class:`MetricsRows`, so opening a run of
millions of lines does not build a million objects.

Torch-free and Qt-free: the GUI, the CLI and the engine all import this.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, TypeGuard

from pydantic import ValidationError

from engine.contract.event_models import (
    EVENT_MODELS,
    EVENT_TYPES,
    MAX_STEP,
    RUN_END_REASONS,
    SCHEMA_VERSION,
    ActionTaken,
    Anomaly,
    Checkpoint,
    CheckpointRemoved,
    ControlAck,
    Data,
    Error,
    Eval,
    Event,
    GpuSystem,
    MetricReference,
    Metrics,
    Profile,
    RankSystem,
    Restart,
    ResumedFrom,
    RunEnd,
    RunEndReason,
    RunStart,
    Sample,
    SampleItem,
    Status,
    System,
    TypedEvent,
    first_error,
    make_event,
    validate_event,
)
from engine.contract.line_tail import FAST_DECODE, FAST_ERROR, MAX_LINE_BYTES, LineTail, decode_json

# The stream's public face: its records (engine.contract.event_models), the writer and the reader.
__all__ = [
    "ActionTaken",
    "Anomaly",
    "Checkpoint",
    "CheckpointRemoved",
    "ControlAck",
    "Data",
    "EVENT_MODELS",
    "EVENT_TYPES",
    "Error",
    "Eval",
    "Event",
    "EventReader",
    "EventWriter",
    "GpuSystem",
    "LineTail",
    "MAX_LINE_BYTES",
    "MetricReference",
    "Metrics",
    "MetricsRow",
    "Profile",
    "RUN_END_REASONS",
    "RankSystem",
    "Record",
    "Rejected",
    "Restart",
    "ResumedFrom",
    "RunEnd",
    "RunEndReason",
    "RunStart",
    "SCHEMA_VERSION",
    "Sample",
    "SampleItem",
    "Status",
    "System",
    "TypedEvent",
    "as_records",
    "check_metrics_rows",
    "decode_event",
    "is_metrics",
    "make_event",
    "read_events",
    "validate_event",
]

_BATCH_LINES = 2000  # a few ms of parsing per C call


class EventWriter:
    """Appends events, one ``write`` per line so a reader never sees a line
    interleaved with another, and flushes each so readers see it at once."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()  # the stall watchdog emits from its own thread

    def emit(self, type_: str, step: int = 0, **payload: Any) -> dict[str, Any]:
        event = make_event(type_, step, **payload)
        line = json.dumps(event) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
        return event

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Rejected:
    """A line that is not a valid event, and why (the first problem, naming the field)."""

    line: int  # 1-based line number in the file, 0 when not known
    reason: str


MetricsRow: TypeAlias = dict[str, Any]
# What a reader hands over: a typed event, or a ``metrics`` event as the plain dict it was written as
# (checked against :class:`Metrics` column by column; kept plain so a run of millions of lines opens fast).
Record: TypeAlias = "TypedEvent | MetricsRow"


def is_metrics(record: Record) -> TypeGuard[MetricsRow]:
    return type(record) is dict


def decode_event(line: bytes) -> TypedEvent | None:
    """One line as a typed event, or None when it is not one."""
    if len(line) > MAX_LINE_BYTES:
        return None
    try:
        return validate_event(decode_json(line))
    except ValueError:
        return None


_METRIC_TYPES: dict[str, tuple[type, ...]] = {}
for _name, _info in Metrics.model_fields.items():
    if _name in ("v", "type", "time", "step", "rank_work_times"):
        continue
    _METRIC_TYPES[_name] = (int, type(None)) if _info.annotation == (int | None) else (float, int, type(None))


def check_metrics_rows(rows: list[dict[str, Any]]) -> list[str | None]:
    """For each metrics dict, None when :class:`Metrics` accepts it, else the reason it would not.

    The same rules as the model, checked a column at a time: that is what keeps
    opening a long run fast. The model decides the reason of every rejected row.
    """
    problems: list[str | None] = [None] * len(rows)
    keys = rows[0].keys()
    if all(map(keys.__eq__, map(dict.keys, rows))) and _columns_ok(rows, keys):
        return problems
    for i, row in enumerate(rows):
        try:
            Metrics.model_validate(row)
        except ValidationError as exc:
            problems[i] = f"metrics: {first_error(exc)}"
    return problems


def _all_finite(values: Iterable[Any]) -> bool:
    try:
        return all(map(math.isfinite, values))
    except OverflowError:  # an integer too large for a float
        return False


def _columns_ok(rows: list[dict[str, Any]], keys: Iterable[str]) -> bool:
    for key in keys:
        column = list(map(operator.itemgetter(key), rows))  # C loops: no Python frame per row
        kinds = set(map(type, column))
        if key == "time":
            if not kinds <= {float, int} or not _all_finite(column):
                return False
        elif key == "step":
            if kinds != {int} or not 0 <= min(column) <= max(column) <= MAX_STEP:
                return False
        elif key == "v":
            if kinds != {int}:
                return False
        elif key == "rank_work_times":
            if not kinds <= {list, type(None)}:
                return False
            items = {type(x) for value in column if value for x in value}
            if not items <= {float, int, type(None)}:
                return False
        elif key in _METRIC_TYPES:
            if not kinds <= set(_METRIC_TYPES[key]):
                return False
            if float in _METRIC_TYPES[key] and int in kinds and not _all_finite(v for v in column if type(v) is int):
                return False  # an integer too large for a float, which the model refuses
    return True


@dataclass
class EventReader(LineTail):
    """A :class:`LineTail` of ``events.jsonl`` that hands over typed records in file order.

    A line that is not a valid event is skipped: counted in ``garbage``, its
    reason (naming the line and field) kept in ``rejected`` (the newest few).
    """

    garbage: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    keep_rejected: int = 50

    def read_new(self, max_bytes: int | None = None) -> list[Record]:
        first_line = self.lines_read + 1
        return self.decode_lines(self.read_lines(max_bytes), first_line)

    def decode_lines(self, lines: list[bytes], first_line: int = 0) -> list[Record]:
        """Complete lines (without their newlines) as records; rejected lines are counted, with their
        line numbers counted from ``first_line`` (0: not known)."""
        return self.decode_values(self._values(lines, first_line))

    def decode_values(self, values: list[tuple[int, Any]]) -> list[Record]:
        """(line number, decoded JSON value) pairs as records; rejected values are counted."""
        records: list[Record] = []
        metrics: list[tuple[int, dict[str, Any]]] = []
        for number, value in values:
            if type(value) is dict and value.get("type") == "metrics":
                metrics.append((number, value))
                continue
            if metrics:
                self._add_metrics(records, metrics)
                metrics = []
            try:
                records.append(validate_event(value))
            except ValueError as exc:
                self._reject(number, str(exc))
        if metrics:
            self._add_metrics(records, metrics)
        return records

    def _values(self, lines: list[bytes], first_line: int) -> list[tuple[int, Any]]:
        """(line number, JSON value) of each non-blank line; lines that are not JSON are rejected here."""
        if lines and max(map(len, lines)) <= MAX_LINE_BYTES:
            try:
                # The common case, well-formed lines, at C speed; in batches, since a C call holds the
                # GIL and a GUI reading in a thread must not stall.
                parsed: list[Any] = []
                for i in range(0, len(lines), _BATCH_LINES):
                    parsed.extend(map(FAST_DECODE, lines[i : i + _BATCH_LINES]))
                return list(zip(_numbers(first_line), parsed))
            except FAST_ERROR:
                pass
        values = []
        for number, line in zip(_numbers(first_line), lines):
            if not line or line.isspace():
                continue
            if len(line) > MAX_LINE_BYTES:
                self._reject(number, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                values.append((number, decode_json(line)))
            except ValueError as exc:
                self._reject(number, f"not JSON ({str(exc)[:80]})")
        return values

    def _add_metrics(self, records: list[Record], metrics: list[tuple[int, dict[str, Any]]]) -> None:
        rows = [row for _, row in metrics]
        problems = check_metrics_rows(rows)
        for (number, row), problem in zip(metrics, problems, strict=True):
            if problem is None:
                records.append(row)
            else:
                self._reject(number, problem)

    def _reject(self, line: int, reason: str) -> None:
        self.garbage += 1
        self.rejected.append(Rejected(line, reason))
        del self.rejected[: -self.keep_rejected]


def _numbers(first_line: int) -> Iterator[int]:
    return itertools.count(first_line) if first_line else itertools.repeat(0)


def as_records(values: Iterable[Any]) -> list[Record]:
    """Decoded JSON objects (events built in code, or read by another tool) as records; ValueError naming
    the first that is not a valid event."""
    reader = EventReader(Path(os.devnull))
    records = reader.decode_values(list(enumerate(values, 1)))
    if reader.rejected:
        raise ValueError(f"event {reader.rejected[0].line}: {reader.rejected[0].reason}")
    return records


def read_events(path: str | os.PathLike[str]) -> tuple[list[Record], int]:
    """All complete events in a file as records, and the number of lines skipped."""
    reader = EventReader(Path(path))
    return reader.read_new(), reader.garbage
