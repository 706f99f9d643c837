"""A hyperparameter study as the study panel shows it. Qt-free.

The data comes as the snapshot ``engine.contract.studies.snapshot`` makes (the same JSON
``main.py hpo show --json`` prints). :class:`JournalSource` makes it in this
process from the study's journal file: Optuna's JournalStorage reads only the
lines added since the last call, and importing Optuna loads neither torch nor
SQLAlchemy (tests/gui/test_study_panel.py checks). The model takes any such
dict, so a study in a database (``--storage postgresql://...``) could be fed
from ``hpo show --json`` in a child process; the panel reads journals only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.contract.studies import JOURNAL, study_dir

if TYPE_CHECKING:
    import optuna

TERMINAL = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class TrialRow:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None
    params: dict[str, Any]
    run_dir: Path | None
    reason: str | None
    duration_s: float | None
    steps: np.ndarray = field(repr=False)  # intermediate values: steps ...
    values: np.ndarray = field(repr=False)  # ... and the metric there (NaN where it was not finite)

    @classmethod
    def from_snapshot(cls, t: dict[str, Any]) -> TrialRow:
        inter = t.get("intermediate") or []
        return cls(
            number=int(t["number"]),
            state=str(t["state"]),
            value=t.get("value"),
            params=dict(t.get("params") or {}),
            run_dir=Path(t["run_dir"]) if t.get("run_dir") else None,
            reason=t.get("reason"),
            duration_s=t.get("duration_s"),
            steps=np.array([s for s, _ in inter], dtype=float),
            values=np.array([np.nan if v is None else v for _, v in inter], dtype=float),
        )


@dataclass
class ParallelData:
    """Parallel coordinates: one column per parameter and one for the metric, each scaled to [0, 1]."""

    axes: list[str]
    lines: np.ndarray  # (trials, axes)
    values: np.ndarray  # the metric per line, for its colour
    numbers: list[int]
    labels: list[tuple[str, str]]  # (bottom, top) label per axis


class StudyModel:
    """Trials and what the plots draw from them. ``update`` reports whether anything changed."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.name: str | None = None
        self.direction = "minimize"
        self.metric = "value"
        self.space: dict[str, dict[str, Any]] = {}
        self.target: int | None = None
        self.best: dict[str, Any] | None = None
        self.trials: list[TrialRow] = []
        self.revision = 0
        self._digest: str | None = None

    def update(self, snap: dict[str, Any] | None) -> bool:
        if snap is None:
            changed = self.name is not None
            self.clear()
            return changed
        # Durations of running trials grow every poll; leave them out of what counts as a change.
        digest = json.dumps(
            [
                snap.get("best"),
                snap.get("target"),
                [
                    (t["number"], t["state"], t.get("value"), t.get("intermediate"), t.get("reason"))
                    for t in snap.get("trials", [])
                ],
            ],
            sort_keys=True,
            default=str,
        )
        changed = digest != self._digest or snap.get("study") != self.name
        self.name = snap.get("study")
        self.direction = snap.get("direction", "minimize")
        self.metric = snap.get("metric") or "value"
        self.space = snap.get("space") or {}
        self.target = snap.get("target")
        self.best = snap.get("best")
        self.trials = [TrialRow.from_snapshot(t) for t in snap.get("trials", [])]
        if changed:
            self._digest = digest
            self.revision += 1
        return changed

    # ---- summaries

    @property
    def param_names(self) -> list[str]:
        names = list(self.space)
        for t in self.trials:
            names += [k for k in t.params if k not in names]
        return names

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    @property
    def running(self) -> bool:
        return any(t.state == "RUNNING" for t in self.trials)

    def complete_count(self) -> int:
        return sum(1 for t in self.trials if t.state == "COMPLETE")

    def summary(self) -> str:
        if self.name is None:
            return "no study"
        counts = self.counts()
        done = sum(counts.get(s, 0) for s in TERMINAL)
        parts = [f"{done}/{self.target or '?'} trials done"]
        for state in ("RUNNING", "WAITING", "PRUNED", "FAIL"):
            if counts.get(state):
                parts.append(f"{counts[state]} {state.lower()}")
        if self.best:
            parts.append(f"best {self.metric} {self.best['value']:.4g} (trial {self.best['number']})")
        return " · ".join(parts)

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "minimize" else a > b

    # ---- plot data

    def history(self) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
        """(trial numbers, values, states) of trials with a value, and the best value so far at each."""
        rows = [(t, t.value) for t in self.trials if t.value is not None and t.state in ("COMPLETE", "PRUNED")]
        numbers = np.array([t.number for t, _ in rows], dtype=float)
        values = np.array([value for _, value in rows], dtype=float)
        best = np.full(len(rows), np.nan)
        current: float | None = None
        for i, (t, value) in enumerate(rows):
            if t.state == "COMPLETE" and (current is None or self.better(value, current)):
                current = value
            best[i] = np.nan if current is None else current
        return numbers, values, [t.state for t, _ in rows], best

    def parallel(self) -> ParallelData:
        """Complete trials across every parameter, scaled by the space's bounds (log axes in log)."""
        rows = [(t.number, t.params, t.value) for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        return parallel_data(self.param_names, self.space, self.metric, rows)


def parallel_data(
    names: list[str],
    space: dict[str, dict[str, Any]],
    metric: str,
    rows: list[tuple[int, dict[str, Any], float]],
) -> ParallelData:
    """Parallel coordinates of ``rows`` (number, parameters, metric value): each axis scaled to [0, 1] by
    its ``space`` entry (bounds, log, choices), else by the values' own range."""
    lines = np.full((len(rows), len(names) + 1), np.nan)
    labels: list[tuple[str, str]] = []
    for j, name in enumerate(names):
        column = [params.get(name) for _, params, _ in rows]
        scaled, label = _scale_axis(space.get(name, {}), column)
        lines[:, j] = scaled
        labels.append(label)
    values = np.array([value for _, _, value in rows], dtype=float)
    if len(values):
        low, high = float(values.min()), float(values.max())
        lines[:, -1] = (values - low) / (high - low) if high > low else 0.5
        labels.append((f"{low:.4g}", f"{high:.4g}"))
    else:
        labels.append(("", ""))
    return ParallelData(
        axes=names + [metric], lines=lines, values=values, numbers=[n for n, _, _ in rows], labels=labels
    )


def _scale_axis(spec: dict[str, Any], column: list[Any]) -> tuple[np.ndarray, tuple[str, str]]:
    if spec.get("type") == "categorical" or any(isinstance(v, str) for v in column if v is not None):
        choices = list(spec.get("choices") or sorted({str(v) for v in column}, key=str))
        index = {str(c): i for i, c in enumerate(choices)}
        span = max(len(choices) - 1, 1)
        scaled = np.array([index.get(str(v), np.nan) / span for v in column], dtype=float)
        return scaled, (str(choices[0]) if choices else "", str(choices[-1]) if choices else "")
    numbers = np.array([np.nan if v is None else float(v) for v in column], dtype=float)
    low = spec.get("low", np.nanmin(numbers) if len(numbers) else 0.0)
    high = spec.get("high", np.nanmax(numbers) if len(numbers) else 1.0)
    if spec.get("log") and low > 0:
        scaled = (np.log(numbers) - math.log(low)) / (math.log(high) - math.log(low))
    else:
        scaled = (numbers - low) / (high - low) if high > low else np.full(len(numbers), 0.5)
    return scaled, (f"{low:.3g}", f"{high:.3g}")


class JournalSource:
    """Snapshots of one study from its journal file, read incrementally in this process."""

    def __init__(self, workspace: Path, study: str):
        self.study_name = study
        self.path = study_dir(workspace, study) / JOURNAL
        self._study: optuna.Study | None = None

    def read(self) -> dict[str, Any] | None:
        """The study's snapshot, or None while its journal does not hold it yet."""
        if self._study is None:
            if not self.path.exists():
                return None
            import optuna
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            try:
                self._study = optuna.load_study(
                    study_name=self.study_name, storage=JournalStorage(JournalFileBackend(str(self.path)))
                )
            except KeyError:  # the journal exists but the first worker has not created the study in it yet
                return None
        from engine.contract.studies import snapshot

        return snapshot(self._study)
