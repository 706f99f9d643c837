"""An events reader that parses only the event types it is asked for. Qt-free.

The panels and the runs list need a handful of sparse event types (anomaly, sample,
checkpoint) out of a file that is mostly ``metrics`` lines. Checking for the
type's bytes in the whole chunk before splitting out and decoding the lines
that have them skips the bulk at the speed of a substring search, so
following a run a second time costs little next to the session's own reader.
Everything else (partial lines, garbage, replaced files, byte budgets) is
:class:`engine.contract.events.EventReader`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.contract.events import EventReader


class TypedEventReader(EventReader):
    def __init__(self, path: str | Path, types: Iterable[str]):
        super().__init__(Path(path))
        self.types = frozenset(types)
        # The writer uses json.dumps' default separators; compact JSON from other tools is matched too.
        self._needles = tuple(n for t in self.types for n in (f'"type": "{t}"'.encode(), f'"type":"{t}"'.encode()))

    def _lines(self, complete: bytes) -> list[bytes]:
        return self._matching_lines(complete)

    def _all_valid(self, records: list[Any]) -> bool:
        return super()._all_valid(records) and all(r["type"] in self.types for r in records)

    def _parse(self, line: bytes) -> dict[str, Any] | None:
        record = super()._parse(line)
        if record is not None and record["type"] not in self.types:
            self.garbage += 1  # the needle matched inside another event's payload
            return None
        return record

    def _matching_lines(self, data: bytes) -> list[bytes]:
        """The lines of ``data`` that contain a wanted type, in file order. The needles are searched in
        the whole chunk (C speed), so the bulk of lines is never split or looked at from Python."""
        starts: set[int] = set()
        for needle in self._needles:
            at = data.find(needle)
            while at >= 0:
                start = data.rfind(b"\n", 0, at) + 1
                starts.add(start)
                end = data.find(b"\n", at)
                at = data.find(needle, end) if end >= 0 else -1
        lines = []
        for start in sorted(starts):
            end = data.find(b"\n", start)
            lines.append(data[start:] if end < 0 else data[start:end])
        return lines
