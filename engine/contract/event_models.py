"""One typed model per event of ``events.jsonl``, and the checks every writer and reader goes through.

Every line is one JSON object with ``v`` (schema version), ``type``, ``time`` (Unix seconds) and
``step``, plus the fields of its type's model. Types are strict, as JSON's are: a string is never
read as a number, a float never as an integer, ``true`` never as 1. Fields a model does not name
are kept (``model_extra``) so an older app shows what a newer engine adds. Import these through
:mod:`engine.contract.events`, the stream's public face.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import ItemsView, KeysView
from typing import Annotated, Any, Literal, TypeAlias, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

SCHEMA_VERSION = 1
MAX_STEP = 2**53  # past this a step loses integer precision in a float column


def finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


FiniteFloat = Annotated[float, AfterValidator(finite)]
Step = Annotated[int, Field(ge=0, le=MAX_STEP)]
Count = Annotated[int, Field(ge=0)]
Number = float  # strict float accepts JSON integers, never strings or booleans; NaN/Infinity allowed


class _Record(BaseModel):
    """Typed fields, other fields kept; read also as the JSON object it was written as (``r["kind"]``,
    ``r.get("path")``), so code that treats events as plain JSON keeps working."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True, defer_build=True)

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


@functools.cache
def _any_event() -> TypeAdapter[TypedEvent]:
    return TypeAdapter(Annotated[TypedEvent, Field(discriminator="type")])


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


def first_error(exc: ValidationError) -> str:
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
        return _any_event().validate_python(record)
    except ValidationError as exc:
        raise ValueError(f"{etype}: {first_error(exc)}") from None
