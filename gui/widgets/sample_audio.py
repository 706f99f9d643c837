"""The samples panel's sound: Play/Stop with a playhead on the piano roll, export to WAV and to MIDI.

Play renders the notes with our own synthesiser (:mod:`gui.models.synth`) on a worker thread and plays
them through miniaudio (:mod:`gui.models.audio`); where no audio output can be opened it says why and
Export WAV remains. Export MIDI writes the notes with :mod:`gui.models.midi`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from gui.models.audio import AudioError, Player
from gui.models.midi import Piece, write_midi
from gui.models.synth import SAMPLE_RATE, render, write_wav
from gui.widgets.engine_job import panel_toolbar
from gui.widgets.piano_roll import PianoRoll

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


class StatusLine(QtWidgets.QLabel):
    """What Play or an export is doing, on a line of its own under the toolbar while there is something to say:
    in a 1280x720 window's dock the toolbar has no room left for it (it went into the toolbar's overflow)."""

    def __init__(self) -> None:
        super().__init__()
        self.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.hide()

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setVisible(bool(text))

    def clear(self) -> None:
        super().clear()
        self.hide()


class SampleAudio(QtCore.QObject):
    """The toolbar (Play, Stop, Export WAV/MIDI), a status line and the audio message under it, acting on
    the piece the piano roll shows; ``suggested(suffix)`` names the file an export dialog proposes."""

    wavExported = QtCore.Signal(str)
    playStarted = QtCore.Signal()  # Play was pressed on a piece: the panel keeps that sample in view

    def __init__(
        self,
        roll: PianoRoll,
        suggested: Callable[[str], str],
        parent: QtWidgets.QWidget,
        player: Player | None = None,
    ):
        super().__init__(parent)
        self.roll = roll
        self._suggested = suggested
        self._panel = parent
        self._play_token = 0  # the render Play waits for; 0: none
        self._export_tokens: dict[int, str] = {}
        self.player = player or Player()
        self.renderer = Renderer(self)
        self.renderer.rendered.connect(self._rendered)
        self._playhead_timer = QtCore.QTimer(self, interval=PLAYHEAD_MS)
        self._playhead_timer.timeout.connect(self._follow_player)
        self.play_button = QtWidgets.QPushButton("▶ Play")
        self.play_button.setToolTip("Play the notes with Podium's synthesiser (Space plays and stops)")
        self.play_button.clicked.connect(self.play)
        self.stop_button = QtWidgets.QPushButton("■ Stop")
        self.stop_button.setToolTip("Stop playing (Space)")
        self.stop_button.clicked.connect(self.stop)
        QtGui.QShortcut(
            QtGui.QKeySequence("Space"),
            parent,
            self.toggle_play,
            context=QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut,
        )
        # Short labels: in a 1280x720 window's dock "Export MIDI…" went into the toolbar's overflow, whose
        # button the app's style leaves blank, so it could not be found.
        self.wav_button = QtWidgets.QPushButton("WAV…")
        self.wav_button.setToolTip("Export: render the notes with Podium's synthesiser to a WAV file")
        self.wav_button.clicked.connect(self._export_wav_dialog)
        self.midi_button = QtWidgets.QPushButton("MIDI…")
        self.midi_button.setToolTip("Export: write the notes as a Standard MIDI File")
        self.midi_button.clicked.connect(self._export_midi_dialog)
        self.status = StatusLine()
        self.status.setObjectName("muted")
        # A long message is cut rather than widening the dock.
        self.status.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.toolbar = panel_toolbar(self.play_button, self.stop_button, self.wav_button, self.midi_button)
        # Why nothing can be heard (no audio device, no audio system): in words, where the user looks after Play.
        self.audio_message = QtWidgets.QLabel()
        self.audio_message.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.audio_message.setWordWrap(True)
        self.audio_message.hide()

    def clear_messages(self) -> None:
        """What the last run's Play or export said does not hold for another run."""
        self.audio_message.clear()
        self.audio_message.hide()
        self.status.clear()

    def piece_shown(self, shown: bool) -> None:
        for button in (self.wav_button, self.midi_button):
            button.setEnabled(shown)
        self.update_buttons()

    # ------------------------------------------------------------------ playing

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
        self.playStarted.emit()
        self._play_token = self.renderer.start(piece, self.roll.hidden)
        self.status.setText("rendering…")
        self.update_buttons()

    def stop(self) -> None:
        """Stop playing (or cancel the render Play waits for): the playhead goes and Play is offered again."""
        self._play_token = 0
        self.player.stop()
        self._playhead_timer.stop()
        self.roll.set_playhead(None)
        if self.status.text().startswith(("playing", "rendering…")):
            self.status.clear()
        self.update_buttons()

    def update_buttons(self) -> None:
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
                self.audio_message.setText(f"Cannot play: {exc}. WAV… still exports the audio to a file.")
                self.audio_message.show()
            else:
                self.audio_message.hide()
                self.status.setText(f"playing {seconds:.1f} s through {self.player.backend}")
                self._playhead_timer.start()
                self._follow_player()
        self.update_buttons()

    def _follow_player(self) -> None:
        if self.player.playing:
            self.roll.set_playhead(self.player.position())
        else:  # the piece has ended
            self.stop()

    # ------------------------------------------------------------------ export

    def _export_wav_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self._panel, "Export WAV", self._suggested(".wav"), "WAV audio (*.wav)"
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
            self._panel, "Export MIDI", self._suggested("-export.mid"), "MIDI (*.mid *.midi)"
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
