"""Following the run's log; events are read with the engine's own :class:`engine.contract.events.EventReader`."""

from __future__ import annotations

import collections
from pathlib import Path


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
