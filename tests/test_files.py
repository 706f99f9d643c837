"""Whole-file replacement (engine/contract/files.py) and the modes of the files people share in a run folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.contract.commands import send_command
from engine.contract.files import atomic_write_bytes, atomic_write_text
from engine.contract.notes import make_notes, read_notes, write_notes


@pytest.fixture
def umask():
    """Set the process umask for one test; the previous one comes back after it."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_write_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("old: 1\n")
    assert atomic_write_text(path, "new: 2\n") == path
    assert path.read_text() == "new: 2\n"
    atomic_write_bytes(path, b"", fsync=False)
    assert path.read_bytes() == b""
    assert os.listdir(tmp_path) == ["config.yaml"]


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_without_a_mode_the_file_gets_what_the_umask_gives(tmp_path, umask, mask, expected):
    umask(mask)
    path = atomic_write_bytes(tmp_path / "a.mid", b"MThd")
    assert _mode(path) == expected


def test_a_mode_given_is_the_files_mode_whatever_the_umask(tmp_path, umask):
    umask(0o000)
    assert _mode(atomic_write_bytes(tmp_path / "private", b"x", mode=0o600)) == 0o600
    umask(0o077)
    assert _mode(atomic_write_bytes(tmp_path / "shared", b"x", mode=0o640)) == 0o640


def test_a_write_that_fails_keeps_what_was_there_and_leaves_no_temporary_file(tmp_path):
    taken = tmp_path / "samples"
    taken.mkdir()
    (taken / "kept.mid").write_bytes(b"kept")
    with pytest.raises(OSError):
        atomic_write_bytes(taken, b"would replace a folder")
    assert (taken / "kept.mid").read_bytes() == b"kept"
    assert sorted(os.listdir(tmp_path)) == ["samples"]


def test_notes_in_a_group_shared_run_folder_are_readable_by_the_group_but_the_inbox_stays_the_owners(tmp_path, umask):
    umask(0o002)  # a team's umask: files the group may read and write
    run = tmp_path / "run"
    run.mkdir()
    write_notes(run, make_notes(name="baseline", tags=["bach", "small"], note="first try"))
    notes = run / "notes.json"
    assert _mode(notes) & 0o040, "colleagues sharing the folder cannot read the notes"
    assert read_notes(run).name == "baseline"
    send_command(run, "stop")
    # Whoever can write control.jsonl steers the run: the engine refuses an inbox others can write.
    assert _mode(run / "control.jsonl") == 0o600
