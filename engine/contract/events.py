"""The run directory's event stream: one typed model per event, one writer, one tolerant reader.

Every line of ``events.jsonl`` is one JSON object with ``v`` (schema version),
``type``, ``time`` (Unix seconds) and ``step``, plus the fields of its type's
model below. The engine emits through these models (a field of the wrong type
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
import os
import threading
import time
from collections.abc import ItemsView, Iterable, Iterator, KeysView
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, TypeGuard, cast

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

SCHEMA_VERSION = 1
# A line longer than this is refused before it is parsed: no event the engine writes comes near it
# (a run_start with the whole config is a few KB), and parsing a hostile megabyte line costs memory.
MAX_LINE_BYTES = 1 << 20
# orjson parses a line about 3.5x faster than the json module, which is what lets a window keep up
# with tens of thousands of events a second. It rejects NaN/Infinity, which the writer writes on
# purpose, and invalid UTF-8: those lines (rare) go to the json module, which accepts both.
_FAST_DECODE = orjson.loads
_FAST_ERROR = orjson.JSONDecodeError
_DECODE = json.JSONDecoder().decode
_BATCH_LINES = 2000  # a few ms of parsing per C call
_MAX_STEP = 2**53  # past this a step loses integer precision in a float column


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


FiniteFloat = Annotated[float, AfterValidator(_finite)]
Step = Annotated[int, Field(ge=0, le=_MAX_STEP)]
Count = Annotated[int, Field(ge=0)]
Number = float  # strict float accepts JSON integers, never strings or booleans; NaN/Infinity allowed


class _Record(BaseModel):
    """Typed fields, other fields kept; read also as the JSON object it was written as (``r["kind"]``,
    ``r.get("path")``), so code that treats events as plain JSON keeps working."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key) if key in type(self).model_fields else (self.model_extra or {})[key]
        except KeyError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        """Whether the line carried this field (a default filled in by the model does not count)."""
        return key in self.model_fields_set or key in (self.model_extra or {})

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dict):  # compared with the JSON object it stands for
            return self.to_values() == other
        return super().__eq__(other)

    __hash__ = BaseModel.__hash__

    def to_values(self) -> dict[str, Any]:
        """Every field the line carried, declared or not, by name."""
        return {key: self[key] for key in self.keys()}

    def items(self) -> ItemsView[str, Any]:
        return self.to_values().items()

    def keys(self) -> KeysView[str]:
        return dict.fromkeys([*self.model_fields_set, *(self.model_extra or {})]).keys()


class Event(_Record):
    """The envelope every event carries."""

    v: int
    type: str
    time: FiniteFloat
    step: Step

    @property
    def extra(self) -> dict[str, Any]:
        return self.model_extra or {}


class _Part(_Record):
    """A nested record."""


class ResumedFrom(_Part):
    step: Step
    path: str = ""
    mode: Literal["resume", "fork", "weights"] = "resume"
    config_changes: dict[str, Any] = {}


class RunStart(Event):
    """The run begins (or resumes): its config, environment and plan."""

    type: Literal["run_start"] = "run_start"
    config: dict[str, Any] | None = None
    env: dict[str, Any] = {}
    total_steps: Count | None = None
    resumed_from: ResumedFrom | Step | None = None  # a bare step in runs written before the record
    model_parameters: Count | None = None
    unigram_entropy: Number | None = None
    micro_batch_size: Count | None = None
    micro_batch_reason: str | None = None
    grad_accum: Count | None = None

    @property
    def resumed_step(self) -> int | None:
        """The step training continues from, when it resumed from a checkpoint."""
        return self.resumed_from.step if isinstance(self.resumed_from, ResumedFrom) else self.resumed_from


class Data(Event):
    """The data set is ready: pieces and tokens per split, skipped files with reasons, cache use."""

    type: Literal["data"] = "data"
    source: str = ""
    pieces_train: Count | None = None
    pieces_val: Count | None = None
    tokens_train: Count | None = None
    tokens_val: Count | None = None
    vocab_size: Count | None = None
    skipped: list[Any] = []
    cache_hit: bool | None = None
    cache: str | None = None
    seconds: Number | None = None


