"""Play synthesised PCM through miniaudio. Qt-free: the samples panel polls it from a timer.

miniaudio (pyminiaudio) bundles its C library and opens the platform's audio
system (PulseAudio, ALSA, JACK, CoreAudio, WASAPI, …) at run time, so playing
sound needs no system package and no QtMultimedia. Its device thread pulls
audio from a generator; the frames the generator has handed over are the
playing position.

``PODIUM_AUDIO_BACKEND`` (comma-separated miniaudio backend names, e.g.
``pulseaudio,alsa``) restricts the audio systems tried; ``null`` plays into
nothing in real time, which is how the tests play with no sound card.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import miniaudio

BACKEND_ENV = "PODIUM_AUDIO_BACKEND"
PERIOD_MS = 50  # the device asks for audio this often; the playhead runs at most this far ahead of the sound


class AudioError(Exception):
    """Sound cannot be played here (no audio system, no output device, a bad backend name)."""


def backends_from_env() -> list[str]:
    return [name.strip().lower() for name in os.environ.get(BACKEND_ENV, "").split(",") if name.strip()]


class Player:
    """One piece at a time: :meth:`play` starts it, :meth:`stop` ends it; it also ends at the end of the piece.

    ``backends``: miniaudio backend names to try, in order; empty or None means
    ``$PODIUM_AUDIO_BACKEND``, or else every audio system miniaudio knows.
    """

    def __init__(self, backends: Sequence[str] | None = None):
        self.backends = list(backends) if backends else backends_from_env()
        self.backend = ""  # the audio system of the last device opened
        self.sample_rate = 0
        self._device: miniaudio.PlaybackDevice | None = None
        self._frames = 0  # handed to the device so far; written by miniaudio's thread
        self._total = 0
        self._end = 0  # frames after which playback is over: the piece plus the device's buffer of silence

    @property
    def playing(self) -> bool:
        return self._device is not None and self._frames < self._end

    @property
    def frames_played(self) -> int:
        return min(self._frames, self._total)

    def position(self) -> float:
        """Seconds into the piece (0 before any play)."""
        return self.frames_played / self.sample_rate if self.sample_rate else 0.0

    def duration(self) -> float:
        return self._total / self.sample_rate if self.sample_rate else 0.0

    def play(self, audio: np.ndarray, sample_rate: int) -> None:
        """Play ``audio`` (frames x channels, or mono; float32 or int16) from its start; raises AudioError."""
        import miniaudio  # ~70 ms of cffi loading that the window's start-up does not pay

        self.stop()
        audio = np.asarray(audio)
        if audio.dtype != np.int16:
            audio = audio.astype(np.float32)
        audio = np.ascontiguousarray(audio if audio.ndim == 2 else audio.reshape(-1, 1))
        fmt = miniaudio.SampleFormat.SIGNED16 if audio.dtype == np.int16 else miniaudio.SampleFormat.FLOAT32
        device = self._open(miniaudio, fmt, audio.shape[1], sample_rate)
        self.sample_rate = sample_rate
        self._frames, self._total = 0, len(audio)
        self._end = self._total + int(sample_rate * 3 * PERIOD_MS / 1000)  # let the last buffers sound
        generator = self._feed(memoryview(audio.tobytes()), audio.shape[1] * audio.itemsize)
        next(generator)  # miniaudio wants it started
        try:
            device.start(generator)
        except miniaudio.MiniaudioError as exc:
            device.close()
            raise AudioError(f"the {self.backend} audio device did not start ({_reason(miniaudio, exc)})") from None
        self._device = device

    def stop(self) -> None:
        """End playback now (or release the device after the piece ended); the position stays where it was."""
        device, self._device = self._device, None
        if device is not None:
            self._end = self._frames
            device.close()

    def _open(
        self, miniaudio: ModuleType, fmt: miniaudio.SampleFormat, channels: int, sample_rate: int
    ) -> miniaudio.PlaybackDevice:
        known = {b.name.lower(): b for b in miniaudio.Backend}
        unknown = [name for name in self.backends if name not in known]
        if unknown:
            raise AudioError(
                f"{BACKEND_ENV}: unknown audio backend {', '.join(unknown)}; one of {', '.join(sorted(known))}"
            )
        wanted = [known[name] for name in self.backends] or None
        tried = ", ".join(self.backends) if self.backends else "every audio system miniaudio knows"
        try:
            device = miniaudio.PlaybackDevice(
                output_format=fmt,
                nchannels=channels,
                sample_rate=sample_rate,
                buffersize_msec=PERIOD_MS,
                backends=wanted,
                app_name="Podium",
            )
        except miniaudio.MiniaudioError as exc:
            raise AudioError(f"no audio output ({_reason(miniaudio, exc)}; tried {tried})") from None
        self.backend = device.backend
        if device.backend.lower() == "null" and "null" not in self.backends:
            # Only an explicit request may play into nothing: the user would watch a playhead and hear silence.
            device.close()
            raise AudioError(f"no audio output device (tried {tried})")
        return device

    def _feed(self, pcm: memoryview, frame_bytes: int) -> Generator[memoryview | bytes, int, None]:
        """miniaudio's thread sends the frames it wants and plays what comes back; silence after the piece."""
        wanted = yield b""
        while True:
            start = min(self._frames, self._total) * frame_bytes
            chunk = pcm[start : start + wanted * frame_bytes]
            self._frames += wanted  # counts the silence after the end too: that is how the end is noticed
            wanted = yield chunk


def _reason(miniaudio: ModuleType, exc: Exception) -> str:
    """miniaudio's message and the name of its result code (``MA_NO_BACKEND``), not just a number."""
    message, *rest = exc.args or ("error",)
    code = rest[0] if rest else None
    names = {
        getattr(miniaudio.lib, n): n
        for n in dir(miniaudio.lib)
        if n.startswith("MA_") and isinstance(getattr(miniaudio.lib, n), int) and getattr(miniaudio.lib, n) < 0
    }
    return f"{message}: {names[code]}" if code in names else str(message)
