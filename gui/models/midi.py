"""A small Standard MIDI File reader and writer in numpy. Qt-free.

The GUI shows and plays generated samples without symusic, miditok or
music21 (they cost start-up time and memory the window should not pay), so
it reads MIDI itself. This is enough of the SMF 1.0 specification for what
Podium's samples and any ordinary MIDI file hold: formats 0, 1 and 2, running
status, note on/off (a note-on of velocity 0 is a note-off), program changes,
tempo, time signature and track names; SysEx and other events are skipped by
their declared length. Metrical (ticks per beat) and SMPTE divisions are both
understood.

Note pairing follows symusic's: a note-off closes the earliest open note of
its (track, channel, pitch), and a note whose on and off share a tick is kept
with duration 0. A note never closed is dropped (counted in ``unclosed``), as
symusic drops it, so the GUI counts the notes the engine measured. A
*voice* is one (track, channel) pair that plays notes, numbered in file
order; the piano roll colours by voice and the music metrics use it as the
voice column.

:func:`write_midi` writes a :class:`Piece` back as format 1 with the same
ticks, tempo map and time signatures, one track per voice, so a round trip
keeps every note exactly.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.contract.files import atomic_write_bytes

DEFAULT_TEMPO = 500_000  # microseconds per beat (120 bpm) until a tempo event says otherwise
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Data bytes that follow each channel-message status (high nibble).
_DATA_LEN = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}


class MidiError(ValueError):
    """A file that is not a readable Standard MIDI File; the message says where it went wrong."""


@dataclass
class Voice:
    """One (track, channel) pair that plays notes."""

    track: int
    channel: int
    name: str = ""
    program: int = 0

    @property
    def label(self) -> str:
        who = self.name.strip() or f"track {self.track + 1}"
        return f"{who} (ch {self.channel + 1})"


@dataclass
class Piece:
    """A MIDI file's notes as parallel arrays, sorted by onset then pitch.

    Times are kept in ticks (exact, so a written copy is identical) and in
    seconds (through the tempo map) for drawing and synthesis.
    """

    ticks_per_beat: int
    start: np.ndarray  # int64 ticks
    end: np.ndarray  # int64 ticks
    pitch: np.ndarray  # int16 0..127
    velocity: np.ndarray  # int16 1..127
    voice: np.ndarray  # int32 index into voices
    voices: list[Voice] = field(default_factory=list)
    tempos: list[tuple[int, int]] = field(default_factory=list)  # (tick, microseconds per beat)
    time_signatures: list[tuple[int, int, int]] = field(default_factory=list)  # (tick, numerator, denominator)
    smpte_ticks_per_s: float | None = None  # set when the division is SMPTE time code, not beats
    truncated: bool = False  # the file ended inside a track: what was there has been read
    unclosed: int = 0  # note-ons never closed (dropped)
    start_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    end_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self.start_s = self.seconds(self.start)
        self.end_s = self.seconds(self.end)

    def __len__(self) -> int:
        return int(self.start.size)

    @property
    def n_notes(self) -> int:
        return len(self)

    @property
    def duration_s(self) -> float:
        return float(self.end_s.max()) if len(self) else 0.0

    def seconds(self, ticks: np.ndarray) -> np.ndarray:
        """Ticks to seconds through the tempo map (a tempo change applies from its tick on)."""
        ticks = np.asarray(ticks, dtype=np.float64)
        if self.smpte_ticks_per_s:
            return ticks / self.smpte_ticks_per_s
        changes = sorted(dict(self.tempos).items()) or [(0, DEFAULT_TEMPO)]
        if changes[0][0] != 0:
            changes.insert(0, (0, DEFAULT_TEMPO))
        at = np.array([t for t, _ in changes], dtype=np.float64)
        per_tick = np.array([us for _, us in changes], dtype=np.float64) / 1e6 / self.ticks_per_beat
        # Seconds elapsed at each tempo change, then linear within its segment.
        offset = np.concatenate([[0.0], np.cumsum(np.diff(at) * per_tick[:-1])])
        seg = np.searchsorted(at, ticks, side="right") - 1
        return offset[seg] + (ticks - at[seg]) * per_tick[seg]

    def notes_array(self) -> np.ndarray:
        """``(N, 5)`` float64 [start beats, duration beats, pitch, velocity, voice]: the layout of
        :mod:`engine.music.metrics`, so the GUI can measure a piece without the engine's libraries."""
        tpb = float(self.ticks_per_beat)
        return (
            np.column_stack(
                [self.start / tpb, (self.end - self.start) / tpb, self.pitch, self.velocity, self.voice]
            ).astype(np.float64)
            if len(self)
            else np.zeros((0, 5))
        )

    def pitch_span(self) -> tuple[int, int] | None:
        return (int(self.pitch.min()), int(self.pitch.max())) if len(self) else None


