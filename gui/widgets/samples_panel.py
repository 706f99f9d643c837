"""Samples you can see and hear: generated pieces by step, their metrics against the corpus, a piano roll, audio.

Left, the sampling rounds by step (quality score, samples, syntax validity)
and the samples of each; right, the selected sample's piano roll and its
metrics next to the round's mean and the corpus reference (mean ± std, and
how many standard deviations away). Play renders the notes with our own
synthesiser (:mod:`gui.models.synth`) on a worker thread and plays them
through miniaudio (:mod:`gui.models.audio`), with a playhead on the piano
roll; where no audio output can be opened the panel says why and Export WAV
remains. Export MIDI writes the notes with :mod:`gui.models.midi` (any MIDI
reader, symusic and music21 included, reads them back).

Mount it as a dock::

    self.samples = SamplesPanel(SampleModel(), self.theme)
    self._dock("Samples", "samples", self.samples, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
"""

from __future__ import annotations

import html
import math
import threading
from collections.abc import Sequence
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from engine.contract.events import Record
from gui.models.audio import AudioError, Player
from gui.models.midi import MidiError, Piece, write_midi
from gui.models.samples import SampleItem, SampleModel, SampleRound
from gui.models.synth import SAMPLE_RATE, render, write_wav
from gui.theme import LIGHT, Theme
from gui.widgets.engine_job import panel_toolbar
from gui.widgets.piano_roll import PianoRoll

ITEM_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
NARROW_PX = 760  # below this width the samples list sits above the piano roll
PLAYHEAD_MS = 33  # ~30 Hz: smooth enough for a line moving a few pixels a frame


class Renderer(QtCore.QObject):
    """Synthesises a piece on a worker thread; ``rendered`` brings back the audio, or the WAV file written."""

    rendered = QtCore.Signal(int, object, float, str)  # token, audio array or WAV path, seconds, error ("" when fine)

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._token = 0

    def start(self, piece: Piece, muted: set[int], path: Path | None = None) -> int:
        self._token += 1
        token = self._token
        threading.Thread(
            target=self._work, args=(token, piece, set(muted), path), daemon=True, name="podium-synth"
        ).start()
        return token

    def _work(self, token: int, piece: Piece, muted: set[int], path: Path | None) -> None:
        try:
            audio = render(piece, muted=muted)
            result = audio if path is None else str(write_wav(path, audio))
            self.rendered.emit(token, result, len(audio) / SAMPLE_RATE, "")
        except (OSError, ValueError, MemoryError) as exc:
            self.rendered.emit(token, None, 0.0, str(exc))


METRIC_ROWS = 3  # rows of the metric table kept in view


