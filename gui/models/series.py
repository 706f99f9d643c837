"""Metric series in growable numpy buffers, and the debiased EMA that smooths them.

A series is three parallel float64 arrays (step, seconds since the run's first
event, value) with spare capacity, so appending is amortised O(1) and plots can
hand ``setData`` views of the buffers without copying. Non-finite values are
kept as they are: a NaN loss is data the user must see, not noise to drop.
"""

from __future__ import annotations

import functools
import math
import time
import zlib

import numpy as np
import numpy.typing as npt

from gui.models.envelope import Envelope
from gui.models.growable import Growable

_MIN_CAPACITY = 256
EAGER_POINTS = 4096
DRAWN_RECENTLY_S = 0.5  # a series redrawn this recently is on screen: its redraws fold its points in


class Series:
    """One named metric of one run, ordered by step.

    ``version`` changes on every mutation (views redraw only changed series);
    ``epoch`` changes only when existing points move (an out-of-order insert or
    a purge after a restart), which is when incremental caches such as the EMA
    must start over.
    """

    __slots__ = (
        "name",
        "_columns",
        "version",
        "epoch",
        "nonfinite",
        "_envelope",
        "_bad",
        "_bad_n",
        "_bad_epoch",
        "superseded",
        "_smoothed",
        "drawn_at",
    )

    def __init__(self, name: str, capacity: int | None = None):
        self.name = name
        # The series of a run grow together; were their capacities equal their
        # small buffers would all double in the same frame. A start that
        # depends on the name spreads those copies over time (large buffers
        # grow a slice at a time: gui.models.growable).
        stagger = zlib.crc32(name.encode()) % 16
        self._columns = Growable(3, capacity or _MIN_CAPACITY + 16 * stagger)  # step, time, value
        self.version = 0
        self.epoch = 0
        self.nonfinite = 0
        self._envelope = Envelope(stagger)
        self._bad = np.empty(0, dtype=np.intp)  # indices of non-finite values among the first _bad_n
        self._bad_n = 0
        self._bad_epoch = 0
        # Stretches undone by a rollback or a resume from an earlier checkpoint, oldest first: kept
        # (drawn faded, exported marked) but out of the series proper, which stays in step order.
        self.superseded: list[Segment] = []
        self._smoothed: SmoothedView | None = None
        self.drawn_at = -math.inf  # time.monotonic() of the last redraw of a curve of it (set by the plots)

    def __len__(self) -> int:
        return self._columns.n

    @property
    def n(self) -> int:
        return self._columns.n

    @property
    def _step(self) -> np.ndarray:
        return self._columns.arrays[0]

    @property
    def _time(self) -> np.ndarray:
        return self._columns.arrays[1]

    @property
    def _value(self) -> np.ndarray:
        return self._columns.arrays[2]

    @property
    def capacity(self) -> int:
        return self._columns.capacity

    @property
    def steps(self) -> np.ndarray:
        return self._step[: self.n]

    @property
    def times(self) -> np.ndarray:
        return self._time[: self.n]

    @property
    def values(self) -> np.ndarray:
        return self._value[: self.n]

    def trim(self) -> None:
        """The series stopped growing (its run ended): no buffer keeps room being prepared for more."""
        self._columns.trim()
        self._envelope.trim()
        if self._smoothed is not None:
            self._smoothed.trim()

    def envelope_points(self) -> int:
        """How many of the points the min/max pyramid holds now (without bringing it up to date)."""
        return self._envelope.n

    def envelope(self) -> Envelope:
        """The min/max pyramid of the values, brought up to date (plots draw from it)."""
        self._envelope.update(self.values, self.epoch)
        return self._envelope

    def smoothed(self) -> SmoothedView:
        """The series' EMA, kept current as points arrive once a plot has asked for it."""
        if self._smoothed is None:
            self._smoothed = SmoothedView(self)
        return self._smoothed

    def last_step(self) -> float:
        return self._step[self.n - 1] if self.n else -math.inf

    def append(self, step: float, time: float, value: float) -> None:
        self.extend([step], [time], [value])

    def extend(self, steps: npt.ArrayLike, times: npt.ArrayLike, values: npt.ArrayLike) -> None:
        """Add points; the fast path is points that continue the series in step order."""
        v = np.asarray(values, dtype=np.float64)
        k = len(v)
        if not k:
            return
        s = np.asarray(steps, dtype=np.float64)
        t = np.asarray(times, dtype=np.float64)
        bad = int(k - np.count_nonzero(np.isfinite(v)))
        in_order = s[0] >= self.last_step() and (k == 1 or bool(np.all(s[1:] >= s[:-1])))
        self._columns.write(self.n, s, t, v)
        if not in_order:
            # Lines written out of step order (several writers, a clock
            # adjustment): keep every point and restore step order. A stable
            # sort keeps earlier-written points first among equal steps.
            order = np.argsort(self._step[: self.n], kind="stable")
            for buf in (self._step, self._time, self._value):
                buf[: self.n] = buf[: self.n][order]
            self._columns.changed_from(0)
            self.epoch += 1
        elif self.n - self._envelope.n >= EAGER_POINTS and time.monotonic() - self.drawn_at > DRAWN_RECENTLY_S:
            # Folded in as points arrive, a block at a time (each update costs a few numpy calls per level
            # whatever its size), so a redraw after a pause never pays for more than a block. A series on
            # screen is folded by its redraws instead, a frame's points at a time in the frame's budget: done
            # here too, it made each batch of a flood cost the GUI thread twice.
            self._envelope.update(self._value[: self.n], self.epoch)
            if self._smoothed is not None:
                self._smoothed.catch_up()
        self.nonfinite += bad
        self.version += 1

    def purge_after(self, step: float) -> int:
        """Drop points past ``step`` (a restart resumed there, so they were redone);
        returns how many were dropped. TensorBoard purges orphaned steps the same way."""
        keep = int(np.searchsorted(self._step[: self.n], step, side="right"))
        dropped = self.n - keep
        if dropped:
            self.nonfinite -= int(dropped - np.count_nonzero(np.isfinite(self._value[keep : self.n])))
            self._columns.truncate(keep)
            self.epoch += 1
            self.version += 1
        return dropped

    def supersede_after(self, step: float) -> int:
        """Move the points past ``step`` into a new superseded segment (training went back to
        ``step`` and redoes what follows); returns how many moved. The series continues from
        ``step`` with no line back, and ``superseded`` keeps the undone stretch."""
        keep = int(np.searchsorted(self._step[: self.n], step, side="right"))
        moved = self.n - keep
        if moved:
            segment = Segment(
                self._step[keep : self.n].copy(),
                self._time[keep : self.n].copy(),
                self._value[keep : self.n].copy(),
                len(self.superseded) + 1,
            )
            self.superseded.append(segment)
            self.nonfinite -= segment.nonfinite
            self._columns.truncate(keep)
            self.epoch += 1
            self.version += 1
        return moved

    def nonfinite_index(self) -> np.ndarray:
        """Indices of the non-finite values, kept up to date incrementally (plots ask at every redraw)."""
        if not self.nonfinite:
            return np.empty(0, dtype=np.intp)
        if self._bad_epoch != self.epoch or self._bad_n > self.n:
            self._bad, self._bad_n, self._bad_epoch = np.empty(0, dtype=np.intp), 0, self.epoch
        if self._bad_n < self.n:
            new = np.flatnonzero(~np.isfinite(self._value[self._bad_n : self.n])) + self._bad_n
            if len(new):
                self._bad = np.concatenate((self._bad, new))
            self._bad_n = self.n
        return self._bad

    def value_at(self, x: float, by: str = "step") -> tuple[int, float] | None:
        """Index and value of the point nearest to ``x`` on the step or time axis."""
        if not self.n:
            return None
        xs = self.steps if by == "step" else self.times
        i = int(np.searchsorted(xs, x))
        if i >= self.n:
            i = self.n - 1
        elif i > 0 and abs(xs[i - 1] - x) <= abs(xs[i] - x):
            i -= 1
        return i, float(self._value[i])


