"""Anomaly alerts of a run, from its ``anomaly`` events. Qt-free.

The engine writes an ``anomaly`` event when a detector fires (``id``, kind,
severity, message, evidence, suggestion, the action its policy prescribes)
and, once it has acted, a second ``anomaly`` event with the same ``id`` and
``action_taken: {action, outcome, to_step?, lr_factor?}``. This model merges
the two into one alert, keeps what the user acknowledged, and filters by
severity and kind.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.contract.events import Anomaly, Record

SEVERITIES = ("critical", "warning", "info")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class Alert:
    id: str
    kind: str
    severity: str
    step: int
    time: float
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    suggestion: str = ""
    action: str = ""  # what the policy prescribes
    action_taken: dict[str, Any] | None = None  # what the engine did, and how it went
    acknowledged: bool = False
    seq: int = 0  # arrival order

    @property
    def title(self) -> str:
        return self.kind.replace("_", " ")

    def evidence_text(self, limit: int = 6) -> str:
        """``loss=nan, ema=2.104, window=50``: the values the detector judged on, the first few."""
        parts = [f"{k}={_value(v)}" for k, v in self.evidence.items()]
        more = f", … ({len(parts) - limit} more)" if len(parts) > limit else ""
        return ", ".join(parts[:limit]) + more

    def action_text(self) -> str:
        """What happened: ``rollback: done, back to step 480, LR ×0.5``; the prescribed action while
        the engine has not reported yet; ``alert only`` when nothing was to be done."""
        taken = self.action_taken
        if taken:
            action = str(taken.get("action") or self.action or "?")
            outcome = str(taken.get("outcome") or "")
            text = f"{action.replace('_', ' ')}: {outcome}" if outcome else action.replace("_", " ")
            details = []
            if taken.get("to_step") is not None:
                details.append(f"back to step {taken['to_step']}")
            factor = taken.get("lr_factor")
            if isinstance(factor, (int, float)) and not isinstance(factor, bool):
                details.append(f"LR ×{factor:g}")
            if taken.get("reason"):
                details.append(str(taken["reason"]))
            return text + (", " + ", ".join(details) if details else "")
        if not self.action or self.action == "alert":
            return "alert only"
        return f"{self.action.replace('_', ' ')} (pending)"

    @property
    def outcome(self) -> str:
        """done | pending | none (alert only) | other: anything else the engine reports (a fallback taken,
        a failure), in its words in :meth:`action_text`."""
        if self.action_taken:
            return "done" if str(self.action_taken.get("outcome") or "done") == "done" else "other"
        return "none" if not self.action or self.action == "alert" else "pending"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        shown = ", ".join(_value(x) for x in v[:4])
        return f"[{shown}{', …' if len(v) > 4 else ''}]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in list(v.items())[:4]) + "}"
    return str(v)


class AlertModel:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.by_id: dict[str, Alert] = {}
        self.severities: set[str] = set(SEVERITIES)
        self.kinds: set[str] | None = None  # None = every kind
        self.version = 0

    def clear(self) -> None:
        self.alerts.clear()
        self.by_id.clear()
        self.version += 1

    def ingest(self, events: Iterable[Record]) -> list[Alert]:
        """Merge anomaly events; returns the alerts that are new (not follow-ups), for notifications."""
        new = []
        for event in events:
            if not isinstance(event, Anomaly):
                continue
            alert_id = event.id or f"{event.kind}@{event.step}@{event.time}"
            alert = self.by_id.get(alert_id)
            taken = event.action_taken
            if alert is None:
                alert = Alert(alert_id, event.kind, event.severity, event.step, event.time, seq=len(self.alerts))
                self.alerts.append(alert)
                self.by_id[alert_id] = alert
                if taken is None:
                    new.append(alert)
            # A follow-up reports the action (its own message, severity info, the step it went back to):
            # the detection's message, evidence, step and severity stay; what it lacks, it may fill in.
            follow_up = taken is not None
            if event.message and (not follow_up or not alert.message):
                alert.message = event.message
            if event.evidence and (not follow_up or not alert.evidence):
                alert.evidence = dict(event.evidence)
            if event.suggestion and (not follow_up or not alert.suggestion):
                alert.suggestion = event.suggestion
            if event.action:
                alert.action = event.action
            if taken is not None:
                alert.action_taken = taken.to_values()
            elif SEVERITY_RANK[event.severity] < SEVERITY_RANK[alert.severity]:
                alert.severity = event.severity
            self.version += 1
        return new

    # ------------------------------------------------------------------ views

    def known_kinds(self) -> list[str]:
        """Kinds the engine can raise, then any others seen in this run (a newer engine)."""
        from engine.contract.monitor_config import KINDS  # pydantic: loaded when a run has alerts, not at start-up

        seen = {a.kind for a in self.alerts}
        return list(KINDS) + sorted(seen - set(KINDS))

    def accepts(self, alert: Alert) -> bool:
        return alert.severity in self.severities and (self.kinds is None or alert.kind in self.kinds)

    def visible(self) -> list[Alert]:
        """Filtered, newest first."""
        return [a for a in reversed(self.alerts) if self.accepts(a)]

    def set_severities(self, severities: Iterable[str]) -> None:
        self.severities = set(severities)
        self.version += 1

    def set_kinds(self, kinds: Iterable[str] | None) -> None:
        """Show only these kinds; None shows every kind."""
        self.kinds = None if kinds is None else set(kinds)
        self.version += 1

    def unacknowledged(self) -> int:
        return sum(1 for a in self.alerts if not a.acknowledged)

    def unacknowledged_by_severity(self) -> dict[str, int]:
        out = {s: 0 for s in SEVERITIES}
        for a in self.alerts:
            if not a.acknowledged:
                out[a.severity] = out.get(a.severity, 0) + 1
        return out

    def acknowledge(self, ids: Iterable[str]) -> int:
        n = 0
        for alert_id in ids:
            alert = self.by_id.get(alert_id)
            if alert is not None and not alert.acknowledged:
                alert.acknowledged = True
                n += 1
        if n:
            self.version += 1
        return n

    def acknowledge_all(self) -> int:
        return self.acknowledge([a.id for a in self.alerts if self.accepts(a)])
