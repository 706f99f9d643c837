"""Layout of a run directory, the interface between engine, CLI and GUI.

Torch-free: the GUI reads runs through this module.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.contract.events import read_events

# A run with no event for this long while its launcher cannot be checked
# (another host) or still lives is shown as stalled.
STALL_SECONDS = 120.0


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def control(self) -> Path:
        return self.root / "control.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def engine_log(self) -> Path:
        return self.root / "engine.log"

    @property
    def launcher(self) -> Path:
        """Who launched the run (host, pid), so a GUI on the same host can tell a dead run."""
        return self.root / "launcher.json"

    def node_log(self, node_rank: int) -> Path:
        return self.engine_log if node_rank == 0 else self.root / f"engine.node{node_rank}.log"

    def exists(self) -> bool:
        return self.events.exists() or self.config.exists()

    def write_launcher(self, pid: int) -> None:
        self.launcher.write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "time": time.time()}))

    def launched_at(self) -> float | None:
        """When this run's launcher started (None without a readable launcher.json)."""
        try:
            started = json.loads(self.launcher.read_text()).get("time")
        except (OSError, ValueError, AttributeError):
            return None
        return float(started) if type(started) in (int, float) and math.isfinite(started) else None

    def launcher_alive(self) -> bool | None:
        """True/False when the launcher ran on this host; None when that cannot be known."""
        try:
            info = json.loads(self.launcher.read_text())
        except (OSError, ValueError):
            return None
        if info.get("host") != socket.gethostname():
            return None
        return _pid_alive(int(info.get("pid", -1)))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); /proc tells it apart where there is one.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class RunSummary:
    """What a runs list shows for one run, derived from its events and liveness."""

    path: Path
    name: str
    state: str
    start_time: float | None
    step: int
    total_steps: int | None
    best_val_loss: float | None
    last_event_time: float | None
    end_reason: str | None


def derive_state(events: list[dict[str, Any]], alive: bool | None, now: float | None = None) -> str:
    """running, paused, finished, stopped, early_stopped, pruned, failed or stalled.

    ``alive`` is the launcher's liveness (None when unknown, e.g. a run on
    another host): a run without ``run_end`` whose launcher died has failed; one
    whose events stopped arriving is stalled.
    """
    now = time.time() if now is None else now
    if not events:
        return "failed" if alive is False else "starting"
    for event in reversed(events):
        if event["type"] == "run_end":
            return str(event.get("reason", "finished"))
    if alive is False:
        return "failed"
    state = "running"
    for event in reversed(events):
        if event["type"] == "status":
            state = {"paused": "paused"}.get(event.get("state"), "running")
            break
    if state == "running" and now - float(events[-1]["time"]) > STALL_SECONDS:
        return "stalled"
    return state


def summarize(path: str | os.PathLike) -> RunSummary:
    run = RunDir(path)
    events, _ = read_events(run.events)
    start = next((e for e in events if e["type"] == "run_start"), None)
    end = next((e for e in reversed(events) if e["type"] == "run_end"), None)
    val_losses = [e["val_loss"] for e in events if e["type"] == "eval" and _finite(e.get("val_loss"))]
    return RunSummary(
        path=run.root,
        name=run.root.name,
        state=derive_state(events, run.launcher_alive()),
        start_time=start["time"] if start else (events[0]["time"] if events else None),
        step=max((int(e["step"]) for e in events), default=0),
        total_steps=start.get("total_steps") if start else None,
        best_val_loss=min(val_losses) if val_losses else None,
        last_event_time=events[-1]["time"] if events else None,
        end_reason=end.get("reason") if end else None,
    )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def list_runs(workspace: str | os.PathLike) -> list[RunSummary]:
    root = Path(workspace)
    if not root.is_dir():
        return []
    runs = [summarize(p) for p in sorted(root.iterdir()) if p.is_dir() and RunDir(p).exists()]
    return sorted(runs, key=lambda r: r.start_time or 0.0, reverse=True)
