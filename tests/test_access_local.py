"""The run-access layer on a local workspace: what every panel reads and does goes through these calls."""

from __future__ import annotations

import json
import os
import stat
import sys
import time

import pytest

from engine.contract.rundir import RunDir
from gui.access import CommandError, CommandTimeout, RunAccess, Unreachable, open_access
from gui.access.local import LocalAccess


@pytest.fixture
def access(tmp_path):
    return open_access(tmp_path)


def test_a_path_opens_a_local_access_that_follows_the_protocol(tmp_path):
    access = open_access(str(tmp_path))
    assert isinstance(access, LocalAccess) and isinstance(access, RunAccess)
    assert access.root == str(tmp_path) and access.url == str(tmp_path) and access.remote is False
    assert issubclass(Unreachable, OSError)


def test_label_shortens_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert LocalAccess(tmp_path / "runs").label() == "~/runs"
    assert LocalAccess("/srv/runs").label() == "/srv/runs"


def test_stat_and_listdir_say_what_is_there_and_nothing_for_what_is_not(access, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "events.jsonl").write_bytes(b"12345")
    st = access.stat(str(tmp_path / "run" / "events.jsonl"))
    assert st is not None and st.size == 5 and not st.is_dir and abs(st.mtime - time.time()) < 60
    assert access.stat(str(tmp_path / "run")).is_dir
    assert access.stat(str(tmp_path / "missing")) is None
    assert access.listdir(str(tmp_path)) == ["run"]
    assert access.listdir(str(tmp_path / "missing")) == []


def test_read_returns_the_bytes_from_an_offset(access, tmp_path):
    path = tmp_path / "engine.log"
    path.write_bytes(b"line one\nline two\n")
    assert access.read(str(path)) == b"line one\nline two\n"
    assert access.read(str(path), 5) == b"one\nline two\n"
    assert access.read(str(path), 5, 3) == b"one"
    assert access.read(str(path), 100) == b""
    assert access.read(str(tmp_path / "missing"), 0, 10) == b""


def test_write_replaces_the_file_whole_and_private(access, tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("old")
    access.write(str(path), b"new notes")
    assert path.read_bytes() == b"new notes"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["notes.md"]  # no temporary file left beside it


def test_fetch_of_a_local_file_is_the_file_itself(access, tmp_path):
    path = tmp_path / "samples" / "a.mid"
    assert access.fetch(str(path)) == path


def test_send_command_appends_a_checked_command_to_the_inbox(access, tmp_path):
    command_id = access.send_command(str(tmp_path), "set_lr", lr=1e-4)
    [line] = (tmp_path / "control.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["id"] == command_id and record["cmd"] == "set_lr" and record["args"] == {"lr": 1e-4}
    with pytest.raises(CommandError, match="set_lr"):
        access.send_command(str(tmp_path), "set_lr", lr="fast")
    assert len((tmp_path / "control.jsonl").read_text().splitlines()) == 1


def test_podium_runs_the_engine_command_line_here(access):
    done = access.podium("--version")
    assert done.returncode == 0 and done.stdout.strip()


def test_launch_starts_a_detached_process_whose_output_lands_in_the_log(access, tmp_path):
    log = tmp_path / "launch.log"
    code = "import os; print('session', os.getsid(0) == os.getpid(), flush=True)"
    pid = access.launch([sys.executable, "-c", code], str(tmp_path), str(log))
    deadline = time.monotonic() + 30
    while "session" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text().strip() == "session True"  # its own session: it outlives the app
    assert pid > 0


def test_process_alive_comes_from_launcher_json(access, tmp_path):
    assert access.process_alive(str(tmp_path)) is None  # no launcher.json: cannot be known
    RunDir(tmp_path).write_launcher(os.getpid())
    assert access.process_alive(str(tmp_path)) is True


def test_a_podium_command_that_does_not_finish_in_time_is_an_oserror_naming_it(tmp_path):
    access = LocalAccess(tmp_path)
    with pytest.raises(CommandTimeout, match=r"podium runs --json .* did not finish within 0\.001 s"):
        access.podium("runs", "--json", str(tmp_path), timeout=0.001)


def test_a_file_that_cannot_be_read_is_named(tmp_path):
    (tmp_path / "engine.log").mkdir()  # a directory where a run's log should be
    with pytest.raises(OSError, match="cannot read .*engine.log"):
        LocalAccess(tmp_path).read(str(tmp_path / "engine.log"))


def test_a_fifo_in_a_run_folder_is_refused_at_once_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "events.jsonl")
    with pytest.raises(OSError, match="not a regular file"):
        LocalAccess(tmp_path).read(str(tmp_path / "events.jsonl"))


def test_a_resume_takes_the_world_size_of_the_newest_full_checkpoint_by_step_not_by_name(tmp_path):
    from gui.models.checkpoint_files import resume_world_size

    def checkpoint(name: str, step: int, kind: str, world_size) -> None:
        folder = tmp_path / "run" / "checkpoints" / name
        folder.mkdir(parents=True)
        manifest = {"step": step, "kind": kind, "files": {}, "world_size": world_size}
        (folder / "manifest.json").write_text(json.dumps(manifest))

    access = LocalAccess(tmp_path)
    assert resume_world_size(access, str(tmp_path / "run")) == 1  # no checkpoints: one process
    checkpoint("step-9999999", 9_999_999, "full", 2)
    checkpoint("step-10000000", 10_000_000, "full", 4)  # sorts before the other by name
    checkpoint("step-10000010", 10_000_010, "weights", 8)  # a resume does not start from weights alone
    (tmp_path / "run" / "checkpoints" / "step-10000020").mkdir()  # no manifest: passed over
    assert resume_world_size(access, str(tmp_path / "run")) == 4
    checkpoint("step-10000030", 10_000_030, "full", True)  # not a number of processes
    assert resume_world_size(access, str(tmp_path / "run")) == 1
