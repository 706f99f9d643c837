"""Parallel float64 arrays that grow without a pause. Qt-free.

Doubling a buffer copies all of it at once: for the series of a flooded run
(millions of points, a dozen series growing together) that is a 20-30 ms stall
of the GUI thread each time one of them fills up. Here the next, twice as large
buffer is allocated when the current one is 7/8 full and filled a slice at a
time alongside the writes that follow: eight old points copied for every new one
written, so the copy is done by the time the current buffer is full and the swap
costs nothing. Points written meanwhile are copied too: 1/8 more copying than
doubling, and the same peak memory.
"""

from __future__ import annotations

import numpy as np

# Below this many points a copy takes microseconds: double at once.
INCREMENTAL_FROM = 1 << 16
_START = 7 / 8  # full, when the copy into the next arrays begins
_RATE = 8  # old points copied per point written: 7/8 copied in the last 1/8
# Per write, old points copied beyond _RATE times the points written, so that
# a trickle of single-point writes still finishes the copy in time.
_SLACK = 1024


class Growable:
    """``width`` parallel arrays, ``arrays[i][:n]`` the data. A write at ``start`` replaces everything from
    ``start`` on (the arrays' data end where the write ends)."""

    __slots__ = ("arrays", "n", "_next", "_moved")

    def __init__(self, width: int, capacity: int):
        self.arrays = [np.empty(capacity) for _ in range(width)]
        self.n = 0
        self._next: list[np.ndarray] | None = None  # the larger arrays being filled, once 7/8 full
        self._moved = 0  # points [0, _moved) are already in _next

    @property
    def capacity(self) -> int:
        return len(self.arrays[0])

    def write(self, start: int, *columns: np.ndarray) -> None:
        """Put ``columns`` at ``[start, start + len)``; the data now end there."""
        end = start + len(columns[0])
        if start < self._moved:
            self._moved = start
        arrays = self.arrays
        capacity = len(arrays[0])
        if end > capacity:
            self._swap(start, end)
            arrays, capacity = self.arrays, len(self.arrays[0])
        for array, column in zip(arrays, columns):
            array[start:end] = column
        self.n = end
        if self._next is not None or (capacity >= INCREMENTAL_FROM and end > _START * capacity):
            self._advance(end - start)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` points."""
        self.n = min(self.n, n)
        self._moved = min(self._moved, self.n)
        if self.n <= _START * self.capacity:
            self.trim()

    def trim(self) -> None:
        """Let go of the next arrays if they are being filled (the data stopped growing: a finished run): they
        would hold twice the capacity for nothing."""
        self._next, self._moved = None, 0

    def changed_from(self, start: int) -> None:
        """Points from ``start`` on were changed in place (through ``arrays``)."""
        self._moved = min(self._moved, start)

    def _swap(self, start: int, end: int) -> None:
        """Make room for ``end`` points, keeping ``[0, start)``: the larger arrays, with what they lack copied."""
        fresh = self._next
        if fresh is None or len(fresh[0]) < end:
            cap = max(self.capacity, 1)
            while cap < end:
                cap *= 2
            fresh, self._moved = [np.empty(cap) for _ in self.arrays], 0
        for old, new in zip(self.arrays, fresh):
            new[self._moved : start] = old[self._moved : start]
        self.arrays, self._next, self._moved = fresh, None, 0

    def _advance(self, written: int) -> None:
        """Start or continue filling the next arrays: _RATE times ``written`` old points and a little more."""
        if self._next is None:
            self._next, self._moved = [np.empty(2 * self.capacity) for _ in self.arrays], 0
        upto = min(self.n, self._moved + _RATE * written + _SLACK)
        if upto > self._moved:
            for old, new in zip(self.arrays, self._next):
                new[self._moved : upto] = old[self._moved : upto]
            self._moved = upto
