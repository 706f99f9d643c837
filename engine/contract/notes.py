"""A run's name, tags and note: ``notes.json`` in the run directory, written by people, never by training.

Kept apart from ``events.jsonl`` so that editing a note never rewrites (or races with) the
engine's append-only record. Like everything in a run directory the file may be hostile:
:func:`read_notes` returns the notes or raises :class:`NotesError` naming the file and field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.contract.files import atomic_write_text

if TYPE_CHECKING:  # the model (pydantic) loads when notes are first made or read: not with the runs list
    from pydantic import ValidationError

    from engine.contract.notes_model import RunNotes

NOTES = "notes.json"
MAX_NOTES_BYTES = 256 << 10
MAX_TAGS = 50
TAG = re.compile(r"[^\s,]{1,64}")  # a tag is one word: tags are typed and searched as words


class NotesError(ValueError):
    pass


def notes_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / NOTES


def make_notes(name: str = "", tags: list[str] | tuple[str, ...] = (), note: str = "") -> RunNotes:
    """Notes from what a person typed, or a NotesError saying which field is wrong and what is valid."""
    from pydantic import ValidationError

    from engine.contract.notes_model import RunNotes

    try:
        return RunNotes(name=name.strip(), tags=tuple(t.strip() for t in tags if t.strip()), note=note)
    except ValidationError as exc:
        raise NotesError(_describe(exc)) from None


def read_notes(run_dir: str | os.PathLike[str]) -> RunNotes | None:
    """The run's notes; None when it has none; NotesError naming the file and the field when they are bad."""
    path = notes_path(run_dir)
    try:
        if not path.is_file() or path.is_symlink():
            if path.exists() or path.is_symlink():
                raise NotesError(f"{path}: not a regular file")
            return None
        with open(path, "rb") as f:
            data = f.read(MAX_NOTES_BYTES + 1)
    except OSError as exc:
        raise NotesError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_notes(data, str(path))


def parse_notes(data: bytes, where: str) -> RunNotes:
    """Notes from a notes.json's bytes however they were read (on a server: through its access), or a
    NotesError naming ``where`` and the field."""
    if len(data) > MAX_NOTES_BYTES:
        raise NotesError(f"{where}: larger than {MAX_NOTES_BYTES >> 10} KiB")
    from pydantic import ValidationError

    from engine.contract.notes_model import RunNotes

    try:
        return RunNotes.model_validate_json(data)
    except ValidationError as exc:
        raise NotesError(f"{where}: {_describe(exc)}") from None


def write_notes(run_dir: str | os.PathLike[str], notes: RunNotes) -> Path:
    """Replace the run's notes atomically (a reader sees the old file or the new one, never half of one).

    The file gets the umask's mode, like the run's other files: colleagues who share the folder read
    the notes. Only ``control.jsonl`` is the owner's alone, since whoever writes it steers the run.
    """
    path = notes_path(run_dir)
    atomic_write_text(path, notes.model_dump_json(indent=1))
    return path


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "file"
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def __getattr__(name: str) -> Any:
    if name == "RunNotes":
        from engine.contract.notes_model import RunNotes

        return RunNotes
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
