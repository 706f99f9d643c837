"""Reading a run's growing files through its workspace's :class:`~gui.access.RunAccess`.

The contract's :class:`~engine.contract.events.EventReader` decodes; these readers only replace where its
bytes come from, so a run on this disk and one on a server over SSH are read alike. Offsets move only after
bytes arrived: an :class:`~gui.access.Unreachable` leaves a reader where it was, and the next read after
the workspace comes back goes on from there (nothing lost, nothing read twice).
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field

from engine.contract.events import EventReader
from gui.access import RunAccess, open_access


def _access_for(path: str | os.PathLike[str], access: RunAccess | None) -> RunAccess:
    return access if access is not None else open_access(os.path.dirname(os.path.abspath(path)))


@dataclass
class AccessEventReader(EventReader):
    """The contract's event reader, its bytes read through ``access`` (a local one when not given)."""

    access: RunAccess | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.access = _access_for(self.path, self.access)

    def _size(self) -> int | None:
        assert self.access is not None
        st = self.access.stat(str(self.path))  # Unreachable passes through: nothing has moved yet
        return None if st is None else st.size

    def _read(self, offset: int, size: int) -> bytes:
        assert self.access is not None
        return self.access.read(str(self.path), offset, size)


class TextTail:
    """Follows a growing text file (``engine.log``) line by line, through the workspace's access.

    Undecodable bytes are replaced rather than dropped; the last ``keep``
    lines are remembered so a failed run can show how it ended.
    """

    def __init__(self, path: str | os.PathLike[str], keep: int = 200, access: RunAccess | None = None):
        self.path = os.fspath(path)
        self.access = _access_for(self.path, access)
        self.offset = 0
        self._partial = b""
        self.last_lines: collections.deque[str] = collections.deque(maxlen=keep)

    def read_new(self, max_bytes: int = 1 << 20) -> list[str]:
        st = self.access.stat(self.path)
        if st is None:
            return []
        if st.size < self.offset:
            self.offset, self._partial = 0, b""
        if st.size == self.offset:
            return []
        chunk = self.access.read(self.path, self.offset, min(st.size - self.offset, max_bytes))
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
