"""What a worker learns from a trial's events, and how a study is written for people.

``TrialFollower`` reads a trial run's events for the metric the study
optimises; ``summary_text`` prints a study's snapshot (``podium hpo show``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeGuard

from engine.contract.events import Record


class TrialFollower:
    """What the controller learns from a trial's events."""

    def __init__(self, metric: str):
        self.metric = metric
        self.values: list[tuple[int, float]] = []
        self.eval_fields: set[str] = set()
        self.end: Record | None = None
        self.failure: str | None = None
        self.last_step = 0
        self.parameters: int | None = None
        self.tokens_seen: int | None = None
        self.pruned_at: int | None = None
        self.pruned_value: float | None = None

    @property
    def value(self) -> float | None:
        return self.values[-1][1] if self.values else None

    def best(self, direction: str) -> float | None:
        finite = [v for _, v in self.values if math.isfinite(v)]
        if not finite:
            return None
        return min(finite) if direction == "minimize" else max(finite)

    def take(self, event: Record) -> tuple[int, float] | None:
        """Track an event; return (step, metric value) when it carries the metric."""
        kind = event["type"]
        self.last_step = max(self.last_step, int(event.get("step", 0)))
        if kind == "run_start":
            self.parameters = event.get("model_parameters")
        elif kind == "metrics":
            self.tokens_seen = event.get("tokens_seen", self.tokens_seen)
        elif kind == "run_end":
            self.end = event
        elif kind == "error" and event.get("fatal"):
            self.failure = str(event.get("message"))
        if kind not in ("eval", "sample"):
            return None
        if kind == "eval":
            self.eval_fields.update(k for k, v in event.items() if _is_number(v) and k not in ("v", "time", "step"))
        value = metric_value(event, self.metric)
        if value is None:
            return None
        step = int(event["step"])
        if self.values and self.values[-1][0] == step:
            self.values[-1] = (step, value)  # a repeated evaluation of one step: the newest counts, reported once
            return None
        self.values.append((step, value))
        return step, value


def metric_value(event: Record, metric: str) -> float | None:
    """A numeric field of an eval or sample event, top level or under ``metrics``."""
    value = event.get(metric)
    if value is None and isinstance(event.get("metrics"), dict):
        value = event["metrics"].get(metric)
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def state_line(frozen, metric: str) -> str:
    state = frozen.state.name
    if state == "COMPLETE":
        return f"finished: {metric} {fmt(frozen.value)}"
    if state == "PRUNED":
        return frozen.user_attrs.get("reason", "pruned")
    return f"failed: {frozen.user_attrs.get('reason', '')}"


def summary_text(snap: dict[str, Any], limit: int | None = None) -> str:
    """Best trial, its params and run directory, then a table of the trials (the last ``limit``; 0 none)."""
    lines = [
        f"study {snap['study']}: {snap['direction']} {snap['metric']} "
        f"({', '.join(f'{n} {s.lower()}' for s, n in sorted(snap['counts'].items())) or 'no trials'})"
    ]
    best = snap["best"]
    if best:
        lines.append(f"best trial {best['number']}: {snap['metric']} {best['value']:.6g}")
        for key, value in best["params"].items():
            lines.append(f"  {key} = {fmt(value)}")
        lines.append(f"  run dir: {best['run_dir']}")
    else:
        lines.append("no completed trial yet")
    if "importances" in snap:
        imp = snap["importances"]
        if "values" in imp:
            lines.append(
                "parameter importances ("
                + imp["method"]
                + "): "
                + ", ".join(f"{k} {v:.2f}" for k, v in imp["values"].items())
            )
        else:
            lines.append(f"parameter importances: {imp['error']}")
    trials = snap["trials"] if limit is None else snap["trials"][-limit:] if limit else []
    if trials:
        names = list(snap["space"]) or sorted({k for t in trials for k in t["params"]})
        header = ["#", "state", snap["metric"], *names, "time", "run dir / reason"]
        rows = [header]
        for t in trials:
            value = "" if t["value"] is None else f"{t['value']:.5g}"
            duration = "" if t["duration_s"] is None else _duration(t["duration_s"])
            last = t["run_dir"] or ""
            if t["state"] in ("FAIL", "PRUNED") and t["reason"]:
                last = f"{Path(last).name + ': ' if last else ''}{t['reason']}"
            rows.append(
                [
                    str(t["number"]),
                    t["state"].lower(),
                    value,
                    *[fmt(t["params"].get(n, "")) for n in names],
                    duration,
                    last,
                ]
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
        for row in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"