class Status(Event):
    """What the run is doing now (preparing, starting, running, paused, stopping), with optional progress."""

    type: Literal["status"] = "status"
    state: str
    message: str = ""
    progress: Number | None = None
    total: Number | None = None


class Metrics(Event):
    """Training figures of the steps since the last log step (averaged over them and all ranks)."""

    type: Literal["metrics"] = "metrics"
    loss: Number | None = None
    lr: Number | None = None
    peak_lr: Number | None = None
    lr_scale: Number | None = None
    grad_norm: Number | None = None
    grad_norm_clipped: Number | None = None
    clip_frac: Number | None = None
    skipped_steps: int | None = None
    samples_per_s: Number | None = None
    tokens_per_s: Number | None = None
    step_time: Number | None = None
    data_wait_frac: Number | None = None
    rank_work_times: list[Number | None] | None = None
    tokens_seen: int | None = None
    epoch: int | None = None
    micro_batch_size: int | None = None
    seq_len: int | None = None
    curriculum_stage: int | None = None


class Eval(Event):
    """Validation figures averaged over all ranks."""

    type: Literal["eval"] = "eval"
    val_loss: Number | None = None
    val_ppl: Number | None = None
    val_tokens: Count | None = None
    train_loss: Number | None = None
    quality_score: Number | None = None
    lr_scale: Number | None = None
    replicas_in_sync: bool | None = None
    seconds: Number | None = None


class RankSystem(_Part):
    rank: Count
    host: str | None = None
    cpu_percent: Number | None = None
    rss_mb: Number | None = None


class GpuSystem(_Part):
    index: Count | None = None


class System(Event):
    """Host CPU/memory, each rank's process and each GPU (NVML), sampled off the training thread."""

    type: Literal["system"] = "system"
    host: str | None = None
    host_cpu_percent: Number | None = None
    host_mem_percent: Number | None = None
    host_mem_used_mb: Number | None = None
    host_mem_total_mb: Number | None = None
    hosts: list[dict[str, Any]] = []
    ranks: list[RankSystem] = []
    gpus: list[GpuSystem] = []


class ActionTaken(_Part):
    action: str
    outcome: str = ""
    to_step: Step | None = None


class Anomaly(Event):
    """Something looks wrong (``kind`` from engine.contract.monitor_config.KINDS), or, with
    ``action_taken``, what the recovery policy did about an earlier anomaly with the same ``id``."""

    type: Literal["anomaly"] = "anomaly"
    id: str = ""
    kind: str
    severity: Literal["info", "warning", "critical"] = "warning"
    message: str = ""
    evidence: dict[str, Any] = {}
    suggestion: str = ""
    action: str | None = None
    action_taken: ActionTaken | None = None


class SampleItem(_Part):
    path: str
    seed: int | None = None
    syntax: Any = None
    metrics: dict[str, Number | None] = {}


class MetricReference(_Part):
    """A musical metric's level in the corpus."""

    mean: Number | None = None
    std: Number | None = None


class Sample(Event):
    """Music generated at an evaluation: each sample's file and metrics, their means and the quality score."""

    type: Literal["sample"] = "sample"
    samples: list[SampleItem] = []
    metrics: dict[str, Number | None] = {}
    quality_score: Number | None = None
    quality: dict[str, Any] = {}
    reference: dict[str, MetricReference] = {}
    seconds: Number | None = None
    path: str = ""


class ControlAck(Event):
    """The answer to one command of ``control.jsonl``: done, or refused and why."""

    type: Literal["control_ack"] = "control_ack"
    id: str | None
    cmd: str | None
    outcome: Literal["done", "refused"]
    reason: str = ""
    old_peak_lr: Number | None = None
    new_peak_lr: Number | None = None
    lr_now: Number | None = None


