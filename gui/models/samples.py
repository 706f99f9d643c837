"""Generated samples of a run, their musical metrics and the corpus reference. Qt-free.

Built from ``sample`` events, one per sampling round::

    {seconds, samples: [{path, seed, prompt, n_tokens, syntax{valid, note_validity, ...},
                         metrics{name: value}, memorization{share, piece, piece_share}}],
     metrics{name: mean}, quality_score, quality_interval[low, high], quality{name: {mean, similarity, ...}},
     reference{name: {mean, std}}}

(an older one-file form, ``{path, metrics}``, is read as a round of one).
Samples generated from the checkpoint browser join as rounds of their own,
marked ``manual``. MIDI is read with :mod:`gui.models.midi`, cached for the
few pieces a user flips between.
"""

from __future__ import annotations

import collections
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.contract.events import Record
from engine.contract.rundir import sample_metrics_path
from gui.models.midi import MidiError, Piece, read_midi

PIECE_CACHE = 8


@dataclass
class SampleItem:
    path: Path
    step: int
    index: int  # within its round
    seed: int | None = None
    prompt: Any = None
    n_tokens: int | None = None
    syntax: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    label: str = ""
    # Share of its 2-bar windows found in the training set, and the training piece it shares most with.
    copied: float | None = None
    copied_from: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.path.name

    @property
    def syntax_ok(self) -> bool | None:
        valid = self.syntax.get("valid")
        return None if valid is None else bool(valid)


@dataclass
class SampleRound:
    step: int
    time: float
    samples: list[SampleItem]
    seconds: float | None = None
    means: dict[str, float] = field(default_factory=dict)
    quality_score: float | None = None
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    manual: bool = False  # generated from the checkpoint browser, not by the training run
    source: str = ""  # for manual rounds: the checkpoint
    quality_interval: tuple[float, float] | None = None  # of quality_score, from the number of samples


@dataclass(frozen=True)
class MetricRow:
    """One metric of one sample next to its round's mean and the corpus reference."""

    name: str
    value: float | None
    round_mean: float | None
    ref_mean: float | None
    ref_std: float | None
    z: float | None  # (value - ref_mean) / ref_std
    similarity: float | None  # the round's, as the engine scored it (1 = like the corpus)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _interval(value: Any) -> tuple[float, float] | None:
    if not isinstance(value, list) or len(value) != 2:
        return None
    low, high = _num(value[0]), _num(value[1])
    return (low, high) if low is not None and high is not None and math.isfinite(low + high) else None


def _numbers(d: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in (d or {}).items() if _num(v) is not None} if isinstance(d, dict) else {}


