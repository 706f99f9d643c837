"""The corpus reference and how close a set of samples comes to it: per-metric statistics of real
pieces (:func:`reference_stats`) and one quality score in [0, 1] (:func:`quality_score`).

Plain numpy, no torch and no Qt. The metrics themselves are :mod:`engine.music.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.music.metrics import DURATION, METRICS, START, as_notes, compute_all, crop_windows


def reference_stats(
    pieces: Iterable[Any],
    resolution: int = 8,
    beats_per_bar: float | Sequence[float] = 4.0,
    window_beats: float | None = None,
) -> dict[str, dict[str, float]]:
    """Per-metric ``{"mean", "std", "n", "defined_frac"}`` over reference pieces (the validation split).

    NaN values (a metric undefined for a piece) are left out of mean and std;
    ``n`` counts the pieces that had a value, ``defined_frac`` is ``n`` over
    all pieces, and ``mean``/``std`` are NaN when ``n`` is 0. ``std`` is the
    population standard deviation. ``beats_per_bar`` is one bar length for
    all pieces or one per piece (a corpus mixes 3/4 and 4/4). With
    ``window_beats`` each piece is first cut by :func:`bar_windows` into the
    windows of whole bars, the nearest to ``window_beats``, that it fills, so
    the reference has the length samples are measured at.

    Measure the reference on what the samples go through: validation pieces
    tokenized and decoded back to a Score. A REMI stream with programs merges
    voices that share a program into one track, so voice-based metrics
    (voice crossing, intervals) only compare like with like after the same
    round trip. The result is plain JSON-serialisable data: compute it once
    and cache it.
    """
    rows: list[dict[str, float]] = []
    for index, piece in enumerate(pieces):
        bar = float(beats_per_bar if isinstance(beats_per_bar, (int, float)) else beats_per_bar[index])
        rows.extend(compute_all(p, resolution, bar) for p in bar_windows(piece, bar, window_beats))
    return summarize(rows)


def bar_windows(notes: Any, beats_per_bar: float, window_beats: float | None) -> list[np.ndarray]:
    """``notes`` cut by :func:`crop_windows` into the windows of whole bars (:func:`window_length`) that the
    piece fills; the whole piece when ``window_beats`` is None or the piece is shorter than one window.

    A piece's last window is left out when it is short by a bar or more (a closing bar or two alone):
    samples are measured on a whole window (:func:`opening_window`), and pitch range and pitches used grow
    with length, so a short tail would be a different measurement.
    """
    notes = as_notes(notes)
    if not window_beats:
        return [notes]
    if len(notes) == 0:
        return []
    length = window_length(beats_per_bar, window_beats)
    windows = crop_windows(notes, length)
    end = float((notes[:, START] + notes[:, DURATION]).max())
    index = np.unique(np.floor(notes[:, START] / length).astype(int))
    filled = [w for w, i in zip(windows, index, strict=True) if end > (i + 1) * length - beats_per_bar + 1e-9]
    return filled or [notes]


def window_length(beats_per_bar: float, window_beats: float) -> float:
    """The whole bars nearest to ``window_beats``, in beats (at least one bar)."""
    return max(1, round(window_beats / beats_per_bar)) * beats_per_bar


def opening_window(notes: Any, beats_per_bar: float, window_beats: float | None) -> np.ndarray:
    """A sample's first :func:`window_length` beats (notes cut at its end), measured like a held-out window
    of :func:`bar_windows`; the whole sample when ``window_beats`` is None or the sample is shorter."""
    notes = as_notes(notes)
    if not window_beats:
        return notes
    length = window_length(beats_per_bar, window_beats)
    kept = notes[notes[:, START] < length].copy()
    kept[:, DURATION] = np.minimum(kept[:, DURATION], length - kept[:, START])
    return kept


def summarize(rows: Sequence[Mapping[str, float]], names: Iterable[str] = METRICS) -> dict[str, dict[str, float]]:
    """Per-metric ``{"mean", "std", "n", "defined_frac"}`` of rows of metrics (see :func:`reference_stats`)."""
    out = {}
    for name in names:
        values = np.array([r.get(name, math.nan) for r in rows], dtype=np.float64)
        values = values[np.isfinite(values)]
        n = len(values)
        out[name] = {
            "mean": float(values.mean()) if n else math.nan,
            "std": float(values.std()) if n else math.nan,
            "n": n,
            "defined_frac": n / len(rows) if rows else math.nan,
        }
    return out


def quality_report(
    sample_metrics: Sequence[Mapping[str, float]],
    reference: Mapping[str, Mapping[str, float]],
    metrics: Iterable[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Per-metric comparison of a set of samples with the reference; see :func:`quality_score`.

    For each metric: ``mean`` (over samples with a finite value), ``z`` (signed
    distance of that mean from the reference mean, in reference standard
    deviations), ``defined_frac`` (share of samples with a value) and
    ``similarity`` in [0, 1].
    """
    names = [m for m in (metrics if metrics is not None else reference) if m in reference]
    out = {}
    for name in names:
        ref = reference[name]
        if not ref.get("n") or not math.isfinite(ref["mean"]):
            continue  # the reference says nothing about this metric
        values = np.array([s.get(name, math.nan) for s in sample_metrics], dtype=np.float64)
        finite = values[np.isfinite(values)]
        defined = len(finite) / len(values) if len(values) else 0.0
        if len(finite) == 0:
            out[name] = {"mean": math.nan, "z": math.nan, "defined_frac": defined, "similarity": 0.0}
            continue
        # A floor keeps a metric that never varies in the reference (std 0)
        # from turning a rounding difference into an infinite distance.
        scale = max(float(ref["std"]), 1e-3 * max(1.0, abs(float(ref["mean"]))))
        mean = float(finite.mean())
        z = (mean - float(ref["mean"])) / scale
        # A hand-written reference without defined_frac means "always defined".
        agreement = 1.0 - abs(defined - float(ref.get("defined_frac", 1.0)))
        out[name] = {"mean": mean, "z": z, "defined_frac": defined, "similarity": agreement / (1.0 + abs(z))}
    return out


def quality_score(
    sample_metrics: Sequence[Mapping[str, float]],
    reference: Mapping[str, Mapping[str, float]],
    metrics: Iterable[str] | None = None,
) -> float:
    """How close a set of samples is to the reference, in [0, 1]; 1 = indistinguishable on average.

    Definition: for each metric ``m`` the reference has (or each of
    ``metrics``), ``z_m = (mean over samples with a value - reference mean) /
    reference std`` (the std floored at 1e-3 of the mean, so a metric that
    never varies in the reference gives a large but finite z) and
    ``similarity_m = (1 - |d_m - d_ref,m|) / (1 + |z_m|)``, where ``d`` is the
    share of pieces on which ``m`` is defined (an empty sample has no scale
    consistency while every chorale has one: that counts against it). The score is the
    mean of ``similarity_m`` over metrics: 1 when the samples' means and
    defined shares equal the reference's, 0.5 when the samples sit one
    reference standard deviation off on every metric, 0.25 at three. ``1/(1+|z|)``
    rather than a Gaussian so the score still moves while a young model is
    many deviations away. It compares means, not spreads: diversity is
    watched by the metrics themselves (repetition, entropy). NaN when no
    metric can be compared (empty reference or no samples).
    """
    if not sample_metrics:
        return math.nan
    report = quality_report(sample_metrics, reference, metrics)
    if not report:
        return math.nan
    return float(np.mean([r["similarity"] for r in report.values()]))
