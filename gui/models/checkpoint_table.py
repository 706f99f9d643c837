"""The checkpoint browser's table: name, step, time, kind, size, val loss, quality, integrity."""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore

from gui.format import format_date_time, format_loss, format_size
from gui.models.checkpoints import CheckpointModel, CheckpointRow
from gui.models.table import Column, RowTableModel

INTEGRITY_COLORS = {"verified": "#15803d", "corrupt": "#dc2626", "verifying": "#6b7280", "sizes ok": "#6b7280"}


class CheckpointTable(RowTableModel[CheckpointRow]):
    def __init__(self, model: CheckpointModel, parent: QtCore.QObject | None = None):
        inf = float("inf")
        super().__init__(
            [
                Column("Name", self._name, sort=lambda r: r.name),
                Column("Step", lambda r: "" if r.step is None else f"{r.step:,}", sort=_step_key, right=True),
                Column("Time", lambda r: format_date_time(r.time), sort=lambda r: r.time or 0.0),
                Column("Kind", _kind_text, sort=lambda r: r.kind or ""),
                Column("Size", lambda r: format_size(r.size), sort=lambda r: r.size or 0, right=True),
                Column(
                    "Val loss",
                    lambda r: format_loss(r.val_loss),
                    sort=lambda r: r.val_loss if r.val_loss is not None else inf,
                    right=True,
                ),
                Column(
                    "Quality",
                    lambda r: "" if r.quality is None else f"{r.quality:.3f}",
                    sort=lambda r: r.quality if r.quality is not None else -inf,
                    right=True,
                ),
                Column(
                    "Integrity",
                    lambda r: r.integrity_text(),
                    sort=lambda r: r.integrity,
                    color=lambda r: INTEGRITY_COLORS.get(r.integrity, "#6b7280"),
                ),
            ],
            parent,
        )
        self.model = model
        self.protected: dict[Path, str] = {}

    def reload(self) -> None:
        self.protected = self.model.protected()
        self.set_rows(self.model.rows)

    def _name(self, row: CheckpointRow) -> str:
        name = f"averages/{row.name}" if row.source == "average" else row.name
        return f"{name} · kept" if row.path in self.protected else name

    def bold(self, row: CheckpointRow, column: Column[CheckpointRow]) -> bool:
        return column.title == "Name" and (row.integrity == "corrupt" or row.path in self.protected)

    def tooltip(self, row: CheckpointRow) -> str:
        lines = [str(row.path)]
        if row.path in self.protected:
            lines.append(f"kept: {self.protected[row.path]}")
        if row.integrity == "corrupt":
            lines.append(f"corrupt: {row.problem}")
        if row.reason:
            lines.append(f"saved because: {row.reason}")
        shown = {k: v for k, v in row.metrics.items() if k != "step"}
        if shown:
            lines.append(
                "metrics: "
                + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
            )
        if row.provenance:
            lines.append(f"{row.provenance.get('method', '?')} average of: {row.inputs_text()}")
        return "\n".join(lines)


def _step_key(row: CheckpointRow) -> int:
    return row.step if row.step is not None else -1


def _kind_text(row: CheckpointRow) -> str:
    if row.kind is None:
        return ""
    text = row.kind + (f" {row.weights_dtype}" if row.weights_dtype and row.weights_dtype != "fp32" else "")
    if row.provenance:
        used = sum(1 for i in row.provenance.get("inputs") or [] if i.get("used", True))
        text += f" · {row.provenance.get('method', '?')} avg of {used}"
    elif row.reason:
        text += f" · {row.reason}"
    return text