class SampleModel:
    def __init__(self, run_dir: str | os.PathLike[str] | None = None):
        self.root: Path | None = None
        self.rounds: list[SampleRound] = []
        self.version = 0
        self._pieces: collections.OrderedDict[Path, Piece | MidiError] = collections.OrderedDict()
        # Where a sample's bytes are read: the path itself, or a local copy fetched from a remote workspace.
        self.fetch: Callable[[Path], Path] = Path
        self.set_run(run_dir)

    def set_run(self, run_dir: str | os.PathLike[str] | None) -> None:
        self.root = Path(run_dir) if run_dir else None
        self.rounds = []
        self._pieces.clear()
        self.version += 1

    # ---------------------------------------------------------------- ingest

    def resolve(self, path: Any) -> Path:
        """Paths in events are relative to the run directory (or absolute)."""
        p = Path(str(path))
        return p if p.is_absolute() or self.root is None else self.root / p

    def ingest(self, events: Iterable[Record]) -> int:
        """Add sample rounds from the run's records; returns how many were added."""
        added = 0
        for record in events:
            if record.get("type") != "sample":
                continue
            event = record if isinstance(record, dict) else record.model_dump()
            step = int(event.get("step", 0))
            items = []
            raw_samples = event.get("samples")
            if not isinstance(raw_samples, list):
                # The one-file form: the event is the sample.
                raw_samples = (
                    [{"path": event.get("path"), "metrics": event.get("metrics")}] if event.get("path") else []
                )
            for i, s in enumerate(raw_samples):
                if not isinstance(s, dict) or not s.get("path"):
                    continue
                memorization = s.get("memorization")
                if not isinstance(memorization, dict):
                    memorization = {}
                items.append(
                    SampleItem(
                        self.resolve(s["path"]),
                        step,
                        i,
                        s.get("seed"),
                        s.get("prompt"),
                        s.get("n_tokens") if isinstance(s.get("n_tokens"), int) else None,
                        dict(s.get("syntax") or {}) if isinstance(s.get("syntax"), dict) else {},
                        _numbers(s.get("metrics")),
                        copied=_num(memorization.get("share")),
                        copied_from=memorization.get("piece") if isinstance(memorization.get("piece"), str) else None,
                    )
                )
            quality = (
                {k: _numbers(v) for k, v in (event.get("quality") or {}).items() if isinstance(v, dict)}
                if isinstance(event.get("quality"), dict)
                else {}
            )
            reference = (
                {k: _numbers(v) for k, v in (event.get("reference") or {}).items() if isinstance(v, dict)}
                if isinstance(event.get("reference"), dict)
                else {}
            )
            means = _numbers(event.get("metrics"))
            if not means and items:
                means = _mean_metrics(items)
            # A round at or before rounds already here was made after a rollback or a resume: those
            # belong to a stretch of training that was undone (TensorBoard purges orphaned steps the same way).
            self.rounds = [r for r in self.rounds if r.manual or r.step < step]
            for item in items:
                self._pieces.pop(item.path, None)  # the file may have been written again
            self.rounds.append(
                SampleRound(
                    step,
                    float(event.get("time") or 0.0),
                    items,
                    _num(event.get("seconds")),
                    means,
                    _num(event.get("quality_score")),
                    quality,
                    reference,
                    quality_interval=_interval(event.get("quality_interval")),
                )
            )
            added += 1
        if added:
            self.rounds.sort(key=lambda r: (r.step, r.time))
            self.version += 1
        return added

    def add_manual(
        self,
        path: str | os.PathLike[str],
        step: int | None,
        source: str,
        seed: int | None = None,
        n_tokens: int | None = None,
    ) -> SampleItem:
        """A sample generated on request (checkpoint browser): a round of its own, without metrics."""
        item = SampleItem(Path(path), step or 0, 0, seed, None, n_tokens, {}, {}, label=Path(path).name)
        self.rounds.append(SampleRound(step or 0, time.time(), [item], manual=True, source=source))
        self.rounds.sort(key=lambda r: (r.step, r.time))
        self._pieces.pop(Path(path), None)  # regenerated over an old file: read it again
        self.version += 1
        return item

    # ---------------------------------------------------------------- queries

    def reference(self) -> dict[str, dict[str, float]]:
        """The newest non-empty corpus reference (the engine measures it once per run)."""
        for r in reversed(self.rounds):
            if r.reference:
                return r.reference
        return {}

    def round_of(self, item: SampleItem) -> SampleRound | None:
        return next((r for r in self.rounds if item in r.samples), None)

    def metric_rows(self, item: SampleItem) -> list[MetricRow]:
        rnd = self.round_of(item)
        ref = rnd.reference if rnd and rnd.reference else self.reference()
        names = list(item.metrics) + [n for n in (rnd.means if rnd else {}) if n not in item.metrics]
        names += [n for n in ref if n not in names]
        rows = []
        for name in names:
            value = item.metrics.get(name)
            stats = ref.get(name, {})
            mean, std = stats.get("mean"), stats.get("std")
            z = (value - mean) / std if value is not None and mean is not None and std and std > 0 else None
            quality = (rnd.quality.get(name) or {}) if rnd else {}
            rows.append(
                MetricRow(name, value, (rnd.means.get(name) if rnd else None), mean, std, z, quality.get("similarity"))
            )
        return rows

    # ---------------------------------------------------------------- pieces

    def _local(self, path: Path) -> Path:
        try:
            return self.fetch(path)
        except OSError as exc:  # missing on the host, or the host away: said on that sample
            raise MidiError(f"{path}: cannot fetch: {exc}") from None

    def piece(self, item: SampleItem) -> Piece:
        """The sample's notes (cached); raises :class:`MidiError` naming the file when it cannot be read.
        A sample without metrics gets them measured from its notes."""
        cached = self._pieces.get(item.path)
        if cached is None:
            try:
                cached = read_midi(self._local(item.path))
            except MidiError as exc:
                cached = exc
            self._pieces[item.path] = cached
            while len(self._pieces) > PIECE_CACHE:
                self._pieces.popitem(last=False)
        else:
            self._pieces.move_to_end(item.path)
        if isinstance(cached, MidiError):
            raise cached
        if not item.metrics:
            # A sample made from the checkpoint browser: `podium sample` measured it and left the metrics
            # beside the MIDI, so it too sits next to the corpus reference.
            item.metrics = _metrics_beside(item.path, self.fetch)
        return cached


def _metrics_beside(midi: Path, fetch: Callable[[Path], Path]) -> dict[str, float]:
    """The metrics ``podium sample`` wrote next to a MIDI file (numbers only; none when there are none)."""
    try:
        with open(fetch(sample_metrics_path(midi)), "rb") as f:
            data = json.loads(f.read(1 << 16))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if type(v) in (int, float)}


def _mean_metrics(items: list[SampleItem]) -> dict[str, float]:
    names = {n for s in items for n in s.metrics}
    out = {}
    for name in names:
        values = [s.metrics[name] for s in items if name in s.metrics and math.isfinite(s.metrics[name])]
        if values:
            out[name] = float(np.mean(values))
    return out
