"""An events reader that decodes only the event types it is asked for. Qt-free.

The panels and the runs list need a handful of sparse event types (anomaly, sample,
checkpoint) out of a file that is mostly ``metrics`` lines. Checking for the
type's bytes in the whole chunk before splitting out and decoding the lines
that have them skips the bulk at the speed of a substring search, so
following a run a second time costs little next to the session's own reader.
Everything else (partial lines, rejected lines, replaced files, byte budgets) is
:class:`engine.contract.events.EventReader`'s, its bytes read
through the workspace's access (:class:`~gui.models.reader.AccessEventReader`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from engine.contract.events import Record
from gui.access import RunAccess
from gui.models.reader import AccessEventReader


class TypedEventReader(AccessEventReader):
    def __init__(self, path: str | Path, types: Iterable[str], access: RunAccess | None = None):
        super().__init__(Path(path), access=access)
        self.types = frozenset(types)
        # The writer uses json.dumps' default separators; compact JSON from other tools is matched too.
        self._needles = tuple(n for t in self.types for n in (f'"type": "{t}"'.encode(), f'"type":"{t}"'.encode()))

    def read_new(self, max_bytes: int | None = None) -> list[Record]:
        # Only some lines are decoded, so a rejection's line number is not known (0).
        records = self.decode_lines(self.read_lines(max_bytes))
        # A needle can match inside another event's payload: that event is not one of ours.
        return [r for r in records if r["type"] in self.types]

    def _split(self, complete: bytes) -> list[bytes]:
        """The lines of ``complete`` that contain a wanted type, in file order. The needles are searched in
        the whole chunk (C speed), so the bulk of lines is never split or looked at from Python."""
        starts: set[int] = set()
        for needle in self._needles:
            at = complete.find(needle)
            while at >= 0:
                start = complete.rfind(b"\n", 0, at) + 1
                starts.add(start)
                end = complete.find(b"\n", at)
                at = complete.find(needle, end) if end >= 0 else -1
        lines = []
        for start in sorted(starts):
            end = complete.find(b"\n", start)
            lines.append(complete[start:] if end < 0 else complete[start:end])
        return lines
