"""Buffers that grow a slice at a time keep exactly the data a plain list would."""

import numpy as np
import pytest

from gui.models import growable
from gui.models.growable import Growable


@pytest.mark.parametrize("seed", range(6))
def test_random_writes_truncations_and_in_place_changes_match_a_plain_copy(monkeypatch, seed):
    monkeypatch.setattr(growable, "INCREMENTAL_FROM", 16)  # every growth past 16 points is incremental
    rng = np.random.default_rng(seed)
    g = Growable(2, 4)
    ref_a: list[float] = []
    ref_b: list[float] = []
    for _ in range(600):
        op = rng.random()
        if op < 0.75:  # append, mostly
            start = len(ref_a) if rng.random() < 0.8 else int(rng.integers(0, len(ref_a) + 1))
            k = int(rng.integers(1, 40))
            a, b = rng.random(k), rng.random(k)
            g.write(start, a, b)
            ref_a[start:] = a.tolist()
            ref_b[start:] = b.tolist()
        elif op < 0.85 and ref_a:
            keep = int(rng.integers(0, len(ref_a) + 1))
            g.truncate(keep)
            del ref_a[keep:], ref_b[keep:]
        elif ref_a:
            i = int(rng.integers(0, len(ref_a)))
            g.arrays[0][i] = ref_a[i] = -1.0
            g.changed_from(i)
        assert g.n == len(ref_a)
        assert g.arrays[0][: g.n].tolist() == ref_a and g.arrays[1][: g.n].tolist() == ref_b
    assert g.capacity > 16  # it grew incrementally along the way


def test_a_full_buffer_has_its_successor_filled_so_the_growing_write_copies_nothing(monkeypatch):
    monkeypatch.setattr(growable, "INCREMENTAL_FROM", 64)
    g = Growable(1, 1024)
    for i in range(1024):
        g.write(i, np.array([float(i)]))
        if i < 7 * 1024 // 8:
            assert g._next is None  # nothing allocated before 7/8 full
    assert g._next is not None and g._moved == g.n == 1024  # already copied, slice by slice
    g.write(1024, np.array([1024.0]))
    assert g.capacity == 2048 and g.arrays[0][:1025].tolist() == [float(i) for i in range(1025)]


def test_a_buffer_that_stops_growing_lets_go_of_the_next_arrays(monkeypatch):
    monkeypatch.setattr(growable, "INCREMENTAL_FROM", 64)
    g = Growable(2, 1024)
    g.write(0, np.zeros(1000), np.zeros(1000))
    assert g._next is not None  # past 7/8: the next arrays are being filled
    g.trim()  # the run ended
    assert g._next is None and g.arrays[0][:1000].tolist() == [0.0] * 1000
    g.write(1000, np.ones(100), np.ones(100))  # and it can still grow, at once
    assert g.capacity == 2048 and g.n == 1100 and g.arrays[1][1000:1100].tolist() == [1.0] * 100
    g.truncate(500)  # a rollback far below 7/8 of the new capacity
    g.write(500, np.ones(1400), np.ones(1400))
    g.truncate(100)
    assert g._next is None
