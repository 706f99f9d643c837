"""Commands to a run through its ``control.jsonl`` inbox.

The client side (CLI, GUI) appends ``{"id", "cmd", "args", "time"}`` lines;
the engine's rank 0 reads new lines between steps, and every rank applies a
command at the same step. Every command is answered by a ``control_ack``
event naming its id. Torch-free: the GUI calls :func:`send_command`.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

from engine.contract.events import JsonlTail

# Command name -> the arguments it takes and a check for each.
COMMANDS: dict[str, dict[str, str]] = {
    "pause": {},
    "resume": {},
    "stop": {},
    "save_checkpoint": {},
    "set_lr": {"lr": "a finite number > 0 (the new peak LR; the schedule keeps its shape)"},
    "profile": {"steps": "an integer from 1 to 1000 (steps to record with torch.profiler)"},
}


class CommandError(ValueError):
    pass


def validate_command(record: Any) -> tuple[str, dict[str, Any]]:
    """Return (cmd, args) or raise CommandError naming what is wrong."""
    if not isinstance(record, dict):
        raise CommandError("a command must be a JSON object")
    cmd = record.get("cmd")
    if cmd not in COMMANDS:
        raise CommandError(f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}")
    args = record.get("args") or {}
    if not isinstance(args, dict):
        raise CommandError(f"{cmd}: 'args' must be an object")
    unknown = set(args) - set(COMMANDS[cmd])
    if unknown:
        raise CommandError(f"{cmd}: unknown argument(s) {sorted(unknown)}; takes {sorted(COMMANDS[cmd]) or 'none'}")
    missing = set(COMMANDS[cmd]) - set(args)
    if missing:
        raise CommandError(f"{cmd}: missing argument(s) {sorted(missing)}")
    if cmd == "set_lr":
        lr = args["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise CommandError(f"set_lr: lr={lr!r} is not valid; expected {COMMANDS['set_lr']['lr']}")
        args = {"lr": float(lr)}
    if cmd == "profile":
        steps = args["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1000:
            raise CommandError(f"profile: steps={steps!r} is not valid; expected {COMMANDS['profile']['steps']}")
    return cmd, args


def send_command(run_dir: str | os.PathLike, cmd: str, **args: Any) -> str:
    """Append a command to the run's inbox and return its id.

    Validated here too so a typo fails at the caller, not only in an ack.
    An exclusive lock keeps concurrent senders (GUI and CLI) from interleaving.
    """
    command_id = uuid.uuid4().hex[:12]
    record = {"id": command_id, "cmd": cmd, "args": args, "time": time.time()}
    validate_command(record)
    path = Path(run_dir) / "control.jsonl"
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return command_id


class _CommandTail(JsonlTail):
    """Keeps malformed lines (as ``{"malformed": text}``) so each can be refused in an ack."""

    def _parse(self, line: bytes) -> dict[str, Any] | None:
        if not line.strip():
            return None
        record = super()._parse(line)
        return record if record is not None else {"malformed": line[:200].decode("utf-8", "replace")}


class ControlInbox:
    """Engine side: command records not answered yet (a cheap stat when none are new).

    ``answered`` holds the ids already acknowledged in the run's events, so a
    restarted or resumed engine neither loses a command sent while it was down
    nor applies one twice.
    """

    def __init__(self, path: str | os.PathLike, answered: set[str] | None = None):
        self._tail = _CommandTail(Path(path))
        self._answered = set(answered or ())

    def poll(self) -> list[dict[str, Any]]:
        fresh = [r for r in self._tail.read_new() if r.get("id") not in self._answered]
        self._answered.update(r["id"] for r in fresh if isinstance(r.get("id"), str))
        return fresh
