"""Which plots the dashboard shows and in what order: the metric filter, the pinned plots, the maximised one."""

from __future__ import annotations

import re

from PySide6 import QtCore

from gui.widgets.plots.metric_plot import MetricPlot

PINNED_KEY = "plots/pinned"


class PlotFinder(QtCore.QObject):
    """The metric filter (a regular expression, like TensorBoard's tag filter), the pinned plots (kept in
    QSettings, for every workspace) and the one plot maximised, if any."""

    changed = QtCore.Signal()  # the plots to show changed: the grids are arranged again

    def __init__(self, store: QtCore.QSettings | None = None, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.store = store
        self.text = ""
        self.error = ""  # why the text is not a valid expression ("" when it is)
        self.pattern: re.Pattern[str] | None = None
        pinned = store.value(PINNED_KEY, []) if store is not None else []
        # QSettings gives a lone value back as a string, and nothing as None.
        if isinstance(pinned, str):
            pinned = [pinned]
        self.pinned: list[str] = [str(k) for k in pinned] if isinstance(pinned, (list, tuple)) else []
        self.maximised: str | None = None

    def set_filter(self, text: str) -> str:
        """Show the plots that match ``text`` (case-insensitive, anywhere in the plot's title, its key, or the
        name or label of a series in it); returns why it cannot be used, "" when it can. An invalid expression
        leaves the last valid one in force."""
        self.text = text
        try:
            pattern = re.compile(text, re.IGNORECASE) if text.strip() else None
        except re.error as exc:
            # re's first clause says it ("missing ), unterminated subpattern"): short enough to sit by the box.
            where = f" at {exc.pos + 1}" if exc.pos is not None else ""
            self.error = f"Bad regex: {exc.msg.split(', ')[0]}{where}"
            self.changed.emit()
            return self.error
        self.error = ""
        self.pattern = pattern
        self.changed.emit()
        return ""

    def matches(self, plot: MetricPlot) -> bool:
        if self.pattern is None:
            return True
        search = self.pattern.search
        return bool(
            search(plot.spec.title)
            or search(plot.spec.key)
            or any(search(c.series.name) or search(c.label) for c in plot.curves)
        )

    def order(self, plots: list[MetricPlot]) -> list[MetricPlot]:
        """``plots`` with the pinned ones first, in the order they were pinned."""
        rank = {key: i for i, key in enumerate(self.pinned)}
        return sorted(plots, key=lambda p: rank.get(p.spec.key, len(rank)))  # stable: the rest keep their order

    def is_pinned(self, key: str) -> bool:
        return key in self.pinned

    def set_pinned(self, key: str, on: bool) -> None:
        if on == self.is_pinned(key):
            return
        if on:
            self.pinned.append(key)
        else:
            self.pinned.remove(key)
        if self.store is not None:
            self.store.setValue(PINNED_KEY, list(self.pinned))
        self.changed.emit()

    def toggle_maximised(self, key: str | None) -> None:
        """Maximise the plot ``key``, or show them all again when one is maximised."""
        self.maximised = key if self.maximised is None else None
        self.changed.emit()
