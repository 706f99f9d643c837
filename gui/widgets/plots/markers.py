"""What a marker's tooltip says: for an anomaly, a summary of the detection with its values made readable."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gui.format import format_duration, format_value

if TYPE_CHECKING:  # the event models load with the first run, not on the way to the window's first paint
    from engine.contract.events import Anomaly
    from gui.models.run_model import Marker

EVIDENCE_SHOWN = 8  # values of an anomaly's evidence in its tooltip; the Alerts panel has them all


def readable(value: Any) -> str:
    """A value of an anomaly's evidence as the app writes values (``2.346``, ``3.000e-04``, ``NaN``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format_value(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "+inf"):
        return format_value(float(value))
    if isinstance(value, (list, tuple)):
        shown = ", ".join(readable(v) for v in value[:4])
        return f"[{shown}{', …' if len(value) > 4 else ''}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {readable(v)}" for k, v in list(value.items())[:4]) + "}"
    text = str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def anomaly_tooltip(event: Anomaly, t: float) -> str:
    """``loss_spike · warning · step 500``, what was seen, its evidence as ``loss = 2.9``, the suggestion."""
    lines = [f"{event.kind} · {event.severity} · step {event.step}"]
    if math.isfinite(t):
        lines[0] += f" · {format_duration(t)}"
    if event.message:
        lines.append(event.message)
    evidence = list(event.evidence.items())
    lines += [f"{name} = {readable(value)}" for name, value in evidence[:EVIDENCE_SHOWN]]
    if len(evidence) > EVIDENCE_SHOWN:
        lines.append(f"… {len(evidence) - EVIDENCE_SHOWN} more in the Alerts panel")
    if event.suggestion:
        lines.append(f"suggestion: {event.suggestion}")
    if event.action:
        lines.append(f"action: {event.action.replace('_', ' ')}")
    return "\n".join(lines)


class MarkerTips:
    """The tooltip of each of a run's markers, from the anomaly events it read (``RunModel.notable``)."""

    def __init__(self) -> None:
        self._anomalies: dict[tuple[int, str], Anomaly] = {}
        self._seen = 0

    def tooltip(self, marker: Marker, notable: list) -> str:
        if marker.kind != "anomaly":
            return marker.text
        from engine.contract.events import Anomaly

        for event in notable[self._seen :]:
            if isinstance(event, Anomaly) and event.action_taken is None:  # a detection, not a recovery report
                self._anomalies.setdefault((event.step, event.kind), event)
        self._seen = len(notable)
        kind = marker.text.partition(" (")[0]  # the marker's heading names the kind first
        event = self._anomalies.get((int(marker.step), kind))
        return anomaly_tooltip(event, marker.t) if event is not None else marker.text
