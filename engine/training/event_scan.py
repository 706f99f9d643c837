"""Rank 0's look, at a worker's start, for a few kinds of event in a run's possibly long ``events.jsonl``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.contract.event_models import MAX_STEP
from engine.contract.events import EventReader, Record
from engine.contract.line_tail import MAX_LINE_BYTES

CHUNK_BYTES = 16 << 20
# The head every line the engine writes starts with (EventWriter: json.dumps of v, type, time, step first).
_HEAD = re.compile(rb'^\{"v": \d+, "type": "([a-z_]+)", "time": [^,\n]+, "step": (\d{1,18})[,}]', re.MULTILINE)


def events_of_type(path: Path, type_name: str) -> list[Record]:
    """The valid events of one type, in file order; lines that are not valid events are skipped, as everywhere.

    Only lines that hold the quoted name are split out, decoded and validated: a long run's millions of
    metrics would otherwise cost tens of seconds at every start, the other ranks waiting. A line that names
    the type in another field is decoded and dropped; one that spells the type with JSON escapes is not an
    event this engine wrote, and is missed.
    """
    reader = _LinesNaming(path, marker=f'"{type_name}"'.encode())
    found: list[Record] = []
    while True:
        found += [e for e in reader.read_new(CHUNK_BYTES) if e["type"] == type_name]
        if not reader.behind:
            return found


@dataclass
class _LinesNaming(EventReader):
    """An event reader that picks, from each chunk, only the lines holding ``marker`` (searched at C speed)."""

    marker: bytes = field(kw_only=True)

    def _split(self, complete: bytes) -> list[bytes]:
        picked = []
        at = complete.find(self.marker)
        while at >= 0:
            start = complete.rfind(b"\n", 0, at) + 1
            end = complete.find(b"\n", at)
            end = len(complete) if end < 0 else end
            picked.append(complete[start:end])
            at = complete.find(self.marker, end)
        return picked


def last_attempt_step(path: Path, chunk_bytes: int = CHUNK_BYTES) -> int:
    """The furthest step recorded since the file's last ``run_start`` (0 without one).

    Read back from the end a chunk at a time, each line's step taken from the head the engine writes, not
    by decoding it: the failed attempt's millions of metrics would cost seconds at every restart, the other
    ranks waiting. A line written some other way is not counted, so this is a lower bound.
    """
    best = 0
    try:
        f = open(path, "rb")
    except OSError:
        return 0
    with f:
        end = f.seek(0, os.SEEK_END)
        carry = b""  # the first, possibly partial, line of the chunk after this one
        while end > 0:
            start = max(0, end - chunk_bytes)
            f.seek(start)
            chunk = f.read(end - start) + carry
            carry = b""
            if start > 0:
                cut = chunk.find(b"\n") + 1
                carry, chunk = chunk[:cut] if cut else chunk, chunk[cut:] if cut else b""
                if len(carry) > MAX_LINE_BYTES + 1:  # no event is this long: not kept, however far it goes back
                    carry = b"\n"
            for head in reversed(list(_HEAD.finditer(chunk))):
                if int(head[2]) <= MAX_STEP:  # as the event model: a larger step is no event's
                    best = max(best, int(head[2]))
                if head[1] == b"run_start":
                    return best
            end = start
    return best
