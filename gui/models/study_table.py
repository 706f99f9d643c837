"""The trials table of a study: number, state, value, each parameter, duration, run or reason."""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6 import QtCore

from gui.format import format_duration_coarse, format_param
from gui.models.study_model import StudyModel, TrialRow
from gui.models.table import Column, RowTableModel
from gui.theme import Theme

STATE_NAMES = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}
STATE_THEME = {
    "COMPLETE": "finished",
    "PRUNED": "paused",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "preparing",
}


class TrialsTableModel(RowTableModel[TrialRow]):
    """The trials of a StudyModel: number, state, value, each parameter, duration, run or reason."""

    def __init__(self, study: StudyModel, theme: Theme, parent: QtCore.QObject | None = None):
        super().__init__(parent=parent)
        self.study = study
        self.theme = theme

    def refresh(self) -> None:
        params = [Column(name, _param_text(name)) for name in self.study.param_names]
        self.set_rows(
            self.study.trials,
            [
                Column("#", lambda t: str(t.number), sort=lambda t: t.number, right=True),
                Column("State", _state_name, color=self._state_color),
                Column(
                    self.study.metric,
                    lambda t: "" if t.value is None else f"{t.value:.5g}",
                    sort=lambda t: math.inf if t.value is None else t.value,
                    right=True,
                ),
                *params,
                Column(
                    "Time",
                    lambda t: "" if t.duration_s is None else format_duration_coarse(t.duration_s),
                    sort=lambda t: t.duration_s or 0.0,
                    right=True,
                ),
                Column("Run / reason", _run_or_reason),
            ],
        )

    def recolor(self) -> None:
        """Paint the rows again (the theme, and with it the state colours, changed)."""
        if self.rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(self.columns) - 1))

    def _state_color(self, trial: TrialRow) -> str:
        return str(self.theme.state_colors.get(STATE_THEME.get(trial.state, ""), self.theme.fg))

    def bold(self, trial: TrialRow, column: Column[TrialRow]) -> bool:
        best = self.study.best
        if not best:
            return False
        return bool(trial.number == best["number"])

    def tooltip(self, trial: TrialRow) -> str:
        lines = [f"trial {trial.number}: {STATE_NAMES.get(trial.state, trial.state)}"]
        if trial.run_dir:
            lines.append(f"run: {trial.run_dir}")
        if trial.reason:
            lines.append(trial.reason)
        return "\n".join(lines)


def _param_text(name: str) -> Callable[[TrialRow], str]:
    return lambda trial: format_param(trial.params.get(name))


def _state_name(trial: TrialRow) -> str:
    return STATE_NAMES.get(trial.state, trial.state.lower())


def _run_or_reason(trial: TrialRow) -> str:
    if trial.state in ("FAIL", "PRUNED") and trial.reason:
        return trial.reason
    return trial.run_dir.name if trial.run_dir else ""