class SamplesPanel(QtWidgets.QWidget):
    sampleSelected = QtCore.Signal(object)  # SampleItem
    wavExported = QtCore.Signal(str)

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
        self._play_token = 0  # the render Play waits for; 0: none
        self._export_tokens: dict[int, str] = {}
        self.player = player or Player()
        self.renderer = Renderer(self)
        self.renderer.rendered.connect(self._rendered)
        self._playhead_timer = QtCore.QTimer(self, interval=PLAYHEAD_MS)
        self._playhead_timer.timeout.connect(self._follow_player)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.play_button = QtWidgets.QPushButton("▶ Play")
        self.play_button.setToolTip("Play the notes with Podium's synthesiser (Space plays and stops)")
        self.play_button.clicked.connect(self.play)
        self.stop_button = QtWidgets.QPushButton("■ Stop")
        self.stop_button.setToolTip("Stop playing (Space)")
        self.stop_button.clicked.connect(self.stop)
        QtGui.QShortcut(
            QtGui.QKeySequence("Space"),
            self,
            self.toggle_play,
            context=QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut,
        )
        self.wav_button = QtWidgets.QPushButton("Export WAV…")
        self.wav_button.setToolTip("Render the notes with Podium's synthesiser to a WAV file")
        self.wav_button.clicked.connect(self._export_wav_dialog)
        self.midi_button = QtWidgets.QPushButton("Export MIDI…")
        self.midi_button.setToolTip("Write the notes as a Standard MIDI File")
        self.midi_button.clicked.connect(self._export_midi_dialog)
        self.status = QtWidgets.QLabel()
        self.status.setObjectName("muted")
        self.status.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        # Takes the toolbar's spare width; a long message is cut rather than widening the dock.
        self.status.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Preferred)
        self.status.setMinimumWidth(40)
        bar = panel_toolbar(self.play_button, self.stop_button, self.wav_button, self.midi_button)
        layout.addWidget(bar)
        bar.addWidget(self.status)
        # Why nothing can be heard (no audio device, no audio system): in words, where the user looks after Play.
        self.audio_message = QtWidgets.QLabel()
        self.audio_message.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.audio_message.setWordWrap(True)
        self.audio_message.hide()
        layout.addWidget(self.audio_message)

        split = self.split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(["Sample", "Quality", "Tokens", "Syntax", "Copied"])
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.header().setStretchLastSection(False)
        self.tree.header().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.tree.currentItemChanged.connect(self._current_changed)
        self.tree.itemPressed.connect(self._pressed)
        split.addWidget(self.tree)
        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        self.roll = PianoRoll(theme)
        self.roll.voicesChanged.connect(lambda hidden: self.stop())
        right.addWidget(self.roll)
        metrics_box = QtWidgets.QWidget()
        metrics_layout = QtWidgets.QVBoxLayout(metrics_box)
        metrics_layout.setContentsMargins(0, 0, 0, 0)
        self.metrics_title = QtWidgets.QLabel()
        self.metrics_title.setWordWrap(True)
        metrics_layout.addWidget(self.metrics_title)
        # Why the shown sample's tokens are invalid (the engine's first syntax error).
        self.syntax_label = QtWidgets.QLabel()
        self.syntax_label.setWordWrap(True)
        self.syntax_label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.syntax_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.syntax_label.hide()
        metrics_layout.addWidget(self.syntax_label)
        self.metrics = QtWidgets.QTableWidget(0, 5)
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
            self.metrics.setHorizontalHeaderItem(c, heading)
        self.metrics.verticalHeader().hide()
        self.metrics.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metrics.setAlternatingRowColors(True)
        # Every column as wide as its contents, the metric names first of all (a stretched name column was what
        # gave way in a narrow dock, down to "et…"); a narrow dock scrolls sideways, a wide one leaves space.
        header = self.metrics.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        metrics_layout.addWidget(self.metrics)
        # A few metrics stay in view under the piano roll however low the dock (the roll gives way first).
        self.metrics.setMinimumHeight(self._metrics_height())
        right.addWidget(metrics_box)
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
        self.syntax_label.setStyleSheet(f"color: {theme.state_colors['failed']};")

    def _metrics_height(self) -> int:
        table = self.metrics
        return (
            table.horizontalHeader().sizeHint().height()
            + METRIC_ROWS * table.verticalHeader().defaultSectionSize()
            + table.horizontalScrollBar().sizeHint().height()
            + 2 * table.frameWidth()
        )

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.metrics.minimumHeight() != self._metrics_height():  # a style sheet set since changes the rows' height
            self.metrics.setMinimumHeight(self._metrics_height())
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
        # What the last run's Play or export said does not hold for this one.
        self.audio_message.clear()
        self.audio_message.hide()
        self.status.clear()
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
            if rnd.seconds:
                parent.setToolTip(0, f"sampled in {rnd.seconds:.1f} s")
            font = parent.font(0)
            font.setBold(True)
            parent.setFont(0, font)
            for sample in rnd.samples:
                child = QtWidgets.QTreeWidgetItem(self._sample_texts(sample))
                child.setData(0, ITEM_ROLE, sample)
                child.setToolTip(0, str(sample.path))
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
        return [
            f"step {rnd.step:,} · {len(rnd.samples)} sample{'s' if len(rnd.samples) != 1 else ''}",
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
        for button in (self.wav_button, self.midi_button):
            button.setEnabled(piece is not None)
        self._update_buttons()
        self._fill_metrics(sample)
        if sample is not None:
            self.sampleSelected.emit(sample)

    def _fill_metrics(self, sample: SampleItem | None) -> None:
        rows = self.model.metric_rows(sample) if sample is not None else []
        rnd = self.model.round_of(sample) if sample is not None else None
        title = ""
        if sample is not None and rnd is not None and rnd.quality_score is not None:
            interval = (
                f", {rnd.quality_interval[0]:.2f}-{rnd.quality_interval[1]:.2f} with this many samples"
                if rnd.quality_interval
                else ""
            )
            title = (
                f"<b>Round quality {rnd.quality_score:.3f}</b> (share of sets of real held-out pieces that score "
                f"no higher{interval})"
            )
            if sample.copied_from:
                title += f"<br>{sample.copied:.0%} of this sample's 2-bar passages are in the training set, "
                title += f"most from {html.escape(sample.copied_from)}"
        elif sample is not None and not self.model.reference():
            title = "No corpus reference yet (the engine sends it with its sampling rounds)."
        self.metrics_title.setText(title)
        self.metrics_title.setVisible(bool(title))
        why = syntax_text(sample) if sample is not None and sample.syntax_ok is False else ""
        self.syntax_label.setText(why)
        self.syntax_label.setVisible(bool(why))
        self.metrics.setRowCount(len(rows))
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
            if row.z is not None:
                color = "#15803d" if abs(row.z) < 1 else "#d97706" if abs(row.z) < 2 else "#dc2626"
                items[4].setForeground(QtGui.QColor(color))
                items[4].setToolTip("standard deviations from the corpus mean")
            for c, item in enumerate(items):
                self.metrics.setItem(r, c, item)

    # ----------------------------------------------------------------- audio

    @property
    def busy(self) -> bool:
        """Rendering for Play, or playing."""
        return bool(self._play_token) or self.player.playing

    def toggle_play(self) -> None:
        self.stop() if self.busy else self.play()

    def play(self) -> None:
        """Render the shown piece (hidden voices left out) on a worker thread; it plays when rendered."""
        piece = self.roll.piece
        if piece is None or self.busy:
            return
        self._picked = True  # a new round must not cut off the sample being listened to
        self._play_token = self.renderer.start(piece, self.roll.hidden)
        self.status.setText("rendering…")
        self._update_buttons()

    def stop(self) -> None:
        """Stop playing (or cancel the render Play waits for): the playhead goes and Play is offered again."""
        self._play_token = 0
        self.player.stop()
        self._playhead_timer.stop()
        self.roll.set_playhead(None)
        if self.status.text().startswith(("playing", "rendering…")):
            self.status.clear()
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.play_button.setEnabled(self.roll.piece is not None and not self.busy)
        self.stop_button.setEnabled(self.busy)

    def _rendered(self, token: int, result, seconds: float, error: str) -> None:
        if token in self._export_tokens:
            target = self._export_tokens.pop(token)
            if error:
                self.status.setText(f"could not write {target}: {error}")
            else:
                self.status.setText(f"wrote {Path(target).name} ({seconds:.1f} s)")
                self.wavExported.emit(target)
            return
        if token != self._play_token:
            return  # superseded: stopped, another sample, or another Play
        self._play_token = 0
        if error:
            self.status.setText(f"could not render: {error}")
        else:
            try:
                self.player.play(result, SAMPLE_RATE)
            except AudioError as exc:
                self.status.clear()
                self.audio_message.setText(f"Cannot play: {exc}. Export WAV still writes the audio to a file.")
                self.audio_message.show()
            else:
                self.audio_message.hide()
                self.status.setText(f"playing {seconds:.1f} s through {self.player.backend}")
                self._playhead_timer.start()
                self._follow_player()
        self._update_buttons()

    def _follow_player(self) -> None:
        if self.player.playing:
            self.roll.set_playhead(self.player.position())
        else:  # the piece has ended
            self.stop()

    # ---------------------------------------------------------------- export

    def _suggested(self, suffix: str) -> str:
        base = self.current.path.stem if self.current is not None else "sample"
        folder = self.current.path.parent if self.current is not None else Path.home()
        return str(folder / f"{base}{suffix}")

    def _export_wav_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export WAV", self._suggested(".wav"), "WAV audio (*.wav)"
        )
        if path:
            self.export_wav(Path(path))

    def export_wav(self, path: Path) -> int | None:
        """Render the shown piece (hidden voices left out) to ``path`` on a worker thread; ``wavExported`` follows."""
        piece = self.roll.piece
        if piece is None:
            return None
        token = self.renderer.start(piece, self.roll.hidden, Path(path))
        self._export_tokens[token] = str(path)
        self.status.setText(f"rendering {Path(path).name}…")
        return token

    def _export_midi_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export MIDI", self._suggested("-export.mid"), "MIDI (*.mid *.midi)"
        )
        if path:
            self.export_midi(Path(path))

    def export_midi(self, path: Path) -> Path | None:
        piece = self.roll.piece
        if piece is None:
            return None
        try:
            write_midi(path, piece)
        except OSError as exc:
            self.status.setText(f"could not write {path}: {exc.strerror or exc}")
            return None
        self.status.setText(f"wrote {Path(path).name} ({piece.n_notes} notes)")
        return Path(path)


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
