"""A small additive synthesiser: a :class:`~gui.models.midi.Piece` to stereo PCM. Qt-free, numpy only.

Enough to hear what a model generates (pitches, rhythm, voice leading), not
to sound like an instrument: each note is a few sine partials under an
attack-decay-sustain-release envelope that also fades slowly while held, as a
plucked or struck string does. Voices get slightly different partial mixes
and are spread across the stereo field, so the parts of a chorale can be told
apart by ear as the piano roll tells them apart by colour.
"""

from __future__ import annotations

import io
import os
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.contract.files import atomic_write_bytes
from gui.models.midi import Piece

SAMPLE_RATE = 22_050  # plenty for partials up to ~4 kHz, and half the memory of 44.1 kHz
MAX_SECONDS = 20 * 60  # a runaway sample (hours of silence between notes) must not eat the RAM
ATTACK_S = 0.006
DECAY_S = 0.08
SUSTAIN = 0.65
RELEASE_S = 0.09
HOLD_DECAY_S = 2.5  # time constant of the fade while a note is held
MIN_NOTE_S = 0.03  # zero-length notes still make a sound
# Partial amplitudes per voice (1st, 2nd, 3rd, 4th harmonic): four timbres, cycled.
TIMBRES = ((1.0, 0.45, 0.22, 0.10), (1.0, 0.25, 0.30, 0.05), (1.0, 0.60, 0.10, 0.15), (1.0, 0.15, 0.08, 0.02))


def frequency(pitch: np.ndarray | int) -> np.ndarray:
    """Equal temperament, A4 (MIDI 69) = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


TABLE_SIZE = 4096


def _tables() -> np.ndarray:
    """One period of each timbre with its first k partials, ``[timbre, k - 1, phase]``: a note reads
    the table with as many partials as stay below Nyquist at its pitch (more would alias)."""
    phase = np.arange(TABLE_SIZE) / TABLE_SIZE
    out = np.zeros((len(TIMBRES), 4, TABLE_SIZE))
    for v, amps in enumerate(TIMBRES):
        wave_ = np.zeros(TABLE_SIZE)
        for k, amp in enumerate(amps, start=1):
            wave_ = wave_ + amp * np.sin(2 * np.pi * k * phase)
            out[v, k - 1] = wave_
    return out


def _hold_envelope(n: int, sr: int) -> np.ndarray:
    """Attack, decay to the sustain level, and the slow fade while held, for ``n`` samples."""
    t = np.arange(n) / sr
    rise = np.minimum(t / ATTACK_S, 1.0)
    decay = SUSTAIN + (1.0 - SUSTAIN) * np.exp(-np.maximum(t - ATTACK_S, 0.0) / (DECAY_S / 3))
    return rise * decay * np.exp(-t / HOLD_DECAY_S)


def pan_gains(voice: int, n_voices: int) -> tuple[float, float]:
    """Constant-power pan; voices spread from left to right, one voice in the middle."""
    position = 0.5 if n_voices <= 1 else 0.15 + 0.7 * voice / (n_voices - 1)
    angle = position * np.pi / 2
    return float(np.cos(angle)), float(np.sin(angle))


def render(piece: Piece, sample_rate: int = SAMPLE_RATE, muted: set[int] | None = None) -> npt.NDArray[np.float32]:
    """The piece as float32 stereo samples, shape ``(n, 2)``, peak at most 0.9.

    ``muted`` voices are left out (solo/mute from the piano roll's legend).
    Envelopes and waveforms are computed once and sliced per note (wavetable
    synthesis), so a few thousand notes render in well under a second.
    """
    muted = muted or set()
    end_s = min(piece.duration_s, MAX_SECONDS)
    n = int(np.ceil((end_s + RELEASE_S) * sample_rate)) + 1 if len(piece) else 0
    out = np.zeros((2, n), dtype=np.float64)
    if not n:
        return _frames(out)
    n_voices = max(len(piece.voices), int(piece.voice.max()) + 1)
    release = int(RELEASE_S * sample_rate)
    min_held = int(MIN_NOTE_S * sample_rate)
    start = np.round(piece.start_s * sample_rate).astype(np.int64)
    held = np.maximum(np.round((piece.end_s - piece.start_s) * sample_rate).astype(np.int64), min_held)
    hold_env = _hold_envelope(int(min(held.max(), n)), sample_rate)
    release_env = np.exp(-np.arange(release) / sample_rate / (RELEASE_S / 4))
    tables = _tables()
    freqs = frequency(piece.pitch)
    partials = np.clip((sample_rate / 2) // freqs, 1, 4).astype(np.int64)
    loud = (np.maximum(piece.velocity.astype(np.float64), 1.0) / 127.0) ** 1.5 * 0.25
    index = np.arange(int(min(held.max() + release, n)))
    for i in range(len(piece)):
        voice = int(piece.voice[i])
        s0 = int(start[i])
        total = min(int(held[i]) + release, n - s0)
        if voice in muted or total <= 0:
            continue
        h = min(int(held[i]), total)
        env = np.empty(total)
        env[:h] = hold_env[:h]
        env[h:] = hold_env[h - 1] * release_env[: total - h]
        phase = (index[:total] * (freqs[i] * TABLE_SIZE / sample_rate)).astype(np.int64) % TABLE_SIZE
        tone = tables[voice % len(TIMBRES), partials[i] - 1][phase] * env * loud[i]
        left, right = pan_gains(voice, n_voices)
        out[0, s0 : s0 + total] += tone * left
        out[1, s0 : s0 + total] += tone * right
    peak = float(np.abs(out).max())
    if peak > 0.9:
        out *= 0.9 / peak
    return _frames(out)


def _frames(channels: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Channel rows ``(2, n)`` as float32 frames ``(n, 2)``."""
    # Annotated: mypy infers Any for .T through numpy's stub (declared Self on a mixin).
    frames: npt.NDArray[np.float32] = channels.T.astype(np.float32)
    return frames


def wav_bytes_frames(audio: npt.NDArray[np.float32]) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def write_wav(path: str | os.PathLike[str], audio: npt.NDArray[np.float32], sample_rate: int = SAMPLE_RATE) -> Path:
    """16-bit PCM WAV (stereo when ``audio`` has two columns); written to a temporary name first."""
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    out = io.BytesIO()
    with wave.open(out, "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(wav_bytes_frames(audio))
    return atomic_write_bytes(path, out.getvalue(), fsync=False)
