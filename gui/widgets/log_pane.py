"""The Log pane: engine.log as it grows, with a search box and filters by level and by rank."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from gui.models.log_lines import LEVELS, LogLine, LogLines, accepts, classify

LEVEL_CHOICES = {"All levels": "INFO", "Warnings and errors": "WARNING", "Errors": "ERROR"}
ALL_SOURCES = "All ranks"
COLORS = {"ERROR": "#dc2626", "WARNING": "#d97706"}  # as the Events pane's


def mono_font() -> QtGui.QFont:
    font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
    font.setPointSize(max(8, font.pointSize() - 1))
    return font


class _LevelColors(QtGui.QSyntaxHighlighter):
    """Errors red, warnings amber; a traceback's lines carry on from the line before (its block state)."""

    def highlightBlock(self, text: str) -> None:
        _source, level, in_traceback = classify(text, self.previousBlockState() == 1)
        self.setCurrentBlockState(1 if in_traceback else 0)
        color = COLORS.get(level)
        if color:
            self.setFormat(0, len(text), QtGui.QColor(color))


class LogView(QtWidgets.QWidget):
    """engine.log as it grows; follows the end unless the user scrolled up. Typing in the search box or
    choosing a level or a rank shows only the lines that match."""

    MAX_SHOWN = 5000  # lines in the text view; the model keeps more, for searching

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.model = LogLines()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        bar = QtWidgets.QHBoxLayout()
        self.search = QtWidgets.QLineEdit()
        self.search.setPlaceholderText("Search the log")
        self.search.setClearButtonEnabled(True)
        self.level = QtWidgets.QComboBox()
        self.level.addItems(list(LEVEL_CHOICES))
        self.source = QtWidgets.QComboBox()
        self.source.addItem(ALL_SOURCES)
        self.source.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.count = QtWidgets.QLabel()
        self.count.setObjectName("muted")
        bar.addWidget(self.search, 1)
        bar.addWidget(self.level)
        bar.addWidget(self.source)
        bar.addWidget(self.count)
        layout.addLayout(bar)
        self.text = QtWidgets.QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(self.MAX_SHOWN)
        self.text.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(mono_font())
        self.text.setPlaceholderText("engine.log of the open run appears here: every rank's output and the launcher's.")
        self._colors = _LevelColors(self.text.document())
        layout.addWidget(self.text, 1)
        # Each keystroke re-filters up to 20,000 lines: wait for a pause in typing.
        self._refilter_timer = QtCore.QTimer(self, singleShot=True, interval=150)
        self._refilter_timer.timeout.connect(self.refilter)
        self.search.textChanged.connect(self._refilter_timer.start)
        self.level.currentTextChanged.connect(self.refilter)
        self.source.currentTextChanged.connect(self.refilter)
        self._shown = 0

    # ------------------------------------------------------------------ feeding

    def clear(self) -> None:
        self.model.clear()
        self.text.clear()
        self.source.blockSignals(True)
        self.source.clear()
        self.source.addItem(ALL_SOURCES)
        self.source.blockSignals(False)
        self._shown = 0
        self._show_count()

    def append_lines(self, lines: list[str]) -> None:
        if not lines:
            return
        added = self.model.add(lines)
        for source in self.model.sources:
            if self.source.findText(source) < 0:
                self.source.addItem(source)
        shown = [line.text for line in added if self._accepts(line)]
        if shown:
            bar = self.text.verticalScrollBar()
            follow = bar.value() >= bar.maximum() - 4
            across = self.text.horizontalScrollBar().value()
            self.text.appendPlainText("\n".join(shown[-self.MAX_SHOWN :]))
            self._shown += len(shown)
            if follow:
                bar.setValue(bar.maximum())
            # Appending puts the cursor at the end of a long line and scrolls there: the lines' starts (rank,
            # level) would go out of view.
            self.text.horizontalScrollBar().setValue(across)
        self._show_count()

    def toPlainText(self) -> str:
        return self.text.toPlainText()

    # ---------------------------------------------------------------- filtering

    @property
    def filtering(self) -> bool:
        return bool(self.search.text()) or self.level.currentIndex() > 0 or self.source.currentIndex() > 0

    def _accepts(self, line: LogLine) -> bool:
        source = self.source.currentText()
        return accepts(
            line,
            LEVEL_CHOICES.get(self.level.currentText(), LEVELS[-1]),
            None if source in ("", ALL_SOURCES) else source,
            self.search.text().strip(),
        )

    def refilter(self) -> None:
        self._refilter_timer.stop()
        shown = [line.text for line in self.model.lines if self._accepts(line)]
        self.text.setPlainText("\n".join(shown[-self.MAX_SHOWN :]))
        self._shown = len(shown)
        bar = self.text.verticalScrollBar()
        bar.setValue(bar.maximum())
        self.text.horizontalScrollBar().setValue(0)
        self._show_count()

    def _show_count(self) -> None:
        total = len(self.model.lines)
        self.count.setText(f"{self._shown:,} of {total:,} lines" if self.filtering else f"{total:,} lines")
