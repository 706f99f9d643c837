"""A host's ``podium runs --json`` rows as the app's run summaries. What a host prints is checked like
anything else read from a run directory: a row that is not one is dropped, a field of the wrong type is
left out. Qt-free, and free of asyncssh (the window imports it before any workspace is remote).
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
from pathlib import Path
from typing import Any

from engine.contract.rundir import RunSummary

__all__ = ["HostSummary", "summary_of"]


@dataclasses.dataclass
class HostSummary(RunSummary):
    """A run as its host listed it, with its notes.json as read there (its bytes; None when it has none; the
    OSError when it could not be read), at ``asked`` (time.monotonic() when the listing was asked for)."""

    host_notes: bytes | OSError | None = None
    asked: float = 0.0


def summary_of(row: Any, asked: float = 0.0) -> RunSummary | None:
    """A row of ``podium runs --json`` as a summary, or None when it is not one: what a host prints is
    checked like anything else read from a run directory. A :class:`HostSummary` when the host read the
    run's notes (a host of an older podium does not: the app reads them, gui/models/lab.py)."""
    if not isinstance(row, dict):
        return None
    path, name, state = row.get("path"), row.get("name"), row.get("state")
    if isinstance(path, str):
        path = posixpath.normpath(path)
    if not (isinstance(path, str) and path.startswith("/") and isinstance(name, str) and isinstance(state, str)):
        return None
    step = row.get("step")
    summary = RunSummary(
        path=Path(path),
        name=name,
        state=state,
        start_time=_number(row.get("start_time")),
        step=step if isinstance(step, int) and not isinstance(step, bool) else 0,
        total_steps=_count(row.get("total_steps")),
        best_val_loss=_number(row.get("best_val_loss")),
        last_val_loss=_number(row.get("last_val_loss")),
        last_event_time=_number(row.get("last_event_time")),
        end_reason=row.get("end_reason") if isinstance(row.get("end_reason"), str) else None,
    )
    notes, error = row.get("notes"), row.get("notes_error")
    if isinstance(error, str):
        return HostSummary(**vars(summary), host_notes=OSError(error[:200]), asked=asked)
    if "notes" in row:
        text = notes.encode("utf-8", "surrogateescape") if isinstance(notes, str) else None
        return HostSummary(**vars(summary), host_notes=text, asked=asked)
    return summary


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
