"""An events reader that parses only the event types it is asked for. Qt-free.

The panels need a handful of sparse event types (anomaly, sample, eval,
checkpoint) out of a file that is mostly ``metrics`` lines. Checking for the
type's bytes in the whole chunk before splitting out and decoding the lines
that have them skips the bulk at the speed of a substring search, so
following a run a second time costs little next to the session's own reader. Same guarantees as :class:`engine.protocol.EventReader`: a
partial last line waits for its newline, a line that is not an event is
counted in ``garbage``, a file that shrinks (replaced) is read again from the
start and ``restarted`` says so; reads are bounded by a byte budget so a big
finished run is taken in over several calls.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

_ENVELOPE = ("v", "type", "time", "step")


class TypedEventReader:
    def __init__(self, path: str | Path, types: Iterable[str]):
        self.path = Path(path)
        self.types = frozenset(types)
        # The writer uses json.dumps' default separators; compact JSON from other tools is matched too.
        self._needles = tuple(n for t in self.types for n in (f'"type": "{t}"'.encode(), f'"type":"{t}"'.encode()))
        self.offset = 0
        self.size_seen = 0
        self.garbage = 0
        self.restarted = False
        self._partial = b""

    @property
    def behind(self) -> int:
        """Bytes known to be waiting after the last read."""
        return max(0, self.size_seen - self.offset)

    def read_new(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        self.restarted = False
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:
            self.offset, self._partial, self.restarted = 0, b"", True
        self.size_seen = size
        if size == self.offset:
            return []
        end = size if max_bytes is None else min(size, self.offset + max(1, max_bytes))
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(end - self.offset)
        self.offset += len(chunk)
        complete, newline, self._partial = (self._partial + chunk).rpartition(b"\n")
        if not newline:
            return []
        out = []
        for raw in self._matching_lines(complete):
            try:
                record = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                self.garbage += 1
                continue
            if isinstance(record, dict) and all(k in record for k in _ENVELOPE) and record["type"] in self.types:
                out.append(record)
            else:
                self.garbage += 1
        return out

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
