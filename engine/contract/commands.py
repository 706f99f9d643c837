"""Commands to a run through its ``control.jsonl`` inbox: one typed model per command.

The client side (CLI, GUI) appends ``{"id", "cmd", "args", "time"}`` lines;
the engine's rank 0 reads new lines between steps, and every rank applies a
command at the same step. Every command is answered by a ``control_ack``
event naming its id: done, or refused and why. Anything in the inbox may be
hostile: a line that is not a valid command becomes a refusal with a reason,
never an exception in the run. Torch-free: the GUI calls :func:`send_command`.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from engine.contract.errors import CommandError
from engine.contract.event_models import finite
from engine.contract.line_tail import MAX_LINE_BYTES, LineTail, decode_json

# A peak LR above this is a typo (1e308 would overflow the optimizer step); AdamW runs use < 1e-2.
MAX_LR = 10.0
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class _Args(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class NoArgs(_Args):
    pass


class SetLrArgs(_Args):
    lr: Annotated[
        float,
        Field(
            gt=0,
            le=MAX_LR,
            description=f"a finite number in (0, {MAX_LR:g}]: the new peak LR; the schedule keeps its shape",
        ),
        AfterValidator(finite),
    ]


class ProfileArgs(_Args):
    steps: Annotated[
        int, Field(ge=1, le=1000, description="an integer from 1 to 1000: steps to record with torch.profiler")
    ]


class _Command(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    time: Annotated[float, AfterValidator(finite)] | None = None


class Pause(_Command):
    cmd: Literal["pause"] = "pause"
    args: NoArgs = NoArgs()


class Resume(_Command):
    cmd: Literal["resume"] = "resume"
    args: NoArgs = NoArgs()


class Stop(_Command):
    cmd: Literal["stop"] = "stop"
    args: NoArgs = NoArgs()


class SaveCheckpoint(_Command):
    cmd: Literal["save_checkpoint"] = "save_checkpoint"
    args: NoArgs = NoArgs()


class SetLr(_Command):
    cmd: Literal["set_lr"] = "set_lr"
    args: SetLrArgs


class Profile(_Command):
    cmd: Literal["profile"] = "profile"
    args: ProfileArgs


Command: TypeAlias = Pause | Resume | Stop | SaveCheckpoint | SetLr | Profile
COMMAND_MODELS: dict[str, type[_Command]] = {
    str(model.model_fields["cmd"].default): model for model in (Pause, Resume, Stop, SaveCheckpoint, SetLr, Profile)
}
_ARGS: dict[str, type[_Args]] = {
    name: cast(type[_Args], model.model_fields["args"].annotation) for name, model in COMMAND_MODELS.items()
}
# Command name -> the arguments it takes and what each accepts (the CLI's choices and help).
COMMANDS: dict[str, dict[str, str]] = {
    name: {arg: info.description or "" for arg, info in args.model_fields.items()} for name, args in _ARGS.items()
}
_ANY_COMMAND: TypeAdapter[Command] = TypeAdapter(Annotated[Command, Field(discriminator="cmd")])


def parse_command(record: Any) -> Command:
    """A decoded inbox line as its typed command; CommandError naming what is wrong."""
    if type(record) is not dict:
        raise CommandError("a command must be a JSON object")
    cmd = record.get("cmd")
    if type(cmd) is not str or cmd not in COMMAND_MODELS:
        shown = repr(cmd) if type(cmd) is str and len(cmd) <= 40 else f"of type {type(cmd).__name__}"
        raise CommandError(f"unknown command {shown}; known: {', '.join(COMMAND_MODELS)}")
    args = record.get("args") or {}
    if type(args) is not dict:
        raise CommandError(f"{cmd}: 'args' must be an object")
    takes = COMMANDS[cmd]
    unknown = [str(a)[:40] for a in args if a not in takes]
    if unknown:
        raise CommandError(f"{cmd}: unknown argument(s) {sorted(unknown)}; takes {sorted(takes) or 'none'}")
    missing = sorted(set(takes) - set(args))
    if missing:
        raise CommandError(f"{cmd}: missing argument(s) {missing}")
    try:
        return _ANY_COMMAND.validate_python({**record, "args": args})
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = [str(p) for p in error["loc"][1:]]
        if loc[:1] == ["args"] and len(loc) > 1:
            name = loc[1]
            shown = repr(args.get(name))
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise CommandError(f"{cmd}: {name}={shown} is not valid; expected {takes[name]}") from None
        raise CommandError(f"{cmd}: {'.'.join(loc)}: {error['msg']}") from None


def validate_command(record: Any) -> tuple[str, dict[str, Any]]:
    """Return (cmd, args) of a valid command or raise CommandError naming what is wrong."""
    command = parse_command(record)
    return command.cmd, command.args.model_dump()


def send_command(run_dir: str | os.PathLike[str], cmd: str, **args: Any) -> str:
    """Append a command to the run's inbox and return its id.

    Validated here too so a typo fails at the caller, not only in an ack.
    An exclusive lock keeps concurrent senders (GUI and CLI) from interleaving.
    """
    command_id = uuid.uuid4().hex[:12]
    record = {"id": command_id, "cmd": cmd, "args": args, "time": time.time()}
    parse_command(record)
    path = Path(run_dir) / "control.jsonl"
    untrusted = _writable_by_others(path)
    if untrusted:
        raise CommandError(f"{path} is {untrusted}: the run would refuse commands from it; chmod go-w it first")
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return command_id


def _refusal(reason: str, record: Any = None) -> dict[str, Any]:
    """An inbox line that cannot be applied, as the record the engine acknowledges as refused."""
    fields = record if type(record) is dict else {}
    id_, cmd = fields.get("id"), fields.get("cmd")
    return {
        "id": id_ if type(id_) is str and len(id_) <= 64 else None,
        "cmd": cmd if type(cmd) is str and len(cmd) <= 40 else None,
        "malformed": reason,
    }


def _writable_by_others(path: Path) -> str | None:
    """Why a file may hold lines from someone other than its owner (None when it cannot)."""
    try:
        info = path.stat()
    except OSError:
        return None
    if info.st_uid != os.geteuid():
        return f"owned by uid {info.st_uid}"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"mode {stat.filemode(info.st_mode)}"
    return None


class ControlInbox:
    """Engine side: the inbox's lines not answered yet, each a valid command or a refusal.

    A valid command comes as ``{"id", "cmd", "args"}`` (args checked); any
    other line as ``{"id", "cmd", "malformed": reason}`` with the id and cmd
    only where they are strings, for a ``refused`` ack. ``answered`` holds the
    ids already acknowledged in the run's events, so a restarted engine
    neither loses a command sent while it was down nor applies one twice; an
    id used again later is refused. A command sent before ``started`` (the
    launch of this run: a command queued to a finished run) is refused, so it
    never outlives the run it was sent to.
    """

    def __init__(self, path: str | os.PathLike[str], answered: set[str] | None = None, started: float | None = None):
        self._tail = LineTail(Path(path))
        self._answered = set(answered or ())
        self._seen: set[str] = set()
        self.started = started

    def poll(self) -> list[dict[str, Any]]:
        records = []
        lines = self._tail.read_lines()
        untrusted = _writable_by_others(self._tail.path) if lines else None
        for line in lines:
            if not line.strip():
                continue
            record = self._read(line)
            if record is not None and untrusted:
                # Anyone could have written it: refuse, naming the fix, rather than obey another user.
                why = f"{self._tail.path} is {untrusted}: other users could have written this line"
                record = _refusal(f"{why}; make it the run owner's alone (chmod go-w) to steer", record)
            if record is not None:
                records.append(record)
        return records

    def _read(self, line: bytes) -> dict[str, Any] | None:
        if len(line) > MAX_LINE_BYTES:
            return _refusal(f"line longer than {MAX_LINE_BYTES} bytes")
        try:
            value = decode_json(line)
        except ValueError:
            return _refusal(f"not a JSON object: {line[:200].decode('utf-8', 'replace')!r}")
        if type(value) is not dict:
            return _refusal(f"not a JSON object: {line[:200].decode('utf-8', 'replace')!r}")
        command_id = value.get("id")
        if type(command_id) is str and command_id in self._answered:
            return None  # answered before this engine started: the original, not a copy
        try:
            command = parse_command(value)
        except CommandError as exc:
            return _refusal(str(exc), value)
        if command.id in self._seen:
            return _refusal(f"id {command.id!r} was already used by an earlier command; each needs a new id", value)
        self._seen.add(command.id)
        if self.started is not None and command.time is not None and command.time < self.started:
            sent = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(command.time))
            return _refusal(f"sent at {sent}, before this run started; not applied", value)
        return {"id": command.id, "cmd": command.cmd, "args": command.args.model_dump()}
