"""The run directory's event stream: one schema, one writer, one tolerant reader.

Every line of ``events.jsonl`` is one JSON object with at least ``v`` (schema
version), ``type``, ``time`` (Unix seconds) and ``step``. Non-finite floats are
written as ``NaN``/``Infinity`` (Python's JSON extension) on purpose: a NaN loss
is exactly what a user needs to see, so it must survive the trip to the plots.

Torch-free and Qt-free: the GUI, the CLI and the engine all import this.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

SCHEMA_VERSION = 1
# orjson parses a line about 3.5x faster than the json module, which is what
# lets a window keep up with tens of thousands of events a second. It rejects
# NaN/Infinity, which the writer writes on purpose, and invalid UTF-8: those
# lines (rare) go to the json module, which accepts both.
_FAST_DECODE = orjson.loads
_FAST_ERROR = orjson.JSONDecodeError
_DECODE = json.JSONDecoder().decode
_BATCH_LINES = 2000  # a few ms of parsing per C call

# Event types and what each carries beyond v/type/time/step. Kept as data so
# the writer can reject a misspelt type and the docs/GUI can list them.
EVENT_TYPES: dict[str, str] = {
    "run_start": "config, env (versions, devices, world_size, backend, precision and why), total_steps, resumed_from",
    "data": "source, pieces/tokens per split, vocab_size, skipped files with reasons, cache hit, seconds",
    "status": "state (preparing, starting, running, paused, stopping, ...), message, optional progress/total",
    "metrics": "loss, lr, grad_norm, samples_per_s, tokens_per_s, step_time, data_wait_frac, rank_work_times, tokens_seen, epoch",
    "eval": "val_loss and other validation figures averaged over all ranks",
    "system": "host CPU/memory, ranks [{rank, cpu_percent, rss_mb, gpu_mem_*_mb}], gpus [{util, mem, temp_c, power_w}] (NVML)",
    "anomaly": "id, kind, severity, message, evidence, suggestion, action; a follow-up with the same id carries action_taken",
    "sample": "samples [{path, seed, syntax, metrics}], metrics (means), quality_score, quality, reference, seconds",
    "control_ack": "id, cmd, outcome (done|refused), reason",
    "profile": "path of a torch.profiler trace, steps recorded, top operators by time",
    "checkpoint": "path, kind, reason, size_bytes, seconds, stall_seconds, background, compression, metric",
    "checkpoint_removed": "path, reason, scope (whole folder or archived to weights-only), freed_bytes",
    "restart": "attempt, resumed_from step, steps_lost, path, max_restarts",
    "run_end": "reason (finished, stopped, early_stopped, failed, pruned), message",
    "error": "message, where, fatal, traceback",
}

RUN_END_REASONS = ("finished", "stopped", "early_stopped", "failed", "pruned")


def make_event(type_: str, step: int, **payload: Any) -> dict[str, Any]:
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}; known: {', '.join(EVENT_TYPES)}")
    return {"v": SCHEMA_VERSION, "type": type_, "time": time.time(), "step": int(step), **payload}


class EventWriter:
    """Appends events, one ``write`` per line so a reader never sees a line
    interleaved with another, and flushes each so readers see it at once."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()  # the stall watchdog emits from its own thread

    def emit(self, type_: str, step: int = 0, **payload: Any) -> dict[str, Any]:
        event = make_event(type_, step, **payload)
        line = json.dumps(event, default=_jsonable) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
        return event

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _jsonable(value: Any) -> Any:
    """Numbers from numpy/torch scalars and paths, without importing either library."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} into an event")


@dataclass
class JsonlTail:
    """Incremental, tolerant reader of an append-only JSON-lines file.

    ``read_new()`` returns the complete lines added since the last call, at
    most ``max_bytes`` of them when given (a GUI opening a run of millions of
    lines reads it in slices and stays responsive; ``behind`` says how much is
    still waiting). A partial last line (the writer is mid-write) is kept until
    its newline arrives; a line that is not a JSON object is counted in
    ``garbage`` and skipped. A file that shrinks (replaced or truncated) is
    read again from the start, and ``restarted`` says so until the next read.
    """

    path: Path
    offset: int = 0
    garbage: int = 0
    size_seen: int = 0
    restarted: bool = False
    _partial: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def behind(self) -> int:
        """Bytes known to be waiting after the last read (from the last stat)."""
        return max(0, self.size_seen - self.offset)

    def read_new(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        self.restarted = False
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:
            self.offset, self._partial, self.restarted = 0, b"", True
        self.size_seen = size
        if size == self.offset:
            return []
        end = size if max_bytes is None else min(size, self.offset + max(1, max_bytes))
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(end - self.offset)
        self.offset += len(chunk)
        complete, newline, self._partial = (self._partial + chunk).rpartition(b"\n")
        if not newline:
            return []
        lines = self._lines(complete)
        records: list[Any] | None = []
        try:
            # The common case, well-formed objects, at C speed; in batches, since
            # a C call holds the GIL and a GUI reading in a thread must not stall.
            for i in range(0, len(lines), _BATCH_LINES):
                records.extend(map(_FAST_DECODE, filter(None, lines[i : i + _BATCH_LINES])))
        except _FAST_ERROR:
            records = None
        if records is not None and self._all_valid(records):
            return records
        return [r for r in map(self._parse, lines) if r is not None]

    def _all_valid(self, records: list[Any]) -> bool:
        """Whether every record is one ``_parse`` would keep as it is."""
        return all(type(r) is dict for r in records)

    def _lines(self, complete: bytes) -> list[bytes]:
        return complete.split(b"\n")

    def _parse(self, line: bytes) -> dict[str, Any] | None:
        if not line or line.isspace():
            return None
        try:
            record = _decode_json(line)
        except ValueError:
            self.garbage += 1
            return None
        if type(record) is not dict:
            self.garbage += 1
            return None
        return record


_EVENT_FIELDS = frozenset(("v", "type", "time", "step"))


def _decode_json(line: bytes) -> Any:
    """One line's JSON value; ValueError when it is not JSON."""
    try:
        return _FAST_DECODE(line)
    except _FAST_ERROR:
        return _DECODE(line.decode("utf-8", "replace"))


def decode_event(line: bytes) -> dict[str, Any] | None:
    """One line as an event, or None when it is not one."""
    try:
        record = _decode_json(line)
    except ValueError:
        return None
    return record if type(record) is dict and record.keys() >= _EVENT_FIELDS else None


class EventReader(JsonlTail):
    """A JsonlTail that also rejects objects lacking the required event fields."""

    def _all_valid(self, records: list[Any]) -> bool:
        return all(type(r) is dict and r.keys() >= _EVENT_FIELDS for r in records)

    def _parse(self, line: bytes) -> dict[str, Any] | None:
        record = super()._parse(line)
        if record is None:
            return None
        if not record.keys() >= _EVENT_FIELDS:
            self.garbage += 1
            return None
        return record


def read_events(path: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """All complete events in a file and the number of garbage lines skipped."""
    reader = EventReader(Path(path))
    events = reader.read_new()
    return events, reader.garbage


def iter_type(events: list[dict[str, Any]], type_: str) -> Iterator[dict[str, Any]]:
    return (e for e in events if e.get("type") == type_)
