"""A quality score calibrated on real music: where a set of samples falls among sets of held-out pieces.

The pool is the held-out (validation) pieces cut into windows of the length
samples are measured at (their first ``music.reference_window_beats``), each
measured like a sample: every metric of :mod:`engine.music.metrics`
and its memorization (:mod:`engine.music.memorization`).

Raw score of a set of rows (samples or pool windows) against a pool::

    per metric m:  similarity_m = (1 - KS_m) * min(1, 2 * mean_i t_i,m) * (1 - |d_m - d_pool,m|)
    raw = mean_m similarity_m * (1 - mean memorization share)

``KS_m`` is the two-sample Kolmogorov-Smirnov statistic between the set's
values and the pool's (the largest gap between their distribution functions:
0 = same distribution, 1 = no overlap), so the spread counts: samples all at
the pool's median are not like it. ``t_i,m = 2 min(F(v), 1 - F(v))`` is sample
i's two-sided tail share in the pool (1 at the median, 0 beyond every pool
value); real music averages 1/2, hence the factor 2. It makes each sample count:
two samples far out on either side of the pool score 0, not a perfect mean.
``d`` is the share of rows on which the metric is defined. Memorization
multiplies, so a set copied from the training set scores 0 however Bach-like.

Calibrated score: the same raw score for ``draws`` random sets of as many pool
windows as there are samples, each against the rest of the pool; the
samples' score is the share of those real sets that score no higher than they
do (a percentile: 0.5 = as good as the median set of real held-out music).
The interval is the 5-95% range of that percentile over bootstrap resamples
of the samples, so it narrows as more samples are drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MEMORIZATION = "memorization"


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (scipy.stats.ks_2samp's, without its p-value)."""
    both = np.concatenate([a, b])
    cdf_a = np.searchsorted(np.sort(a), both, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), both, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def _column(rows: Sequence[Mapping[str, float]], name: str) -> np.ndarray:
    return np.array([r.get(name, math.nan) for r in rows], dtype=np.float64)


def compare(
    rows: Sequence[Mapping[str, float]], pool: Sequence[Mapping[str, float]], metrics: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per metric: the set's mean, the pool's 5/50/95% quantiles, the KS statistic, the tail share and the
    similarity (module docstring)."""
    out = {}
    for name in metrics:
        ref = _column(pool, name)
        ref = ref[np.isfinite(ref)]
        if not len(ref):
            continue  # the pool says nothing about this metric
        values = _column(rows, name)
        finite = values[np.isfinite(values)]
        defined = len(finite) / len(values) if len(values) else 0.0
        agreement = 1.0 - abs(defined - len(ref) / len(pool))
        ks = _ks(finite, ref) if len(finite) else 1.0
        ordered = np.sort(ref)
        below = np.searchsorted(ordered, finite, side="right") / len(ref)
        above = 1.0 - np.searchsorted(ordered, finite, side="left") / len(ref)
        tails = min(1.0, 2.0 * float(np.mean(2.0 * np.minimum(below, above)))) if len(finite) else 0.0
        p05, p50, p95 = np.quantile(ref, [0.05, 0.5, 0.95])
        out[name] = {
            "mean": float(finite.mean()) if len(finite) else math.nan,
            "ref_p05": float(p05),
            "ref_median": float(p50),
            "ref_p95": float(p95),
            "ks": ks,
            "tails": tails,
            "defined_frac": defined,
            "similarity": (1.0 - ks) * tails * agreement,
        }
    return out


def raw_score(
    rows: Sequence[Mapping[str, float]], pool: Sequence[Mapping[str, float]], metrics: Sequence[str]
) -> float:
    """The uncalibrated score (module docstring); NaN when nothing can be compared."""
    report = compare(rows, pool, metrics)
    if not rows or not report:
        return math.nan
    copied = _column(rows, MEMORIZATION)
    copied = copied[np.isfinite(copied)]
    return float(np.mean([r["similarity"] for r in report.values()]) * (1.0 - (copied.mean() if len(copied) else 0.0)))


def calibration(
    pool: Sequence[Mapping[str, float]], set_size: int, metrics: Sequence[str], draws: int = 200, seed: int = 0
) -> list[float]:
    """Raw scores of ``draws`` random sets of ``set_size`` pool windows, each against the rest of the pool, sorted.

    A pool with no more windows than a set (a tiny validation split) is drawn from with replacement and
    each set compared with the whole pool, which flatters real music a little.
    """
    if not pool:
        return []
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(draws):
        if len(pool) <= set_size:
            picked, rest = [pool[i] for i in rng.integers(0, len(pool), set_size)], list(pool)
        else:
            chosen = np.zeros(len(pool), dtype=bool)
            chosen[rng.choice(len(pool), set_size, replace=False)] = True
            picked = [row for row, c in zip(pool, chosen, strict=True) if c]
            rest = [row for row, c in zip(pool, chosen, strict=True) if not c]
        scores.append(raw_score(picked, rest, metrics))
    return sorted(s for s in scores if math.isfinite(s))


def percentile(score: float, calibrated: Sequence[float]) -> float:
    """Share of the calibration scores at or below ``score``; NaN without a calibration or a score."""
    if not calibrated or not math.isfinite(score):
        return math.nan
    return float(np.searchsorted(np.asarray(calibrated), score, side="right") / len(calibrated))


def calibrated_score(
    rows: Sequence[Mapping[str, float]],
    pool: Sequence[Mapping[str, float]],
    calibrated: Sequence[float],
    metrics: Sequence[str],
    resamples: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"score", "interval", "raw", "metrics"}``: the percentile among real sets, its 5-95% bootstrap interval
    over the samples, the raw score and the per-metric comparison."""
    raw = raw_score(rows, pool, metrics)
    score = percentile(raw, calibrated)
    interval = [math.nan, math.nan]
    if rows and math.isfinite(score):
        rng = np.random.default_rng(seed)
        boot = [
            percentile(raw_score([rows[i] for i in rng.integers(0, len(rows), len(rows))], pool, metrics), calibrated)
            for _ in range(resamples)
        ]
        boot = [b for b in boot if math.isfinite(b)]
        if boot:
            interval = [float(np.quantile(boot, 0.05)), float(np.quantile(boot, 0.95))]
    return {"score": score, "interval": interval, "raw": raw, "metrics": compare(rows, pool, metrics)}