class Segment:
    """A stretch of a series that a rollback or restart undid: its points as they were, immutable.

    ``number`` counts the series' segments from 1 in the order they were undone.
    """

    __slots__ = ("steps", "times", "values", "number", "nonfinite", "_envelopes")

    def __init__(self, steps: np.ndarray, times: np.ndarray, values: np.ndarray, number: int):
        self.steps, self.times, self.values, self.number = steps, times, values, number
        self.nonfinite = int(len(values) - np.count_nonzero(np.isfinite(values)))
        self._envelopes: dict[float, tuple[np.ndarray, Envelope]] = {}

    def __len__(self) -> int:
        return len(self.values)

    def smoothed(self, weight: float) -> tuple[np.ndarray, Envelope]:
        """The segment's own debiased EMA for ``weight`` (raw values for 0) and its min/max pyramid,
        computed once: plots draw superseded stretches peak-downsampled like the series."""
        hit = self._envelopes.get(weight)
        if hit is None:
            values = ema(self.values, weight)[0] if weight > 0 else self.values
            envelope = Envelope()
            envelope.update(values)
            if len(self._envelopes) >= 4:
                self._envelopes.pop(next(iter(self._envelopes)))
            hit = self._envelopes[weight] = (values, envelope)
        return hit


@functools.lru_cache(maxsize=8)
def _ema_powers(w: float, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """w^-i, w^i and w^(i+1) for i < length; cached, since a live plot smooths at every redraw."""
    i = np.arange(length, dtype=np.float64)
    return w**-i, w**i, w ** (i + 1.0)


def ema(values: np.ndarray, weight: float, state: float = 0.0, count: int = 0) -> tuple[np.ndarray, float, int]:
    """Debiased exponential moving average, TensorBoard's smoothing.

    ``s_t = w s_{t-1} + (1 - w) x_t`` from ``s_0 = 0``, reported as
    ``s_t / (1 - w^n)`` where n counts the finite values seen, so the first
    points are not dragged towards zero. Non-finite inputs leave the state
    alone and come out as NaN, so gaps and NaN markers stay where they are.
    ``state``/``count`` continue a previous call; the new ones are returned.

    Vectorised in blocks of L points, O(n): within a block,
    ``s_i = w^i (1 - w) cumsum(w^-j x_j)``, with L short enough that w^-L
    stays far from overflow (the cumulative sum is dominated by its latest
    terms, so scaling back by w^i loses no precision); only the block ends
    are carried in Python. No matrix products: BLAS threads on a busy
    2-core machine made those 30x slower.
    """
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    x = values[finite]
    m = len(x)
    if m == 0:
        return out, state, count
    if weight <= 0.0:
        out[finite] = x
        return out, float(x[-1]), count + m
    w = float(weight)
    # w^-L * max|x| must stay well inside float64 (about 1e308).
    headroom = 250.0 - math.log10(max(1.0, float(np.abs(x).max())))
    length = max(1, min(m, 4096, int(headroom / -math.log10(w))))
    nblocks = -(-m // length)
    padded = np.zeros(nblocks * length)
    padded[:m] = x
    blocks = padded.reshape(nblocks, length)
    up, down, decay = _ema_powers(w, length)
    local = (1.0 - w) * down * np.cumsum(blocks * up, axis=1)  # each block's EMA from a zero state
    starts = [0.0] * nblocks
    s = state
    w_block = w**length
    for b, block_end in enumerate(local[:, -1].tolist()):  # Python floats: numpy scalars cost 10x
        starts[b] = s
        s = w_block * s + block_end
    smoothed = (local + np.array(starts)[:, None] * decay[None, :]).ravel()[:m]
    end_state = float(smoothed[-1])
    # 1 - w^n reaches 1.0 in float64 after ~37/-ln(w) points; only the
    # points before that need the correction (and computing powers is slow).
    horizon = int(math.ceil(-37.0 / math.log(w))) if w < 1.0 else m + count
    k = min(m, max(0, horizon - count))
    if k:
        smoothed[:k] /= 1.0 - w ** (count + np.arange(1, k + 1, dtype=np.float64))
    out[finite] = smoothed
    return out, end_state, count + m


class SmoothedView:
    """The EMA of one series, kept up to date incrementally.

    Appends cost only the new points; a change of weight or of the series'
    ``epoch`` (points moved) recomputes from scratch.
    """

    def __init__(self, series: Series):
        self.series = series
        self._out = Growable(1, series.capacity)
        self._n = 0
        self._state = 0.0
        self._count = 0
        self._weight: float | None = None
        self._epoch = -1
        self._envelope = Envelope(zlib.crc32(series.name.encode()) % 16)

    def values(self, weight: float) -> np.ndarray:
        s = self.series
        if weight != self._weight or s.epoch != self._epoch or s.n < self._n:
            self._n, self._state, self._count = 0, 0.0, 0
            self._weight, self._epoch = weight, s.epoch
        if s.n > self._n:
            new, self._state, self._count = ema(s.values[self._n :], weight, self._state, self._count)
            self._out.write(self._n, new)
            self._n = s.n
        return self._out.arrays[0][: s.n]

    def trim(self) -> None:
        self._out.trim()
        self._envelope.trim()

    def catch_up(self) -> None:
        """Fold in the points appended since, for the weight last drawn."""
        if self._weight is not None and self._weight > 0:
            self.envelope(self._weight)

    def envelope(self, weight: float) -> Envelope:
        """The min/max pyramid of the smoothed values for ``weight``, up to date."""
        self._envelope.update(self.values(weight), (weight, self.series.epoch))
        return self._envelope
