"""Rank 0's look, at a worker's start, for a few kinds of event in a run's possibly long ``events.jsonl``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.contract.events import EventReader, Record

CHUNK_BYTES = 16 << 20


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
