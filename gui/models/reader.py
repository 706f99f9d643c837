"""Bounded incremental readers for the run directory's append-only files.

The engine's :class:`EventReader` reads everything new at once; the GUI must
also stay responsive while it opens a finished run of millions of lines, so
these readers take a byte budget per call and report whether more is waiting.
"""
from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

from engine.protocol import EventReader

_DECODER = json.JSONDecoder()  # NaN/Infinity accepted, as the writer writes them


class BoundedEventReader(EventReader):
    """An :class:`EventReader` whose ``read_new`` reads at most ``max_bytes``.

    Keeps the parent's guarantees: a partial last line waits for its newline,
    garbage lines are counted in ``garbage``, a file that shrinks is re-read.
    """

    def __init__(self, path: str | Path):
        super().__init__(Path(path))
        self.size_seen = 0

    @property
    def behind(self) -> int:
        """Bytes known to be waiting after the last read (from the last stat)."""
        return max(0, self.size_seen - self.offset)

    def read_new(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self.offset, self._partial = 0, b""
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
        # The parent's rules (a JSON object with v/type/time/step, else
        # garbage), in one loop over one decoded string: json.loads on bytes
        # sniffs the encoding of every line, which cost a third of the time.
        decode = _DECODER.decode
        out = []
        for line in complete.decode("utf-8", "replace").split("\n"):
            if not line or line.isspace():
                continue
            try:
                record = decode(line)
            except ValueError:
                self.garbage += 1
                continue
            if type(record) is dict and "v" in record and "type" in record and "time" in record and "step" in record:
                out.append(record)
            else:
                self.garbage += 1
        return out


class TextTail:
    """Follows a growing text file (``engine.log``) line by line.

    Undecodable bytes are replaced rather than dropped; the last ``keep``
    lines are remembered so a failed run can show how it ended.
    """

    def __init__(self, path: str | Path, keep: int = 200):
        self.path = Path(path)
        self.offset = 0
        self._partial = b""
        self.last_lines: collections.deque[str] = collections.deque(maxlen=keep)

    def read_new(self, max_bytes: int = 1 << 20) -> list[str]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self.offset, self._partial = 0, b""
        if size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(min(size - self.offset, max_bytes))
        self.offset += len(chunk)
        parts = (self._partial + chunk).split(b"\n")
        self._partial = parts.pop()
        # A progress bar rewrites its line with \r; show only its final state.
        lines = [p.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1] for p in parts]
        self.last_lines.extend(lines)
        return lines

    def flush_partial(self) -> list[str]:
        """The unterminated last line, once the writer is known to be gone."""
        if not self._partial:
            return []
        line = self._partial.decode("utf-8", "replace").rstrip("\r")
        self._partial = b""
        self.last_lines.append(line)
        return [line]
