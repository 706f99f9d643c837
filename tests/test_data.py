"""Data: the chorales exported and tokenised once, a user's MIDI folder, split, windows, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from engine.contract import config as C
from engine.music import data as D
from engine.music.chorales import VOICE_PROGRAMS

SMOKE_PIECES = 8


@pytest.fixture(scope="module")
def bach(podium_cache):
    cfg = C.load(C.resources_dir() / "smoke.yaml")
    corpus = D.prepare(cfg)
    return cfg, corpus


@pytest.mark.slow
def test_chorales_become_four_distinct_voices(bach, tmp_path):
    cfg, corpus = bach
    assert len(corpus.names) == SMOKE_PIECES
    tokenizer = corpus.tokenizer()
    score = tokenizer.decode(corpus.piece(0).tolist())
    programs = sorted(t.program for t in score.tracks)
    assert programs == sorted(VOICE_PROGRAMS.values())
    assert all(len(t.notes) > 10 for t in score.tracks)
    # The exported MIDI stays in the cache for inspection and reads back with the same voices.
    midi = sorted(corpus.directory.glob("midi/*.mid"))
    assert len(midi) >= SMOKE_PIECES
    assert sorted(t.program for t in symusic.Score(str(midi[0])).tracks) == programs


@pytest.mark.slow
def test_the_vocabulary_holds_the_voices_and_metres_of_the_data_and_the_meta_their_names_and_tempos(bach):
    cfg, corpus = bach
    vocab = set(corpus.tokenizer().vocab)
    assert {t for t in vocab if t.startswith("Program_")} == {f"Program_{p}" for p in VOICE_PROGRAMS.values()}
    assert not any(t.startswith("PitchDrum_") for t in vocab)
    metres = {f"TimeSig_{n}/{d}" for n, d in corpus.meta["time_signatures"]}
    assert {t for t in vocab if t.startswith("TimeSig_")} == metres
    assert corpus.meta["voice_names"] == {str(p): v.capitalize() for v, p in VOICE_PROGRAMS.items()}
    assert len(corpus.meta["qpm"]) == len(corpus.names) and all(q > 0 for q in corpus.meta["qpm"])
    assert corpus.meta["meter_changes"] is False


@pytest.mark.slow
def test_second_prepare_is_a_cache_hit_without_touching_music21(bach, monkeypatch):
    cfg, first = bach
    monkeypatch.setattr(D, "export_bach", lambda *a, **k: pytest.fail("re-exported despite a cache"))
    again = D.prepare(cfg)
    assert again.meta["cache_hit"] is True
    assert again.directory == first.directory
    assert np.array_equal(np.asarray(again.tokens), np.asarray(first.tokens))


def test_tokenizer_change_changes_the_cache_key():
    cfg = C.load(C.resources_dir() / "smoke.yaml")
    other = C.load(C.resources_dir() / "smoke.yaml", ["tokenizer.positions_per_beat=4"])
    assert D.corpus_key(cfg.data, cfg.tokenizer) != D.corpus_key(other.data, other.tokenizer)
    split_only = C.load(C.resources_dir() / "smoke.yaml", ["data.val_fraction=0.3", "data.seq_len=128"])
    assert D.corpus_key(cfg.data, cfg.tokenizer) == D.corpus_key(split_only.data, split_only.tokenizer)


def test_split_is_by_piece_deterministic_and_stable_under_additions():
    names = [f"piece{i}.mid" for i in range(50)]
    train, val = D.split_pieces(names, 0.2, seed=0)
    assert 4 <= len(val) <= 16 and not set(train) & set(val) and len(train) + len(val) == 50
    assert D.split_pieces(names, 0.2, seed=0) == (train, val)
    assert D.split_pieces(names, 0.2, seed=1) != (train, val)
    val_names = {names[i] for i in val}
    more = names + [f"extra{i}.mid" for i in range(5)]
    _, val_more = D.split_pieces(more, 0.2, seed=0)
    assert val_names <= {more[i] for i in val_more}


@pytest.mark.slow
def test_windows_transpose_pitches_within_range_and_rebuild_exactly(bach):
    cfg, corpus = bach
    tokenizer = corpus.tokenizer()
    train, _ = D.split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
    windows = D.WindowSet(corpus, train, 64, transpose=5, pitch_range=(21, 108))
    windows.set_tokenizer(tokenizer)
    pitch_of = D.pitch_of_token(tokenizer)
    shifts = set()
    for index in range(len(windows)):
        plain, _ = windows.example(index)
        x, y = windows.example(index, np.random.default_rng([1, index]))
        assert x.shape == (64,) and np.array_equal(x[1:], y[:-1])
        again, _ = windows.example(index, np.random.default_rng([1, index]))
        assert np.array_equal(x, again)
        p = pitch_of[x]
        assert ((p == -1) | ((p >= 21) & (p <= 108))).all()
        # Same notes, same order: only Pitch tokens moved, all by one amount.
        structure = np.where(pitch_of[x] >= 0, -2, x)
        if np.array_equal(structure, np.where(pitch_of[plain] >= 0, -2, plain)):
            moved = pitch_of[x][pitch_of[x] >= 0] - pitch_of[plain][pitch_of[plain] >= 0]
            assert len(set(moved.tolist())) <= 1
            shifts.update(moved[:1].tolist())
    assert len(shifts) > 3, f"transposition looks inactive: shifts {shifts}"


def test_rank_samplers_partition_an_epoch_and_resume_exactly():
    a = D.RankSampler(20, rank=0, world_size=2, seed=3)
    b = D.RankSampler(20, rank=1, world_size=2, seed=3)
    first = [a.next()[0] for _ in range(10)]
    second = [b.next()[0] for _ in range(10)]
    assert sorted(first + second) == list(range(20))
    a.next()
    assert a.state() == {"epoch": 1, "position": 1}
    mid = D.RankSampler(20, 0, 2, 3, **D.RankSampler(20, 0, 2, 3).state())
    fresh = D.RankSampler(20, 0, 2, 3)
    assert [mid.next()[0] for _ in range(15)] == [fresh.next()[0] for _ in range(15)]
    assert D.split_pieces(["a", "b"], 0.01, 0)[1] and D.split_pieces(["a", "b"], 0.99, 0)[0]
    with pytest.raises(D.DataError, match="only 1 training window"):
        D.RankSampler(1, 0, 2, 0)


def _write_midi(path, pitches):
    score = symusic.Score(480)
    track = symusic.Track("piano", 0, False)
    for i, pitch in enumerate(pitches):
        track.notes.append(symusic.Note(i * 240, 240, pitch, 90))
    score.tracks.append(track)
    score.dump_midi(str(path))


def test_midi_folder_skips_broken_and_empty_files_and_reports_them(tmp_path):
    folder = tmp_path / "my midi"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        _write_midi(folder / f"tune{i}.mid", [60 + i, 64, 67, 72] * 8)
    _write_midi(folder / "sub" / "deep.MID", [50, 52, 53] * 10)
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    empty = symusic.Score(480)
    empty.tracks.append(symusic.Track("empty", 0, False))
    empty.dump_midi(str(folder / "silent.mid"))
    (folder / "notes.txt").write_text("not midi")
    cfg = C.validate({"data": {"source": "midi_dir", "path": str(folder), "cache_dir": str(tmp_path / "cache")}})
    corpus = D.prepare(cfg)
    assert sorted(corpus.names) == ["sub/deep.MID", "tune0.mid", "tune1.mid", "tune2.mid"]
    skipped = {s["file"]: s["reason"] for s in corpus.meta["skipped"]}
    assert set(skipped) == {"broken.mid", "silent.mid"}
    assert "unreadable MIDI" in skipped["broken.mid"] and skipped["silent.mid"] == "no notes"


def test_folder_without_usable_files_is_a_clear_error(tmp_path):
    (tmp_path / "only.mid").write_bytes(b"nonsense")
    cfg = C.validate({"data": {"source": "midi_dir", "path": str(tmp_path), "cache_dir": str(tmp_path / "c")}})
    with pytest.raises(D.DataError, match=r"0 usable piece\(s\) of 1 file\(s\).*only.mid \(unreadable MIDI"):
        D.prepare(cfg)
    missing = C.validate({"data": {"source": "midi_dir", "path": str(tmp_path / "nope")}})
    with pytest.raises(D.DataError, match="is not a folder"):
        D.prepare(missing)
    (tmp_path / "empty").mkdir()
    nothing = C.validate({"data": {"source": "midi_dir", "path": str(tmp_path / "empty")}})
    with pytest.raises(D.DataError, match="no .mid/.midi files"):
        D.prepare(nothing)


@pytest.mark.slow
def test_preparation_reports_progress_to_the_end(tmp_path):
    cfg = C.validate({"data": {"max_pieces": 2, "cache_dir": str(tmp_path)}})
    stages = []
    D.prepare(cfg, lambda stage, done, total: stages.append((stage, done, total)))
    names = [s[0] for s in stages]
    assert names.index("exporting Bach chorales to MIDI") < names.index("tokenising")
    export = [s for s in stages if s[0] == "exporting Bach chorales to MIDI"]
    assert export[-1][1] == export[-1][2]
