"""The selected sample's metrics next to its round's mean and the corpus reference (mean ± std, and how
many standard deviations away), under a line on the round's quality and why invalid tokens are invalid."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from PySide6 import QtCore, QtGui, QtWidgets

from gui.models.samples import SampleItem, SampleModel
from gui.theme import Theme

METRIC_ROWS = 3  # rows of the metric table kept in view
ROUND, CORPUS = 2, 3  # the columns that give way, the corpus first (z still says how far from it, in colour)
# The app's header padding, less on the sides: a column's width is mostly its header's in a side dock.
TIGHT_HEADER = "QHeaderView::section { padding: 3px 4px; }"


class ColumnFit(QtCore.QObject):
    """Hides the columns of ``give_way``, in that order, until the rest fit the view's width whole, so that a
    narrow dock shows fewer columns uncut instead of eliding them all or scrolling sideways (a 1280x720 window's
    side dock is 355 px); each hidden column's values are in its neighbours' tooltips. Fits again whenever the
    view's width changes, and on :meth:`fit` after its contents do."""

    def __init__(self, view: QtWidgets.QTableView | QtWidgets.QTreeView, give_way: Sequence[int]):
        super().__init__(view)
        self.view, self.give_way = view, tuple(give_way)
        view.viewport().installEventFilter(self)

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if event.type() == QtCore.QEvent.Type.Resize:
            self.fit()
        return False

    def fit(self) -> None:
        view = self.view
        header = view.horizontalHeader() if isinstance(view, QtWidgets.QTableView) else view.header()
        for column in self.give_way:
            view.setColumnHidden(column, False)
        shown = list(range(header.count()))
        room = view.viewport().width()
        bar = view.verticalScrollBar()
        if not bar.isVisible():  # rows added since may bring it in
            room -= bar.sizeHint().width()
        for column in self.give_way:
            if sum(max(view.sizeHintForColumn(c), header.sectionSizeHint(c)) for c in shown) <= room:
                break
            view.setColumnHidden(column, True)
            shown.remove(column)


class SampleMetricsView(QtWidgets.QWidget):
    def __init__(self, model: SampleModel, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.model = model
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.title = QtWidgets.QLabel()
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        # Why the shown sample's tokens are invalid (the engine's first syntax error).
        self.syntax_label = QtWidgets.QLabel()
        self.syntax_label.setWordWrap(True)
        self.syntax_label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.syntax_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.syntax_label.hide()
        layout.addWidget(self.syntax_label)
        self.table = QtWidgets.QTableWidget(0, 5)
        for c, (label, tip) in enumerate(
            (
                ("Metric", ""),
                ("Sample", "This sample's value"),
                ("Round", "The mean over the round's samples"),
                ("Corpus mean ± std", "The corpus reference: mean ± standard deviation"),
                ("z", "Standard deviations from the corpus mean"),
            )
        ):
            heading = QtWidgets.QTableWidgetItem(label)
            if tip:
                heading.setToolTip(tip)
            self.table.setHorizontalHeaderItem(c, heading)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        # Every column as wide as its contents, the metric names first of all (a stretched name column was what
        # gave way in a narrow dock, down to "et…"); a narrow dock scrolls sideways, a wide one leaves space.
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        header.setStyleSheet(TIGHT_HEADER)
        self.fit = ColumnFit(self.table, (CORPUS, ROUND))
        layout.addWidget(self.table)
        # A few metrics stay in view under the piano roll however low the dock (the roll gives way first).
        self.table.setMinimumHeight(self._table_height())

    def apply_theme(self, theme: Theme) -> None:
        self.syntax_label.setStyleSheet(f"color: {theme.state_colors['failed']};")

    def _table_height(self) -> int:
        table = self.table
        return (
            table.horizontalHeader().sizeHint().height()
            + METRIC_ROWS * table.verticalHeader().defaultSectionSize()
            + table.horizontalScrollBar().sizeHint().height()
            + 2 * table.frameWidth()
        )

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.table.minimumHeight() != self._table_height():  # a style sheet set since changes the rows' height
            self.table.setMinimumHeight(self._table_height())

    def show_sample(self, sample: SampleItem | None) -> None:
        self._title(sample)
        why = syntax_text(sample) if sample is not None and sample.syntax_ok is False else ""
        self.syntax_label.setText(why)
        self.syntax_label.setVisible(bool(why))
        rows = self.model.metric_rows(sample) if sample is not None else []
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            ref = (
                ""
                if row.ref_mean is None
                else f"{row.ref_mean:.3f}" + ("" if row.ref_std is None else f" ± {row.ref_std:.3f}")
            )
            cells = [
                row.name.replace("_", " "),
                _fmt(row.value),
                _fmt(row.round_mean),
                ref,
                "" if row.z is None else f"{row.z:+.2f}",
            ]
            items = [QtWidgets.QTableWidgetItem(text) for text in cells]
            items[0].setToolTip(row.name)
            for item in items[1:]:
                item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
            # What the columns that give way in a narrow dock say, where the remaining ones are pointed at.
            compared = f"round mean {cells[2] or 'none'}; corpus {ref or 'none'}"
            items[1].setToolTip(f"{row.name}: {cells[1] or 'none'}; {compared}")
            if row.z is not None:
                color = "#15803d" if abs(row.z) < 1 else "#d97706" if abs(row.z) < 2 else "#dc2626"
                items[4].setForeground(QtGui.QColor(color))
                items[4].setToolTip(f"standard deviations from the corpus mean (corpus {ref})")
            for c, item in enumerate(items):
                self.table.setItem(r, c, item)
        self.fit.fit()

    def _title(self, sample: SampleItem | None) -> None:
        rnd = self.model.round_of(sample) if sample is not None else None
        title = ""
        if sample is not None and rnd is not None and rnd.quality_score is not None:
            interval = (
                f"{rnd.quality_interval[0]:.2f}-{rnd.quality_interval[1]:.2f} for {len(rnd.samples)} samples"
                if rnd.quality_interval
                else ""
            )
            # One line in a side dock: what the score means is in the tooltip.
            title = f"<b>Round quality {rnd.quality_score:.3f}</b>" + (f" ({interval})" if interval else "")
            self.title.setToolTip(
                "The round's quality: the share of sets of real held-out pieces that score no higher"
                + (f"; {interval}" if interval else "")
            )
            if sample.copied_from:
                title += f"<br>{sample.copied:.0%} of this sample's 2-bar passages are in the training set, "
                title += f"most from {html.escape(sample.copied_from)}"
        elif sample is not None and not self.model.reference():
            title = "No corpus reference yet (the engine sends it with its sampling rounds)."
        self.title.setText(title)
        self.title.setVisible(bool(title))


def syntax_text(sample: SampleItem) -> str:
    """Why a sample's tokens are (in)valid, in words: "invalid tokens: 3 errors; the first at token 12: ..."."""
    syntax = sample.syntax or {}
    if sample.syntax_ok is not False:
        return ""
    n = syntax.get("n_errors")
    text = "invalid tokens" + (f": {n} error{'s' if n != 1 else ''}" if isinstance(n, int) else "")
    first = syntax.get("first_error")
    if first:
        index, sep, rest = str(first).partition(": ")
        text += (
            f"; the first at token {index}: {rest}" if sep and index.lstrip("-").isdigit() else f"; the first: {first}"
        )
    validity = syntax.get("note_validity")
    if isinstance(validity, (int, float)) and not isinstance(validity, bool):
        text += f" ({validity:.0%} of notes well-formed)"
    return text


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"{value:.3f}"
