"""The Qt-free player on miniaudio's null backend, which takes audio in real time with no sound card."""

from __future__ import annotations

import numpy as np
import pytest

from gui.models.audio import BACKEND_ENV, AudioError, Player
from tests.helpers import wait_until

RATE = 22_050


def tone(seconds: float, dtype=np.float32, channels: int = 2) -> np.ndarray:
    wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * RATE)) / RATE)
    if dtype == np.int16:
        wave = wave * 32767
    return np.repeat(wave[:, None], channels, axis=1).astype(dtype).squeeze()


def test_a_piece_plays_in_real_time_to_its_end_and_then_the_player_is_idle():
    player = Player(["null"])
    player.play(tone(0.6), RATE)
    assert player.backend == "Null" and player.playing and player.duration() == pytest.approx(0.6)
    wait_until(lambda: player.position() > 0.1, 10, "the device taking frames")
    wait_until(lambda: not player.playing, 10, "the end of the piece")
    assert player.position() == pytest.approx(0.6) and player.frames_played == int(0.6 * RATE)
    player.stop()
    assert player.position() == pytest.approx(0.6)


def test_stop_holds_the_position_and_play_starts_again_from_the_beginning():
    player = Player(["null"])
    player.play(tone(3.0, np.int16, channels=1), RATE)  # mono 16-bit plays as well as the synthesiser's float stereo
    wait_until(lambda: player.position() > 0.3, 10, "the device taking frames")
    player.stop()
    held = player.position()
    assert not player.playing and 0.3 < held < 3.0
    clock = Player(["null"])  # a second device playing meanwhile shows time passed for the first
    clock.play(tone(3.0), RATE)
    wait_until(lambda: clock.position() > 0.3, 10, "the other device taking frames")
    clock.stop()
    assert player.position() == held, "a stopped device takes no more frames"
    player.play(tone(3.0), RATE)
    assert player.position() < held
    player.stop()


def test_backends_come_from_the_environment_and_a_missing_one_is_an_error_in_words(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, " Null ")
    assert Player().backends == ["null"]
    with pytest.raises(AudioError, match="unknown audio backend nosuch.*one of .*pulseaudio"):
        Player(["nosuch"]).play(tone(0.1), RATE)
    # WebAudio exists only in browsers: on a desktop it is an audio system that cannot be opened.
    with pytest.raises(AudioError, match=r"^no audio output \(.*MA_\w+; tried webaudio\)"):
        Player(["webaudio"]).play(tone(0.1), RATE)
