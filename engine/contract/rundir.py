"""Layout of a run directory, the interface between engine, CLI and GUI.

Torch-free: the GUI reads runs through this module.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil

    from engine.contract.events import Record
    from engine.contract.launcher_record import ProcessIdentity

# pydantic, the event models and psutil load on first use, not with the layout: the app reaches this module
# before its first paint, and they cost about half a second there (tests/test_cold_start.py).

# A run with no event for this long while its launcher cannot be checked
# (another host) or still lives is shown as stalled.
STALL_SECONDS = 120.0


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | os.PathLike[str]):
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
        from engine.contract.launcher_record import ProcessIdentity

        self.launcher.write_text(ProcessIdentity.of(pid).model_dump_json())

    def launcher_identity(self) -> ProcessIdentity | None:
        """Who launched the run, from launcher.json (None when it is missing or not a valid record)."""
        from engine.contract.launcher_record import ProcessIdentity

        try:
            with open(self.launcher, "rb") as f:
                return ProcessIdentity.model_validate_json(f.read(_MAX_RECORD_BYTES))
        except (OSError, ValueError):
            return None

    def launched_at(self) -> float | None:
        """When this run's launcher started (None without a valid launcher.json)."""
        identity = self.launcher_identity()
        return identity.time if identity and identity.time is not None and math.isfinite(identity.time) else None

    def launcher_alive(self) -> bool | None:
        """True/False when the launcher ran on this host; None when that cannot be known."""
        identity = self.launcher_identity()
        return identity.alive() if identity else None

    def launcher_process(self) -> psutil.Process | None:
        """The launcher's process, only when it is verifiably this run's: launcher.json is this user's own
        file, names a live process by pid, start time and command line, and that process is ``podium run``
        of this very folder. The one process the app may signal to stop this run."""
        from engine.contract.launcher_record import launches, private_file

        identity = self.launcher_identity() if private_file(self.launcher) else None
        proc = identity.process() if identity else None
        return proc if proc is not None and launches(proc, self.root) else None


_MAX_RECORD_BYTES = 64 << 10


def __getattr__(name: str) -> Any:
    if name == "ProcessIdentity":
        from engine.contract.launcher_record import ProcessIdentity

        return ProcessIdentity
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sample_metrics_path(midi: Path) -> Path:
    """Where ``podium sample`` leaves a sample's musical metrics, next to its MIDI (the app reads them there)."""
    return midi.with_name(midi.name + ".metrics.json")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie (it may not be the one you think)."""
    import psutil

    try:
        return pid > 0 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
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
    last_val_loss: float | None = None


def derive_state(events: Sequence[Record], alive: bool | None, now: float | None = None) -> str:
    """running, paused, finished, stopped, early_stopped, pruned, failed or stalled.

    ``alive`` is the launcher's liveness (None when unknown, e.g. a run on
    another host): a run without ``run_end`` whose launcher died has failed; one
    whose events stopped arriving is stalled.
    """
    from engine.contract.events import RunEnd, Status

    now = time.time() if now is None else now
    if not events:
        return "failed" if alive is False else "starting"
    end = next((e for e in reversed(events) if isinstance(e, RunEnd)), None)
    if end is not None:
        return end.reason
    if alive is False:
        return "failed"
    status = next((e for e in reversed(events) if isinstance(e, Status)), None)
    state = "paused" if status is not None and status.state == "paused" else "running"
    if state == "running" and now - events[-1]["time"] > STALL_SECONDS:
        return "stalled"
    return state
