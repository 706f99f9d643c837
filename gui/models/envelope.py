"""What a curve of any length looks like at a given width: a min/max pyramid. Qt-free.

Peak downsampling (the min and the max of each pixel column's points) keeps a
one-step spike on screen, but computed from the raw points it costs O(points
in view) on every redraw, so redraws grow slower as the run grows.
:class:`Envelope` keeps the min and max of blocks of ``FACTOR**k`` points for
every level k, updated incrementally as the series grows, so a curve's
on-screen shape for any view and width is read off the level whose blocks are
just under a pixel wide: O(pixels), whatever the length. The result is the same
min/max pairs pyqtgraph's "peak" mode draws (blocks start at the same points:
level boundaries are multiples of the block size), so the view is the same, only
cheaper.

Non-finite values are left out of the blocks (a block of only NaN is a gap);
the plots mark them separately.
"""

from __future__ import annotations

import math

import numpy as np

from gui.models.growable import Growable

FACTOR = 4
_MIN_CAPACITY = 64
_PAIRWISE_MAX = 16


class _Level:
    """Min and max of consecutive blocks of ``size`` points, in growable buffers."""

    __slots__ = ("size", "_blocks")

    def __init__(self, size: int, capacity: int):
        self.size = size
        self._blocks = Growable(2, capacity)

    @property
    def n(self) -> int:
        return self._blocks.n

    @property
    def lo(self) -> np.ndarray:
        return self._blocks.arrays[0]

    @property
    def hi(self) -> np.ndarray:
        return self._blocks.arrays[1]

    def store(self, first: int, lo: np.ndarray, hi: np.ndarray) -> None:
        """Blocks ``first``, ``first + 1``, ... are now ``lo``/``hi`` (blocks past them are gone)."""
        self._blocks.write(first, lo, hi)

    def trim(self) -> None:
        self._blocks.trim()


def _reduce(lo: np.ndarray, hi: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Min of ``lo`` and max of ``hi`` over groups of ``factor`` (the last one may be short).
    fmin/fmax skip NaN, so a group is NaN only when all of it is."""
    groups = -(-len(lo) // factor)
    pad = groups * factor - len(lo)
    if pad:
        lo = np.concatenate((lo, np.full(pad, np.nan)))
        hi = np.concatenate((hi, np.full(pad, np.nan)))
    lo, hi = lo.reshape(groups, factor), hi.reshape(groups, factor)
    if factor > _PAIRWISE_MAX:
        return np.fmin.reduce(lo, axis=1), np.fmax.reduce(hi, axis=1)
    # Column against column: numpy's reduce along a short axis runs a loop per group, 4-5x slower.
    low, high = lo[:, 0].copy(), hi[:, 0].copy()
    for i in range(1, factor):
        np.fmin(low, lo[:, i], out=low)
        np.fmax(high, hi[:, i], out=high)
    return low, high


class Envelope:
    """The min/max pyramid of one growing array of values.

    ``update(values, key)`` brings it up to date with ``values`` (the whole
    array as it is now): points past the last update are folded in, and only
    the last, partial block of each level is recomputed. A different ``key``
    (the owner's marker for "existing points changed": an out-of-order insert,
    a purge, a new smoothing weight) rebuilds it from scratch.
    """

    def __init__(self, stagger: int = 0) -> None:
        self.levels: list[_Level] = []
        self.n = 0
        self.key: object = None
        # Like Series: different start capacities, so the pyramids of series
        # growing together do not all copy their buffers in the same frame.
        self._capacity = _MIN_CAPACITY + 4 * stagger

    def trim(self) -> None:
        """No more points are coming: let go of buffers prepared for growth."""
        for level in self.levels:
            level.trim()

    def update(self, values: np.ndarray, key: object = None) -> None:
        n = len(values)
        if key != self.key or n < self.n:
            self.levels, self.n, self.key = [], 0, key
        if n == self.n:
            return
        # Points from the start of the first changed block of level 0 on.
        first = (self.n // FACTOR) if self.levels else 0
        size = FACTOR
        start = first * size
        chunk = values[start:n]
        finite = np.isfinite(chunk)
        base = chunk if finite.all() else np.where(finite, chunk, np.nan)
        lo, hi = _reduce(base, base, FACTOR)
        level = 0
        while True:
            if level == len(self.levels):
                self.levels.append(_Level(size, self._capacity))
            self.levels[level].store(first, lo, hi)
            blocks = self.levels[level].n
            if blocks <= 1:
                del self.levels[level + 1 :]
                break
            # The next level's first changed block, and this level's blocks it covers.
            first //= FACTOR
            lo = self.levels[level].lo[first * FACTOR : blocks]
            hi = self.levels[level].hi[first * FACTOR : blocks]
            lo, hi = _reduce(lo, hi, FACTOR)
            size *= FACTOR
            level += 1
        self.n = n

    def window(
        self, x: np.ndarray, values: np.ndarray, x0: float, x1: float, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The points to draw for the view ``[x0, x1]`` at ``width`` pixels.

        ``x`` is sorted and as long as ``values`` (and as the last ``update``).
        The view is widened by one point on each side so lines run to the
        edges. With at most about two points per pixel the raw points are
        returned; otherwise, per block of the coarsest level finer than a
        pixel (merged to one block per pixel), its min and max at its first
        point's x, then the very last point so the curve ends where the data does.
        """
        n = len(values)
        i0 = max(0, int(np.searchsorted(x, x0, side="left")) - 1)
        i1 = min(n, int(np.searchsorted(x, x1, side="right")) + 1)
        count = i1 - i0
        width = max(1, int(width))
        if count <= 2 * width or not self.levels:
            return x[i0:i1], values[i0:i1]
        per_pixel = count / width
        level = None
        for candidate in self.levels:
            if candidate.size <= per_pixel:
                level = candidate
        if level is None:
            return x[i0:i1], values[i0:i1]
        size = level.size
        b0, b1 = i0 // size, min(level.n, -(-i1 // size))
        lo, hi = level.lo[b0:b1], level.hi[b0:b1]
        merge = max(1, int(per_pixel // size))
        if merge > 1:
            # Merged groups start at multiples of merge*size, like a coarser level would.
            shift = b0 % merge
            if shift:
                b0 -= shift
                lo = np.concatenate((np.full(shift, np.nan), lo))
                hi = np.concatenate((np.full(shift, np.nan), hi))
            lo, hi = _reduce(lo, hi, merge)
            size *= merge
            b0 //= merge
        starts = np.minimum((b0 + np.arange(len(lo))) * size, n - 1)
        xs = np.repeat(x[starts], 2)
        ys = np.empty(2 * len(lo))
        ys[0::2] = lo
        ys[1::2] = hi
        if i1 == n and math.isfinite(float(values[-1])):
            xs = np.append(xs, x[-1])
            ys = np.append(ys, values[-1])
        return xs, ys
