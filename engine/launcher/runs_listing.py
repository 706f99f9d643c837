"""``podium runs --json ROOT``: the runs list's summaries, computed on the machine that holds the runs.

A remote workspace lists its runs with one SSH round trip instead of reading every run's events over
the wire. Each summary holds the fields of :class:`engine.contract.rundir.RunSummary` (its state decided
by the same :func:`derive_state`, with the launcher's liveness checked here, on the launcher's host) and
``alive``, and the run's notes.json as it is (``notes``, its text; ``notes_error`` when it cannot be read),
which the app checks as any file of a run instead of reading each over SFTP. The runs directly under ROOT
are listed, and the trials of its studies (``studies/NAME/``). ROOT may also be one run's folder: then its
summary alone.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

from engine.contract.commandline import UsageError
from engine.contract.events import Eval, Record, RunEnd, RunStart, Status, decode_event
from engine.contract.notes import MAX_NOTES_BYTES, NOTES
from engine.contract.rundir import RunDir, derive_state
from engine.contract.studies import STUDIES

# The few event types a runs list needs, found by one pattern search (the bulk, metrics lines, is never
# decoded); written by json.dumps with or without the space. Inside a JSON string the quotes are escaped,
# so a message that quotes one cannot match, and whatever matches is still decoded and checked.
_MARKER = re.compile(rb'"type": ?"(?:run_start|status|run_end|eval)"')


def add_parser(sub: Any) -> None:
    runs = sub.add_parser("runs", help="list the runs of a folder (and its studies' trials) with their states")
    runs.add_argument("root", type=Path, help="a workspace folder, or one run's folder")
    runs.add_argument("--json", action="store_true", help="one JSON list of summaries (for the app)")


def cmd_runs(args: Any) -> int:
    root: Path = args.root
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder (give the workspace that holds the run folders)")
    summaries = list_runs(root)
    if args.json:
        json.dump(summaries, sys.stdout, allow_nan=False)
        print()
        return 0
    for s in summaries:
        total = f"/{s['total_steps']}" if s["total_steps"] else ""
        print(f"{s['state']:<14} step {s['step']}{total:<10} {s['path']}")
    return 0


def list_runs(root: Path, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    if RunDir(root).exists():
        return [summarize(root, now)]
    folders = _children(root) + [t for study in _children(root / STUDIES) for t in _children(study)]
    found = [summarize(path, now) for path in folders if RunDir(path).exists()]
    return sorted(found, key=lambda s: s["start_time"] or 0.0, reverse=True)


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def _summary_lines(data: bytes) -> list[bytes]:
    # One pass of the pattern over the file: a search per marker was most of a listing's time.
    starts = sorted({data.rfind(b"\n", 0, m.start()) + 1 for m in _MARKER.finditer(data)})
    return [data[start : data.find(b"\n", start)] for start in starts]


def summarize(path: Path, now: float) -> dict[str, Any]:
    run = RunDir(path)
    try:
        data = run.events.read_bytes()
    except OSError:
        data = b""
    data = data[: data.rfind(b"\n") + 1]  # a line still being written is not an event yet
    first = decode_event(data[: data.find(b"\n")]) if data else None
    last = decode_event(data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1]) if data else None
    start: RunStart | None = None
    status: Status | None = None
    end: RunEnd | None = None
    best: float | None = None
    latest: float | None = None
    step = int(last["step"]) if last else 0
    for line in _summary_lines(data):
        event = decode_event(line)
        if event is None:
            continue
        step = max(step, int(event["step"]))
        match event:
            case RunStart():
                start, end = event, None
            case Status():
                status = event
            case RunEnd():
                end = event
            case Eval(val_loss=float() as val) if math.isfinite(val):
                best = val if best is None else min(best, val)
                latest = val
    alive = run.launcher_alive()
    few: list[Record] = [e for e in (status, last) if e is not None]
    if end is not None:
        few.append(end)
    begun = start or first
    return {
        "path": str(path),
        "name": path.name,
        "state": derive_state(few, alive, now),
        "start_time": float(begun["time"]) if begun else None,
        "step": step,
        "total_steps": start.total_steps if start else None,
        "best_val_loss": best,
        "last_val_loss": latest,
        "last_event_time": float(last["time"]) if last else None,
        "end_reason": end.reason if end else None,
        "alive": alive,
        **_notes(path),
    }


def _notes(path: Path) -> dict[str, Any]:
    try:
        # Non-blocking: a fifo planted in a run folder would hold the listing until a writer came.
        fd = os.open(path / NOTES, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return {"notes": None}
    except OSError as exc:
        return {"notes_error": exc.strerror or type(exc).__name__}
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return {"notes_error": "not a regular file"}
        data = f.read(MAX_NOTES_BYTES + 1)  # one byte more: the app says it is too large
    return {"notes": data.decode("utf-8", "surrogateescape")}
