"""A YAML code editor: highlighting, line numbers, and problem lines marked (tint, underline, gutter dot, tooltip).

The config editor and the study panel's search-space editor are both this widget; each attaches a
:class:`YamlHighlighter` and hands :meth:`CodeEditor.set_problems` what its validator found.
"""

from __future__ import annotations

import re

from PySide6 import QtCore, QtGui, QtWidgets

from gui.models.config_doc import Problem
from gui.theme import LIGHT, Theme

ERROR_COLOR = "#dc2626"
WARNING_COLOR = "#d97706"


class YamlHighlighter(QtGui.QSyntaxHighlighter):
    """Keys (sections bold), strings, numbers, booleans/null and comments."""

    _KEY = re.compile(r"^(\s*)(-\s+)?([^\s#:'\"][^#:]*?|'[^']*'|\"[^\"]*\")\s*:(?=\s|$)")
    _STRING = re.compile(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"")
    _NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d[\d_]*\.?\d*(?:[eE][-+]?\d+)?|\.\d+|\.inf|\.nan)(?![\w.])", re.I)
    _WORD = re.compile(r"(?<![\w.])(?:true|false|yes|no|on|off|null|~)(?![\w.])", re.I)
    _COMMENT = re.compile(r"(?:^|\s)(#.*)$")

    def __init__(self, document: QtGui.QTextDocument, theme: Theme = LIGHT):
        super().__init__(document)
        self.set_theme(theme)

    def set_theme(self, theme: Theme) -> None:
        dark = theme.name == "dark"

        def fmt(color: str, bold: bool = False, italic: bool = False) -> QtGui.QTextCharFormat:
            f = QtGui.QTextCharFormat()
            f.setForeground(QtGui.QColor(color))
            if bold:
                f.setFontWeight(QtGui.QFont.Weight.Bold)
            f.setFontItalic(italic)
            return f

        self.formats = {
            "section": fmt("#93c5fd" if dark else "#1d4ed8", bold=True),
            "key": fmt("#7dd3fc" if dark else "#0369a1"),
            "string": fmt("#86efac" if dark else "#15803d"),
            "number": fmt("#fdba74" if dark else "#b45309"),
            "word": fmt("#c4b5fd" if dark else "#7c3aed", bold=True),
            "comment": fmt("#9ca3af" if dark else "#6b7280", italic=True),
        }
        self.rehighlight()

    def highlightBlock(self, text: str) -> None:
        comment = self._COMMENT.search(_mask_strings(text))
        code_end = comment.start(1) if comment else len(text)
        code = text[:code_end]
        key = self._KEY.match(code)
        value_from = 0
        if key:
            kind = "section" if not key.group(1) and not key.group(2) else "key"
            self.setFormat(key.start(3), key.end(3) - key.start(3), self.formats[kind])
            value_from = key.end()
        rest = code[value_from:]
        for regex, kind in ((self._NUMBER, "number"), (self._WORD, "word"), (self._STRING, "string")):
            for m in regex.finditer(rest):
                self.setFormat(value_from + m.start(), m.end() - m.start(), self.formats[kind])
        if comment:
            self.setFormat(code_end, len(text) - code_end, self.formats["comment"])


def _mask_strings(text: str) -> str:
    """The line with quoted strings blanked, so a # inside quotes is not taken for a comment."""
    return YamlHighlighter._STRING.sub(lambda m: " " * len(m.group(0)), text)


class _Gutter(QtWidgets.QWidget):
    def __init__(self, editor: CodeEditor):
        super().__init__(editor)
        self.editor = editor

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(self.editor.gutter_width(), 0)

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        self.editor.paint_gutter(event)


