"""Incremental reading of an append-only file of JSON lines (``events.jsonl``, ``control.jsonl``):
complete lines only, a partial last line kept for later, hostile lengths refused, a replaced file
read again from the start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

# A line longer than this is refused before it is parsed: no event the engine writes comes near it
# (a run_start with the whole config is a few KB), and parsing a hostile megabyte line costs memory.
MAX_LINE_BYTES = 1 << 20
# orjson parses a line about 3.5x faster than the json module, which is what lets a window keep up
# with tens of thousands of events a second. It rejects NaN/Infinity, which the writer writes on
# purpose, and invalid UTF-8: those lines (rare) go to the json module, which accepts both.
FAST_DECODE = orjson.loads
FAST_ERROR = orjson.JSONDecodeError
_DECODE = json.JSONDecoder().decode


def decode_json(line: bytes) -> Any:
    """One line's JSON value; ValueError when it is not JSON (or too deep for a reader to walk)."""
    try:
        return FAST_DECODE(line)
    except FAST_ERROR:
        try:
            return _DECODE(line.decode("utf-8", "replace"))
        except RecursionError:
            raise ValueError("nested too deeply") from None


@dataclass
class LineTail:
    """Incremental reader of an append-only file of lines.

    ``read_lines()`` returns the complete lines added since the last call, at
    most ``max_bytes`` of them when given (a GUI opening a run of millions of
    lines reads it in slices and stays responsive; ``behind`` says how much is
    still waiting). A partial last line (the writer is mid-write) is kept
    until its newline arrives; one longer than :data:`MAX_LINE_BYTES` is
    dropped. A file that shrinks (replaced or truncated) is read again from
    the start, and ``restarted`` says so until the next read.
    """

    path: Path
    offset: int = 0
    size_seen: int = 0
    restarted: bool = False
    lines_read: int = 0
    block_first_line: int = 0  # the number of the first line the last read returned
    _partial: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def behind(self) -> int:
        """Bytes known to be waiting after the last read (from the last stat)."""
        return max(0, self.size_seen - self.offset)

    def read_lines(self, max_bytes: int | None = None) -> list[bytes]:
        complete = self.read_block(max_bytes)
        return [] if complete is None else self._split(complete)

    def read_block(self, max_bytes: int | None = None) -> bytes | None:
        """What ``read_lines`` reads, as one chunk of complete lines without its last newline (None: no
        complete line), for a caller that splits it elsewhere."""
        self.restarted = False
        size = self._size()
        if size is None:
            return None
        if size < self.offset:
            self.offset, self._partial, self.restarted, self.lines_read = 0, b"", True, 0
        self.size_seen = size
        if size == self.offset:
            return None
        end = size if max_bytes is None else min(size, self.offset + max(1, max_bytes))
        chunk = self._read(self.offset, end - self.offset)
        self.offset += len(chunk)
        if len(self._partial) > MAX_LINE_BYTES:  # a line with no end in sight: drop it, keep reading
            self._partial = b"x" * (MAX_LINE_BYTES + 1)
        complete, newline, self._partial = (self._partial + chunk).rpartition(b"\n")
        if not newline:
            return None
        self.block_first_line = self.lines_read + 1  # after a restart is noticed, counted in the new file
        self.lines_read += complete.count(b"\n") + 1
        return complete

    def _size(self) -> int | None:
        """The file's size now; None while it does not exist (a subclass may read it elsewhere)."""
        try:
            return self.path.stat().st_size
        except OSError:
            return None

    def _read(self, offset: int, size: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def _split(self, complete: bytes) -> list[bytes]:
        """The lines of a chunk of complete lines (a subclass may pick only some)."""
        return complete.split(b"\n")
