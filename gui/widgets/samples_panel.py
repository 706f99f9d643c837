"""Samples you can see and hear: generated pieces by step, their metrics against the corpus, a piano roll, audio.

Left, the sampling rounds by step (quality score, samples, syntax validity)
and the samples of each; right, the selected sample's piano roll and its
metrics (:mod:`gui.widgets.sample_metrics`). Play, Export WAV and Export MIDI
are :mod:`gui.widgets.sample_audio`'s.

Mount it as a dock::

    self.samples = SamplesPanel(SampleModel(), self.theme)
    self._dock("Samples", "samples", self.samples, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from engine.contract.events import Record
from gui.models.audio import Player
from gui.models.midi import MidiError
from gui.models.samples import SampleItem, SampleModel, SampleRound
from gui.theme import LIGHT, Theme
from gui.widgets.piano_roll import PianoRoll
from gui.widgets.sample_audio import SampleAudio
from gui.widgets.sample_metrics import TIGHT_HEADER, ColumnFit, SampleMetricsView, syntax_text

ITEM_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
NARROW_PX = 760  # below this width the samples list sits above the piano roll
TOKENS, COPIED = 2, 4  # the list's columns that give way in a narrow dock (both in the sample's tooltip)


class SamplesPanel(QtWidgets.QWidget):
    sampleSelected = QtCore.Signal(object)  # SampleItem

    def __init__(
        self,
        model: SampleModel,
        theme: Theme = LIGHT,
        parent: QtWidgets.QWidget | None = None,
        player: Player | None = None,
    ):
        super().__init__(parent)
        self.model = model
        self.theme = theme
        self.current: SampleItem | None = None
        self._picked = False  # the user chose the shown sample: new rounds do not take the view away from it
        self._reloading = False
        self._shown_version = -1
        self.roll = PianoRoll(theme)
        self.roll.voicesChanged.connect(lambda hidden: self.stop())
        self.audio = SampleAudio(self.roll, self._suggested, self, player)
        self.audio.playStarted.connect(self._keep_in_view)
        self.wavExported = self.audio.wavExported
        # The controls tests and the window reach for, under the names they have always had.
        self.player = self.audio.player
        self.play_button, self.stop_button = self.audio.play_button, self.audio.stop_button
        self.wav_button, self.midi_button = self.audio.wav_button, self.audio.midi_button
        self.status, self.audio_message = self.audio.status, self.audio.audio_message

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.audio.toolbar)
        layout.addWidget(self.audio.status)
        layout.addWidget(self.audio_message)

        split = self.split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(["Sample", "Quality", "Tokens", "Syntax", "Copied"])
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setIndentation(14)
        # Every column as wide as its contents, the sample's name first: a stretched name column was the one
        # to give way, down to "se…" in a 1280x720 window's dock. Extra width goes to the last column.
        header = self.tree.header()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        header.setStyleSheet(TIGHT_HEADER)
        self.tree_fit = ColumnFit(self.tree, (COPIED, TOKENS))
        self.tree.currentItemChanged.connect(self._current_changed)
        self.tree.itemPressed.connect(self._pressed)
        split.addWidget(self.tree)
        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(self.roll)
        self.metrics_view = SampleMetricsView(model)
        self.metrics, self.metrics_title = self.metrics_view.table, self.metrics_view.title
        self.syntax_label = self.metrics_view.syntax_label
        right.addWidget(self.metrics_view)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setSizes([380, 870])
        layout.addWidget(split, 1)
        self.apply_theme(theme)
        self.reload()

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.roll.apply_theme(theme)
        self.audio_message.setStyleSheet(f"color: {theme.state_colors['failed']};")
        self.metrics_view.apply_theme(theme)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        # In a narrow dock the list goes above the piano roll instead of squeezing it from the side.
        narrow = event.size().width() < NARROW_PX
        orientation = QtCore.Qt.Orientation.Vertical if narrow else QtCore.Qt.Orientation.Horizontal
        if self.split.orientation() != orientation:
            self.split.setOrientation(orientation)
            total = event.size().height() if narrow else event.size().width()
            self.split.setSizes([total // 4, total - total // 4] if narrow else [380, max(total - 380, 200)])

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.stop()
        super().closeEvent(event)

    # ------------------------------------------------------------------ data

    def ingest(self, events: Sequence[Record]) -> None:
        if self.model.ingest(events):
            self.reload()

    def reset(self, run_dir: Path | None) -> None:
        self.stop()
        self.model.set_run(run_dir)
        self.current = None
        self._picked = False
        self.audio.clear_messages()
        self.reload()

    def add_manual(self, path: Path, step: int, source: str, seed: int | None = None) -> SampleItem:
        item = self.model.add_manual(path, step, source, seed)
        self.reload()
        self.select(item)
        return item

    def reload(self) -> None:
        if self._shown_version == self.model.version:
            return
        self._shown_version = self.model.version
        # The newest round's first sample, unless the user picked one: a run opens on its latest samples
        # and a live run's new rounds come into view as they arrive.
        keep = self.current if self._picked else None
        self.tree.blockSignals(True)
        self.tree.clear()
        found = None
        for rnd in reversed(self.model.rounds):  # newest first
            parent = QtWidgets.QTreeWidgetItem(self._round_texts(rnd))
            count = f"{len(rnd.samples)} sample{'s' if len(rnd.samples) != 1 else ''}"
            parent.setToolTip(
                0, f"{parent.text(0)}: {count}" + (f", sampled in {rnd.seconds:.1f} s" if rnd.seconds else "")
            )
            font = parent.font(0)
            font.setBold(True)
            parent.setFont(0, font)
            for sample in rnd.samples:
                child = QtWidgets.QTreeWidgetItem(self._sample_texts(sample))
                child.setData(0, ITEM_ROLE, sample)
                texts = self._sample_texts(sample)
                facts = [f"{texts[2]} tokens" if texts[2] else "", texts[3], f"{texts[4]} copied" if texts[4] else ""]
                child.setToolTip(0, ", ".join([texts[0]] + [f for f in facts if f]) + f"\n{sample.path}")
                if sample.syntax:
                    child.setToolTip(
                        3,
                        syntax_text(sample)
                        or "token syntax: "
                        + ", ".join(
                            f"{k}={v:.0%}" if isinstance(v, float) else f"{k}={v}" for k, v in sample.syntax.items()
                        ),
                    )
                if sample.syntax_ok is False:
                    child.setForeground(3, QtGui.QColor("#dc2626"))
                if sample.copied_from:
                    child.setToolTip(
                        4, f"share of its 2-bar passages found in the training set; most from {sample.copied_from}"
                    )
                parent.addChild(child)
                if sample is keep:
                    found = child
            self.tree.addTopLevelItem(parent)
        self.tree.expandToDepth(0)
        self.tree.blockSignals(False)
        self.tree_fit.fit()
        if keep is not None and found is None:
            self._picked = False  # the picked sample's round was undone (a rollback): follow the newest again
        if found is None:
            first = self.tree.topLevelItem(0)  # None when there is no round
            if first is not None and first.childCount():
                found = first.child(0)
        if found is not None:
            self._reloading = True
            try:
                self.tree.setCurrentItem(found)
            finally:
                self._reloading = False
            if found.data(0, ITEM_ROLE) is not self.current:
                self._show(found.data(0, ITEM_ROLE))
        else:
            self._show(None)

    @staticmethod
    def _round_texts(rnd: SampleRound) -> list[str]:
        if rnd.manual:
            return [f"from {rnd.source}", "", "", "", ""]
        valid = [s.syntax_ok for s in rnd.samples if s.syntax_ok is not None]
        syntax = f"{sum(valid)}/{len(valid)} valid" if valid else ""
        copied = [s.copied for s in rnd.samples if s.copied is not None and math.isfinite(s.copied)]
        # The step alone keeps the name column narrow: the count is in the Syntax column (2/2 valid) and the tooltip.
        return [
            f"step {rnd.step:,}",
            "" if rnd.quality_score is None else f"{rnd.quality_score:.3f}",
            "",
            syntax,
            f"{sum(copied) / len(copied):.0%}" if copied else "",
        ]

    @staticmethod
    def _sample_texts(sample: SampleItem) -> list[str]:
        name = f"seed {sample.seed}" if sample.seed is not None and not sample.label else sample.name
        if sample.prompt:
            name += " (prompted)"
        syntax = {True: "valid", False: "invalid", None: ""}[sample.syntax_ok]
        copied = "" if sample.copied is None or not math.isfinite(sample.copied) else f"{sample.copied:.0%}"
        return [name, "", "" if sample.n_tokens is None else str(sample.n_tokens), syntax, copied]

    def select(self, item: SampleItem) -> bool:
        it = QtWidgets.QTreeWidgetItemIterator(self.tree)
        while it.value():
            if it.value().data(0, ITEM_ROLE) is item:
                self._picked = True
                self.tree.setCurrentItem(it.value())
                return True
            it += 1
        return False

    def _pressed(self, item: QtWidgets.QTreeWidgetItem, _column: int) -> None:
        if item.data(0, ITEM_ROLE) is not None:  # a sample, not a round
            self._picked = True

    def _current_changed(self, current: QtWidgets.QTreeWidgetItem | None, _previous) -> None:
        sample = current.data(0, ITEM_ROLE) if current is not None else None
        if sample is not None and not self._reloading:
            self._picked = True
        if sample is not None and sample is not self.current:
            self._show(sample)

    def _show(self, sample: SampleItem | None) -> None:
        self.stop()
        self.current = sample
        piece = None
        if sample is None:
            self.roll.set_piece(
                None, "", "No samples yet: the run generates them at evaluations, or generate one from a checkpoint."
            )
        else:
            try:
                piece = self.model.piece(sample)
            except MidiError as exc:
                self.roll.set_piece(None, sample.name, f"cannot read this sample: {exc}")
            else:
                self.roll.set_piece(piece, f"step {sample.step:,} · {sample.name}")
        self.audio.piece_shown(piece is not None)
        self.metrics_view.show_sample(sample)
        if sample is not None:
            self.sampleSelected.emit(sample)

    # ----------------------------------------------------------------- audio

    @property
    def busy(self) -> bool:
        """Rendering for Play, or playing."""
        return self.audio.busy

    def play(self) -> None:
        self.audio.play()

    def stop(self) -> None:
        self.audio.stop()

    def export_wav(self, path: Path) -> int | None:
        return self.audio.export_wav(path)

    def export_midi(self, path: Path) -> Path | None:
        return self.audio.export_midi(path)

    def _keep_in_view(self) -> None:
        self._picked = True  # a new round must not cut off the sample being listened to

    def _suggested(self, suffix: str) -> str:
        base = self.current.path.stem if self.current is not None else "sample"
        folder = self.current.path.parent if self.current is not None else Path.home()
        return str(folder / f"{base}{suffix}")