class CodeEditor(QtWidgets.QPlainTextEdit):
    """A plain-text editor with line numbers and problem lines marked (underline, tint, gutter dot, tooltip)."""

    def __init__(self, theme: Theme = LIGHT, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.theme = theme
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        self.setFont(font)
        self.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        self.setTabChangesFocus(False)
        self.problems: dict[int, list[Problem]] = {}
        self.gutter = _Gutter(self)
        self.blockCountChanged.connect(self._update_margin)
        self.updateRequest.connect(self._update_gutter)
        self._update_margin()

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.gutter.update()

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        # YAML forbids tabs for indentation: a Tab key inserts two spaces.
        if event.key() == QtCore.Qt.Key.Key_Tab and not event.modifiers():
            self.insertPlainText("  ")
            return
        super().keyPressEvent(event)

    def gutter_width(self) -> int:
        digits = len(str(max(1, self.blockCount())))
        return 14 + self.fontMetrics().horizontalAdvance("9") * max(digits, 2)

    def _update_margin(self, *_args) -> None:
        self.setViewportMargins(self.gutter_width(), 0, 0, 0)

    def _update_gutter(self, rect: QtCore.QRect, dy: int) -> None:
        if dy:
            self.gutter.scroll(0, dy)
        else:
            self.gutter.update(0, rect.y(), self.gutter.width(), rect.height())

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        cr = self.contentsRect()
        self.gutter.setGeometry(QtCore.QRect(cr.left(), cr.top(), self.gutter_width(), cr.height()))

    def paint_gutter(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self.gutter)
        # Theme colours, not the palette's: the window's style sheet does not reach the palette.
        background = QtGui.QColor(self.theme.plot_bg).darker(106 if self.theme.name == "light" else 85)
        painter.fillRect(event.rect(), background)
        block = self.firstVisibleBlock()
        number = block.blockNumber()
        top = round(self.blockBoundingGeometry(block).translated(self.contentOffset()).top())
        height = round(self.blockBoundingRect(block).height())
        muted = QtGui.QColor(self.theme.muted)
        while block.isValid() and top <= event.rect().bottom():
            if block.isVisible() and top + height >= event.rect().top():
                problems = self.problems.get(number + 1)
                if problems:
                    color = ERROR_COLOR if any(p.severity == "error" for p in problems) else WARNING_COLOR
                    painter.setPen(QtCore.Qt.PenStyle.NoPen)
                    painter.setBrush(QtGui.QColor(color))
                    painter.drawEllipse(QtCore.QPointF(5, top + height / 2), 3, 3)
                    painter.setPen(QtGui.QColor(color))
                else:
                    painter.setPen(muted)
                painter.drawText(
                    0, top, self.gutter.width() - 4, height, QtCore.Qt.AlignmentFlag.AlignRight, str(number + 1)
                )
            block = block.next()
            top += height
            height = round(self.blockBoundingRect(block).height())
            number += 1

    def set_problems(self, problems: list[Problem]) -> None:
        self.problems = {}
        for p in problems:
            if p.line:
                self.problems.setdefault(p.line, []).append(p)
        selections = []
        doc = self.document()
        for line, items in self.problems.items():
            block = doc.findBlockByNumber(line - 1)
            if not block.isValid():
                continue
            error = any(p.severity == "error" for p in items)
            color = QtGui.QColor(ERROR_COLOR if error else WARNING_COLOR)
            tint = QtWidgets.QTextEdit.ExtraSelection()
            background = QtGui.QColor(color)
            background.setAlpha(28)
            tint.format.setBackground(background)
            tint.format.setProperty(QtGui.QTextFormat.Property.FullWidthSelection, True)
            tint.cursor = QtGui.QTextCursor(block)
            selections.append(tint)
            wave = QtWidgets.QTextEdit.ExtraSelection()
            wave.format.setUnderlineStyle(QtGui.QTextCharFormat.UnderlineStyle.WaveUnderline)
            wave.format.setUnderlineColor(color)
            cursor = QtGui.QTextCursor(block)
            text = block.text()
            cursor.movePosition(QtGui.QTextCursor.MoveOperation.Right, n=len(text) - len(text.lstrip()))
            cursor.movePosition(QtGui.QTextCursor.MoveOperation.EndOfBlock, QtGui.QTextCursor.MoveMode.KeepAnchor)
            wave.cursor = cursor
            selections.append(wave)
        self.setExtraSelections(selections)
        self.gutter.update()

    def event(self, event: QtCore.QEvent) -> bool:
        if event.type() == QtCore.QEvent.Type.ToolTip and isinstance(event, QtGui.QHelpEvent):
            cursor = self.cursorForPosition(self.viewport().mapFromGlobal(event.globalPos()))
            items = self.problems.get(cursor.blockNumber() + 1)
            if items:
                QtWidgets.QToolTip.showText(event.globalPos(), "\n".join(p.message for p in items), self)
            else:
                QtWidgets.QToolTip.hideText()
            return True
        return super().event(event)

    def go_to_line(self, line: int) -> None:
        block = self.document().findBlockByNumber(max(0, line - 1))
        cursor = QtGui.QTextCursor(block)
        text = block.text()
        cursor.movePosition(QtGui.QTextCursor.MoveOperation.Right, n=len(text) - len(text.lstrip()))
        self.setTextCursor(cursor)
        self.centerCursor()
        self.setFocus()

    def replace_text(self, new: str) -> None:
        """Apply ``new`` as one edit of the changed middle only: undo, the cursor and the scroll survive."""
        old = self.toPlainText()
        if new == old:
            return
        start = 0
        limit = min(len(old), len(new))
        while start < limit and old[start] == new[start]:
            start += 1
        end_old, end_new = len(old), len(new)
        while end_old > start and end_new > start and old[end_old - 1] == new[end_new - 1]:
            end_old -= 1
            end_new -= 1
        cursor = QtGui.QTextCursor(self.document())
        cursor.beginEditBlock()
        cursor.setPosition(start)
        cursor.setPosition(end_old, QtGui.QTextCursor.MoveMode.KeepAnchor)
        cursor.insertText(new[start:end_new])
        cursor.endEditBlock()