class Profile(Event):
    """A torch.profiler trace was written: its path, the steps recorded and the top operators."""

    type: Literal["profile"] = "profile"
    path: str
    steps: Count | None = None
    top: list[dict[str, Any]] = []
    table: str = ""


class Checkpoint(Event):
    """A checkpoint was committed (or a background save announced)."""

    type: Literal["checkpoint"] = "checkpoint"
    path: str
    kind: str = "full"
    reason: str = ""
    size_bytes: Count | None = None
    seconds: Number | None = None
    stall_seconds: Number | None = None
    background: bool = False
    compression: dict[str, Any] | None = None
    metric: Number | None = None


class CheckpointRemoved(Event):
    """Retention removed a checkpoint, or archived it to weights only."""

    type: Literal["checkpoint_removed"] = "checkpoint_removed"
    path: str
    reason: str = ""
    scope: str = ""
    freed_bytes: Count | None = None


class Restart(Event):
    """torchrun restarted the workers; they resumed from a checkpoint."""

    type: Literal["restart"] = "restart"
    attempt: Count | None = None
    resumed_from: Step | None = None
    steps_lost: Count | None = None
    path: str | None = None
    max_restarts: Count | None = None


RUN_END_REASONS = ("finished", "stopped", "early_stopped", "failed", "pruned")
RunEndReason = Literal["finished", "stopped", "early_stopped", "failed", "pruned"]


class RunEnd(Event):
    """The run is over, and why."""

    type: Literal["run_end"] = "run_end"
    reason: RunEndReason
    message: str = ""


class Error(Event):
    """Something failed: where, whether it ended the run, and the details a user needs."""

    type: Literal["error"] = "error"
    message: str
    where: str = ""
    fatal: bool = False
    traceback: str | None = None


TypedEvent: TypeAlias = (
    RunStart
    | Data
    | Status
    | Metrics
    | Eval
    | System
    | Anomaly
    | Sample
    | ControlAck
    | Profile
    | Checkpoint
    | CheckpointRemoved
    | Restart
    | RunEnd
    | Error
)
EVENT_MODELS: dict[str, type[Event]] = {
    cast(str, model.model_fields["type"].default): model
    for model in (
        RunStart,
        Data,
        Status,
        Metrics,
        Eval,
        System,
        Anomaly,
        Sample,
        ControlAck,
        Profile,
        Checkpoint,
        CheckpointRemoved,
        Restart,
        RunEnd,
        Error,
    )
}
# What each type is for, from its model: the CLI and docs list them.
EVENT_TYPES: dict[str, str] = {name: " ".join((model.__doc__ or "").split()) for name, model in EVENT_MODELS.items()}
_ANY_EVENT: TypeAdapter[TypedEvent] = TypeAdapter(Annotated[TypedEvent, Field(discriminator="type")])


def make_event(type_: str, step: int, **payload: Any) -> dict[str, Any]:
    """One event as the dict written to the file, validated through its model."""
    model = EVENT_MODELS.get(type_)
    if model is None:
        raise ValueError(f"unknown event type {type_!r}; known: {', '.join(EVENT_MODELS)}")
    event = {"v": SCHEMA_VERSION, "type": type_, "time": time.time(), "step": int(step), **_plain(payload)}
    model.model_validate(event)
    return event


def _plain(value: Any) -> Any:
    """Numbers from numpy/torch scalars, paths and tuples as JSON writes them, without importing either library."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write {type(value).__name__} into an event")


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


def _decode_json(line: bytes) -> Any:
    """One line's JSON value; ValueError when it is not JSON (or too deep for a reader to walk)."""
    try:
        return _FAST_DECODE(line)
    except _FAST_ERROR:
        try:
            return _DECODE(line.decode("utf-8", "replace"))
        except RecursionError:
            raise ValueError("nested too deeply") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and p in EVENT_MODELS))
    return f"{where}: {error['msg']}" if where else error["msg"]