def note_name(pitch: int) -> str:
    """MIDI 60 -> C4 (scientific pitch notation, middle C = C4)."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


# ------------------------------------------------------------------ reading


def read_midi(path: str | os.PathLike[str]) -> Piece:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise MidiError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return parse_midi(data)
    except MidiError as exc:
        raise MidiError(f"{path}: {exc}") from None


def parse_midi(data: bytes) -> Piece:
    if len(data) < 14 or data[:4] != b"MThd":
        raise MidiError("not a Standard MIDI File (no MThd header)")
    header_len = struct.unpack(">I", data[4:8])[0]
    if header_len < 6 or 8 + header_len > len(data):
        raise MidiError(f"bad header length {header_len}")
    fmt, ntracks, division = struct.unpack(">HHH", data[8:14])
    if fmt > 2:
        raise MidiError(f"unknown SMF format {fmt}")
    smpte = None
    if division & 0x8000:
        fps = 256 - (division >> 8)  # the high byte is a negative frame rate
        smpte = float((29.97 if fps == 29 else fps) * (division & 0xFF))
        ticks_per_beat = max(1, int(smpte / 2))  # beats are only nominal here (120 bpm)
    else:
        ticks_per_beat = division
        if ticks_per_beat == 0:
            raise MidiError("division is 0 ticks per beat")
    pos = 8 + header_len
    builder = _Builder()
    track = 0
    while pos + 8 <= len(data) and track < ntracks:
        kind, length = data[pos : pos + 4], struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + length]
        pos += 8 + length
        if kind != b"MTrk":
            continue  # unknown chunks are to be skipped, says the spec
        if len(body) < length:
            # A truncated last track: read what is there rather than nothing.
            builder.truncated = True
        _read_track(body, track, builder)
        track += 1
    if track == 0:
        raise MidiError("no MTrk track chunk")
    return builder.piece(ticks_per_beat, smpte)


class _Builder:
    def __init__(self) -> None:
        self.notes: list[tuple[int, int, int, int, int, int]] = []  # start, end, pitch, velocity, track, channel
        self.tempos: list[tuple[int, int]] = []
        self.signatures: list[tuple[int, int, int]] = []
        self.names: dict[int, str] = {}
        self.programs: dict[tuple[int, int], int] = {}
        self.truncated = False
        self.unclosed = 0

    def piece(self, ticks_per_beat: int, smpte: float | None) -> Piece:
        rows = self.notes
        order = {key: i for i, key in enumerate(sorted({(n[4], n[5]) for n in rows}))}
        voices = [Voice(t, c, self.names.get(t, ""), self.programs.get((t, c), 0)) for (t, c) in order]
        arr = np.array(rows, dtype=np.int64).reshape(-1, 6)
        voice = np.array([order[(int(t), int(c))] for t, c in arr[:, 4:6]], dtype=np.int32)
        # Stable sort by onset then pitch: the order the piano roll and the synthesiser walk.
        idx = np.lexsort((arr[:, 2], arr[:, 0])) if len(arr) else np.zeros(0, dtype=np.int64)
        return Piece(
            ticks_per_beat,
            arr[idx, 0],
            arr[idx, 1],
            arr[idx, 2].astype(np.int16),
            arr[idx, 3].astype(np.int16),
            voice[idx],
            voices,
            sorted(self.tempos, key=lambda t: t[0]),
            sorted(self.signatures, key=lambda s: s[0]),
            smpte,
            truncated=self.truncated,
            unclosed=self.unclosed,
        )


def _vlq(body: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        if pos >= len(body):
            raise MidiError("a variable-length number runs past the end of its track")
        byte = body[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos
    raise MidiError("a variable-length number is longer than 4 bytes")


def _read_track(body: bytes, track: int, out: _Builder) -> None:
    pos, tick, status = 0, 0, 0
    open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}
    n = len(body)
    while pos < n:
        delta, pos = _vlq(body, pos)
        tick += delta
        if pos >= n:
            break
        byte = body[pos]
        if byte == 0xFF:  # meta event
            if pos + 1 >= n:
                break
            meta = body[pos + 1]
            length, pos = _vlq(body, pos + 2)
            payload = body[pos : pos + length]
            pos += length
            if meta == 0x2F:
                break
            if meta == 0x51 and len(payload) == 3:
                out.tempos.append((tick, int.from_bytes(payload, "big")))
            elif meta == 0x58 and len(payload) >= 2:
                out.signatures.append((tick, payload[0], 2 ** payload[1]))
            elif meta == 0x03 and track not in out.names:
                out.names[track] = payload.decode("latin-1", "replace")
            continue
        if byte in (0xF0, 0xF7):  # SysEx: skipped by its length
            length, pos = _vlq(body, pos + 1)
            pos += length
            status = 0  # SysEx cancels running status
            continue
        if byte & 0x80:
            status = byte
            pos += 1
        elif not status:
            raise MidiError(f"track {track + 1}: data byte 0x{byte:02x} at offset {pos} without a status")
        high, channel = status >> 4, status & 0x0F
        size = _DATA_LEN.get(high)
        if size is None:
            raise MidiError(f"track {track + 1}: unsupported status 0x{status:02x} at offset {pos}")
        if pos + size > n:
            break
        a = body[pos]
        b = body[pos + 1] if size == 2 else 0
        pos += size
        if high == 0x9 and b > 0:
            open_notes.setdefault((channel, a), []).append((tick, b))
        elif high == 0x8 or high == 0x9:
            started = open_notes.get((channel, a))
            if started:
                on, velocity = started.pop(0)
                out.notes.append((on, tick, a, velocity, track, channel))
        elif high == 0xC:
            out.programs.setdefault((track, channel), a)
    out.unclosed += sum(len(started) for started in open_notes.values())


# ------------------------------------------------------------------ writing


def _vlq_bytes(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"negative delta time {value}")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _track_chunk(events: list[tuple[int, int, bytes]]) -> bytes:
    """``events`` are (tick, order, message bytes); written in (tick, order) order."""
    body = bytearray()
    last = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        body += _vlq_bytes(tick - last) + message
        last = tick
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def _meta(kind: int, payload: bytes) -> bytes:
    return bytes([0xFF, kind]) + _vlq_bytes(len(payload)) + payload


def midi_bytes(piece: Piece) -> bytes:
    """The piece as a format-1 file: a conductor track (tempo, time signatures), then one track per voice."""
    conductor: list[tuple[int, int, bytes]] = []
    for tick, us in piece.tempos:
        conductor.append((tick, 0, _meta(0x51, int(us).to_bytes(3, "big"))))
    for tick, num, den in piece.time_signatures:
        conductor.append((tick, 0, _meta(0x58, bytes([num, max(0, den.bit_length() - 1), 24, 8]))))
    chunks = [_track_chunk(conductor)]
    for index, voice in enumerate(piece.voices):
        channel = voice.channel & 0x0F
        events: list[tuple[int, int, bytes]] = []
        if voice.name:
            events.append((0, 0, _meta(0x03, voice.name.encode("latin-1", "replace"))))
        events.append((0, 1, bytes([0xC0 | channel, voice.program & 0x7F])))
        mine = np.flatnonzero(piece.voice == index)
        for seq, i in enumerate(mine):
            start, end, pitch, vel = int(piece.start[i]), int(piece.end[i]), int(piece.pitch[i]), int(piece.velocity[i])
            # At one tick: earlier notes end (2), then notes start (3), then zero-length notes end (4),
            # so a reader pairing offs with the earliest open note gets every note back as it was.
            events.append((start, 3 * 1_000_000 + seq, bytes([0x90 | channel, pitch, max(1, vel)])))
            events.append((end, (4 if end == start else 2) * 1_000_000 + seq, bytes([0x80 | channel, pitch, 0])))
        chunks.append(_track_chunk(events))
    header = b"MThd" + struct.pack(">IHHH", 6, 1, len(chunks), piece.ticks_per_beat & 0x7FFF)
    return header + b"".join(chunks)


def write_midi(path: str | os.PathLike[str], piece: Piece) -> Path:
    """Write atomically (a temporary file renamed into place), so a failed export leaves no half file."""
    return atomic_write_bytes(path, midi_bytes(piece), fsync=False)
