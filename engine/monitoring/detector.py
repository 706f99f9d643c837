"""An anomaly record and the base of every detector: one kind, one record stream, at most one finding per update."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.contract.monitor_config import AnomalySection

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

SUGGESTIONS: dict[str, str] = {
    "memorization": (
        "Samples copy the training set: compare earlier checkpoints by quality score, roll back, stop earlier, "
        "or train with more dropout, more transposition or more data."
    ),
    "nonfinite_loss": (
        "Roll back to the last good checkpoint and lower the LR; if it recurs, check the data window it "
        "happened on, and under fp16 switch to bf16 or fp32."
    ),
    "nonfinite_grad": "Roll back and lower the LR or tighten gradient clipping; under fp16 check the loss scaler.",
    "loss_spike": (
        "Usually harmless if the loss comes back down; frequent spikes call for a lower LR, more warmup or "
        "tighter clipping (optim.grad_clip)."
    ),
    "loss_divergence": (
        "Roll back to the last good checkpoint and lower the LR; consider longer warmup or smaller batches per LR."
    ),
    "grad_explosion": "Lower the LR or tighten optim.grad_clip; check the batch that caused it.",
    "vanishing_gradients": (
        "Check that the LR is not zero, the loss is connected to the weights and no layer saturates; consider"
        " a higher LR."
    ),
    "lr_anomaly": "Check the schedule and the last set_lr command; set the LR explicitly with set_lr.",
    "throughput_drop": "Look for another process on the machine, thermal throttling, swapping or a slower data source.",
    "stalled_training": (
        "A step has not finished in time: look at engine.log for a hang (deadlocked collective, stuck data "
        "worker, I/O); stop and resume if it does not recover."
    ),
    "memory_growth": (
        "Memory grows steadily: look for tensors kept across steps (losses appended without .item(), growing "
        "caches); restart from a checkpoint before it runs out."
    ),
    "gpu_memory_near_limit": (
        "Reduce batch.micro_batch_size or data.seq_len (accumulation keeps the global batch), or use bf16."
    ),
    "overfitting": (
        "Validation is getting worse while training improves: stop early and keep the best checkpoint, or add"
        " dropout, augmentation (data.transpose) or data."
    ),
    "dataloader_bottleneck": "Steps wait for data: cache the prepared data, add loader workers or pin memory.",
    "straggler_rank": (
        "One rank is slower than the others: check its device or host (throttling, other jobs, a slower GPU)."
    ),
    "musical_collapse": (
        "Samples repeat or use few pitch classes: compare checkpoints by quality score, lower the LR, raise "
        "sampling temperature, or roll back."
    ),
}


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Anomaly:
    """One detection. ``evidence`` holds the values and window it was judged on (JSON-able)."""

    kind: str
    severity: str
    step: int
    message: str
    evidence: dict[str, Any]
    suggestion: str
    action: str = "alert"
    id: str = field(default_factory=_new_id)

    def to_event(self) -> dict[str, Any]:
        """Payload of an ``anomaly`` event (the step goes into the event's own ``step`` field)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "evidence": self.evidence,
            "suggestion": self.suggestion,
            "action": self.action,
        }


# --------------------------------------------------------------------------- helpers


def number_of(record: Mapping[str, Any], key: str) -> float | None:
    """The record's value as a float (NaN/inf kept), or None when absent."""
    value = record.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def per_rank(value: Any) -> dict[str, float]:
    """A number, a list indexed by rank or a ``{rank: value}`` dict, as ``{rank: float}``."""
    if value is None:
        return {}
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        items = [(0, value)]
    out = {}
    for rank, v in items:
        if v is not None and not isinstance(v, bool):
            out[str(rank)] = float(v)
    return out


def last_values(values: Iterable[float], n: int = 10) -> list[float]:
    return [float(v) for v in list(values)[-n:]]


class Detector:
    """One anomaly kind. ``source`` names the record stream it reads; ``update`` returns at most
    one :class:`Anomaly` (action and cooldown are the monitor's business)."""

    kind: str = ""
    source: str = "metrics"

    def __init__(self, cfg: AnomalySection):
        self.cfg = cfg

    def update(self, step: int, record: Mapping[str, Any]) -> Anomaly | None:
        raise NotImplementedError

    def found(self, step: int, severity: str, message: str, **evidence: Any) -> Anomaly:
        return Anomaly(self.kind, severity, step, message, evidence, SUGGESTIONS[self.kind])