def validate_event(record: Any) -> TypedEvent:
    """A decoded JSON value as its typed event; ValueError naming the type and field when it is not one."""
    if type(record) is not dict:
        raise ValueError("not a JSON object")
    etype = record.get("type")
    if type(etype) is not str:
        raise ValueError("type: missing or not a string")
    if etype not in EVENT_MODELS:
        raise ValueError(f"type: unknown event type {etype[:40]!r}")
    try:
        return _ANY_EVENT.validate_python(record)
    except ValidationError as exc:
        raise ValueError(f"{etype}: {_first_error(exc)}") from None


def decode_event(line: bytes) -> TypedEvent | None:
    """One line as a typed event, or None when it is not one."""
    if len(line) > MAX_LINE_BYTES:
        return None
    try:
        return validate_event(_decode_json(line))
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
            problems[i] = f"metrics: {_first_error(exc)}"
    return problems


def _is_finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _columns_ok(rows: list[dict[str, Any]], keys: Iterable[str]) -> bool:
    for key in keys:
        kinds = set(map(type, (row[key] for row in rows)))
        if key == "time":
            if not kinds <= {float, int} or not all(map(_is_finite, (row[key] for row in rows))):
                return False
        elif key == "step":
            if kinds != {int} or not all(0 <= row[key] <= _MAX_STEP for row in rows):
                return False
        elif key == "v":
            if kinds != {int}:
                return False
        elif key == "rank_work_times":
            if not kinds <= {list, type(None)}:
                return False
            items = {type(x) for row in rows if row[key] for x in row[key]}
            if not items <= {float, int, type(None)}:
                return False
        elif key in _METRIC_TYPES:
            if not kinds <= set(_METRIC_TYPES[key]):
                return False
    return True


@dataclass
class LineTail:
    """Incremental reader of an append-only file of lines.

    ``read_lines()`` returns the complete lines added since the last call, at
    most ``max_bytes`` of them when given (a GUI opening a run of millions of
    lines reads it in slices and stays responsive; ``behind`` says how much is
    still waiting). A partial last line (the writer is mid-write) is kept
    until its newline arrives; one longer than :data:`MAX_LINE_BYTES` is
    dropped. A file that shrinks (replaced or truncated) is read again from
    the start, and ``restarted`` says so until the next read.
    """

    path: Path
    offset: int = 0
    size_seen: int = 0
    restarted: bool = False
    lines_read: int = 0
    _partial: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def behind(self) -> int:
        """Bytes known to be waiting after the last read (from the last stat)."""
        return max(0, self.size_seen - self.offset)

    def read_lines(self, max_bytes: int | None = None) -> list[bytes]:
        self.restarted = False
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:
            self.offset, self._partial, self.restarted, self.lines_read = 0, b"", True, 0
        self.size_seen = size
        if size == self.offset:
            return []
        end = size if max_bytes is None else min(size, self.offset + max(1, max_bytes))
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(end - self.offset)
        self.offset += len(chunk)
        if len(self._partial) > MAX_LINE_BYTES:  # a line with no end in sight: drop it, keep reading
            self._partial = b"x" * (MAX_LINE_BYTES + 1)
        complete, newline, self._partial = (self._partial + chunk).rpartition(b"\n")
        if not newline:
            return []
        self.lines_read += complete.count(b"\n") + 1
        return self._split(complete)

    def _split(self, complete: bytes) -> list[bytes]:
        """The lines of a chunk of complete lines (a subclass may pick only some)."""
        return complete.split(b"\n")


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
                    parsed.extend(map(_FAST_DECODE, lines[i : i + _BATCH_LINES]))
                return list(zip(_numbers(first_line), parsed))
            except _FAST_ERROR:
                pass
        values = []
        for number, line in zip(_numbers(first_line), lines):
            if not line or line.isspace():
                continue
            if len(line) > MAX_LINE_BYTES:
                self._reject(number, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                values.append((number, _decode_json(line)))
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
