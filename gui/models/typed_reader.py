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

import re
from collections.abc import Iterable
from pathlib import Path

from engine.contract.events import Record
from gui.access import RunAccess
from gui.models.reader import AccessEventReader


class TypedEventReader(AccessEventReader):
    def __init__(self, path: str | Path, types: Iterable[str], access: RunAccess | None = None):
        super().__init__(Path(path), access=access)
        self.types = frozenset(types)
        # The writer uses json.dumps' default separators; compact JSON from other tools is matched too. One
        # pattern, one pass: a needle per type and separator made a pass each, 3-4x the time with the GIL held.
        names = b"|".join(re.escape(t.encode()) for t in sorted(self.types))
        self._pattern = re.compile(rb'"type": ?"(?:' + names + rb')"')

    def read_new(self, max_bytes: int | None = None) -> list[Record]:
        # Only some lines are decoded, so a rejection's line number is not known (0).
        records = self.decode_lines(self.read_lines(max_bytes))
        # A match can be inside another event's payload: that event is not one of ours.
        return [r for r in records if r["type"] in self.types]

    def _split(self, complete: bytes) -> list[bytes]:
        """The lines of ``complete`` that contain a wanted type, in file order. The pattern is searched in
        the whole chunk (C speed), so the bulk of lines is never split or looked at from Python."""
        lines = []
        end = -1
        for match in self._pattern.finditer(complete):
            if match.start() < end:
                continue  # a second match on a line already taken
            start = complete.rfind(b"\n", 0, match.start()) + 1
            end = complete.find(b"\n", match.start())
            if end < 0:
                end = len(complete)
            lines.append(complete[start:end])
        return lines
