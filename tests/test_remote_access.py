"""SshAccess against a real OpenSSH server on loopback: host keys, files by offset, the podium command."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from gui.access import Unreachable, open_access
from gui.access.hostkeys import ChangedHost, UnknownHost, accept
from gui.access.ssh import SshAccess, SshUrlError, parse_url
from tests.sshd import ALIAS


@pytest.fixture
def access(client, tmp_path):
    acc = SshAccess(client.url(tmp_path), podium_command=client.podium_command())
    yield acc
    acc.close()


def test_an_ssh_url_names_user_host_port_and_path_and_a_bad_one_says_what_is_valid():
    assert parse_url("ssh://ann@gpu1:2200/data/runs/") == ("ann", "gpu1", 2200, "/data/runs")
    assert parse_url("ssh://gpu1/data") == (None, "gpu1", None, "/data")
    with pytest.raises(SshUrlError, match=r"ssh://\[user@\]host\[:port\]/absolute/path"):
        parse_url("ssh:///data")
    with pytest.raises(SshUrlError, match="port"):
        parse_url("ssh://gpu1:99999/data")


def test_an_unknown_host_is_refused_until_its_key_is_accepted(sshd, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(sshd.home))
    sshd.known_hosts.unlink(missing_ok=True)
    (tmp_path / "hello").write_text("hi")
    acc = open_access(sshd.url(tmp_path))
    try:
        with pytest.raises(UnknownHost) as refused:
            acc.stat(str(tmp_path / "hello"))
        # The fingerprint the user is asked about is the server's, as ssh-keygen prints it.
        printed = subprocess.run(
            ["ssh-keygen", "-lf", str(sshd.config.parent / "host_key.pub")], capture_output=True, text=True
        ).stdout
        assert refused.value.fingerprint in printed
        assert "can't be established" in str(refused.value)
        assert not sshd.known_hosts.exists()  # nothing trusted behind the user's back
        accept(refused.value)
        assert acc.read(str(tmp_path / "hello")) == b"hi"
        assert stat.S_IMODE(sshd.known_hosts.stat().st_mode) == 0o600
    finally:
        acc.close()


def test_a_host_whose_key_changed_is_refused_outright(sshd, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(sshd.home))
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    impostor = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {impostor}\n")
    acc = SshAccess(sshd.url(tmp_path))
    try:
        with pytest.raises(ChangedHost, match="has changed"):
            acc.listdir(str(tmp_path))
    finally:
        acc.close()


def test_files_are_read_from_an_offset_written_atomically_and_fetched_once(access, tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"0123456789")
    assert access.read(str(events), 4) == b"456789"
    assert access.read(str(events), 2, 3) == b"234"
    assert access.read(str(events), 10) == b""
    assert access.read(str(tmp_path / "missing")) == b""
    assert access.stat(str(tmp_path / "missing")) is None
    st = access.stat(str(events))
    assert st is not None and st.size == 10 and not st.is_dir
    (tmp_path / "sub").mkdir()
    assert sorted(access.listdir(str(tmp_path))) == ["events.jsonl", "sub"]
    assert access.listdir(str(tmp_path / "nowhere")) == []

    access.write(str(tmp_path / "notes.md"), b"remote note")
    assert (tmp_path / "notes.md").read_bytes() == b"remote note"
    assert stat.S_IMODE((tmp_path / "notes.md").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".podium-")] == []

    midi = tmp_path / "sample.mid"
    midi.write_bytes(b"MThd first")
    local = access.fetch(str(midi))
    assert local.read_bytes() == b"MThd first" and local != midi
    midi.write_bytes(b"MThd second take")  # a new size: fetched again
    assert access.fetch(str(midi)).read_bytes() == b"MThd second take"
    with pytest.raises(FileNotFoundError):
        access.fetch(str(tmp_path / "gone.mid"))


def test_a_fifo_in_a_run_folder_is_refused_and_the_workspace_reads_on(access, tmp_path):
    os.mkfifo(tmp_path / "events.jsonl")  # opened, it would hold the host's one sftp-server until a writer came
    with pytest.raises(OSError, match="not a regular file"):
        access.read(str(tmp_path / "events.jsonl"))
    (tmp_path / "notes.json").write_bytes(b"{}")
    assert access.read(str(tmp_path / "notes.json")) == b"{}"


def test_shared_files_are_written_with_the_hosts_umask_private_ones_owner_only(access, tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    access.write(str(tmp_path / "notes.json"), b"{}", private=False)
    access.write(str(tmp_path / "config.yaml"), b"run: {}\n")
    assert stat.S_IMODE((tmp_path / "notes.json").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == 0o600


def test_a_config_alias_works_and_the_label_names_the_host(client, tmp_path):
    (tmp_path / "x").write_text("aliased")
    acc = SshAccess(f"ssh://{ALIAS}{tmp_path}")
    try:
        assert acc.read(str(tmp_path / "x")) == b"aliased"
        assert acc.label() == f"{ALIAS}:{tmp_path}"
    finally:
        acc.close()


@pytest.mark.slow  # starts podium on the host over ssh (a Python start per call)
def test_the_podium_command_runs_on_the_host(access, tmp_path):
    result = access.podium("runs", "--json", str(tmp_path / "nope"))
    assert result.returncode == 2 and "not a folder" in result.stderr
    result = access.podium("runs", "--json", str(tmp_path))
    assert result.returncode == 0 and json.loads(result.stdout) == []


def test_a_dead_server_is_unreachable_then_reconnects_and_reading_resumes_at_the_offset(access, client, tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'{"n": 1}\n')
    offset = len(access.read(str(events)))
    client.kill()
    try:
        with open(events, "ab") as f:
            f.write(b'{"n": 2}\n')
        with pytest.raises(Unreachable):
            access.read(str(events), offset)
        with pytest.raises(Unreachable, match="disconnected|cannot connect"):
            access.read(str(events), offset)  # within the back-off: refused at once, no hang
    finally:
        client.start()
    from tests.helpers import wait_until

    def resumed() -> bytes | None:
        try:
            return access.read(str(events), offset)
        except Unreachable:
            return None

    assert wait_until(resumed, 20, "the reconnection") == b'{"n": 2}\n'
    assert access.connected


@pytest.mark.slow
def test_a_run_launched_over_ssh_trains_on_while_the_server_is_away_and_is_read_whole_after(access, client, tmp_path):
    """A 2-rank smoke run started on the host, detached; sshd killed and restarted mid-run; the events
    read by offset across the outage equal the file's, none twice."""
    from engine.contract.commandline import engine_command
    from tests.conftest import SMOKE
    from tests.helpers import wait_until

    run = tmp_path / "remote-smoke"
    argv = engine_command("run", "-c", str(SMOKE), "-r", str(run), "--nproc", "2", "--no-progress")
    pid = access.launch(argv, str(run), str(tmp_path / "launch.log"))
    assert pid > 0
    events = str(run / "events.jsonl")
    seen: list[bytes] = []
    offset, partial = 0, b""

    def read_some() -> bool:
        nonlocal offset, partial
        try:
            chunk = access.read(events, offset)
        except Unreachable:
            return False
        offset += len(chunk)
        *lines, partial = (partial + chunk).split(b"\n")
        seen.extend(lines)
        return any(b'"run_end"' in line for line in lines)

    wait_until(lambda: read_some() or len(seen) >= 3, 120, "the remote run's first events")
    client.kill()
    try:
        with pytest.raises(Unreachable):
            access.read(events, offset)
    finally:
        client.start()
    wait_until(lambda: read_some() or any(b'"run_end"' in line for line in seen), 180, "the run's end over ssh")
    on_disk = (run / "events.jsonl").read_bytes().splitlines()
    assert seen == on_disk  # every event once, in order, across the outage
    ends = [json.loads(line) for line in seen if b'"run_end"' in line]
    assert [e["reason"] for e in ends] == ["finished"]
    # The launcher exits after the run's end, as its host tells (launcher.json checked there).
    wait_until(lambda: access.process_alive(str(run)) is False, 60, "the remote launcher to exit")


def test_slices_read_ahead_are_the_files_bytes_and_a_replaced_file_is_read_afresh(access, tmp_path):
    events = tmp_path / "events.jsonl"
    first = b"".join(b'{"n": %d}\n' % i for i in range(5000))
    events.write_bytes(first)
    got, offset = b"", 0
    while offset < len(first):  # a reader's small slices, as when it catches up on a run
        chunk = access.read(str(events), offset, 4096)
        got, offset = got + chunk, offset + len(chunk)
    assert got == first
    # A new run in the same folder: a shorter file; the reader's stat sees it shrink and starts again at 0.
    events.write_bytes(b'{"new": 1}\n')
    st = access.stat(str(events))
    assert st is not None and st.size == 11
    assert access.read(str(events), 0, 4096) == b'{"new": 1}\n'
    with open(events, "ab") as f:
        f.write(b'{"n": "appended"}\n')
    assert access.read(str(events), 11, 4096) == b'{"n": "appended"}\n'


def test_a_password_in_a_workspace_url_is_refused_and_not_echoed():
    with pytest.raises(SshUrlError, match="never takes a password") as refused:
        parse_url("ssh://me:hunter2@gpu1/runs")
    assert "hunter2" not in str(refused.value)


def test_a_hosts_listing_row_outside_the_workspace_is_dropped(tmp_path):
    from gui.remote_workspace import RemoteIndex

    rows = [
        {"path": "/data/runs/a", "name": "a", "state": "finished"},
        {"path": "/data/runs/../../etc", "name": "etc", "state": "running"},
        {"path": "/data/runs-other/b", "name": "b", "state": "running"},
        {"path": "/home/me/c", "name": "c", "state": "running"},
    ]

    class HostileHost:  # answers podium runs with rows a compromised or confused host might print
        root = "/data/runs"

        def podium(self, *args, timeout=60.0):
            return subprocess.CompletedProcess(args, 0, json.dumps(rows), "")

        def stat_many(self, paths):
            return [None for _ in paths]

        def listdir(self, path):
            return []

    assert [s.name for s in RemoteIndex(HostileHost()).refresh()] == ["a"]


def test_deleting_every_checkpoint_a_hostile_host_lists_deletes_only_checkpoint_folders():
    from pathlib import Path

    from gui.models.checkpoint_files import HostFiles

    run = Path("/data/runs/a")
    valid = {"integrity": "ok", "step": 10}
    rows = [
        {**valid, "folder": "checkpoints", "name": "step-0000010"},
        {**valid, "folder": "averages", "name": "uniform-10-20"},
        {**valid, "folder": "averages", "name": "soup for the paper"},  # named by podium checkpoints average --out
        {**valid, "folder": "averages", "name": ".tmp-deleted-soup-12"},  # a delete under way
        {**valid, "folder": "averages", "name": "soup/../.."},
        {**valid, "folder": "checkpoints", "name": ""},  # checkpoints/ itself
        {**valid, "folder": "averages", "name": "."},
        {**valid, "folder": "checkpoints", "name": ".."},  # the run
        {**valid, "folder": "checkpoints", "name": "step-1/../.."},
        {**valid, "folder": "checkpoints", "name": "config.yaml"},
        {**valid, "folder": ["checkpoints"], "name": "step-0000020"},
        {**valid, "folder": "..", "name": "step-0000030"},
    ]
    renamed: list[str] = []

    class HostileHost:  # answers podium checkpoints list with rows a compromised or confused host might print
        def podium(self, *args, timeout=60.0):
            return subprocess.CompletedProcess(args, 0, json.dumps(rows), "")

        def read(self, path, offset, size):
            raise OSError("no manifest")

        def rename(self, source, target):
            renamed.append(source)

        def remove_tree(self, path):
            pass

    files = HostFiles(HostileHost())
    for row in files.rows(run):
        assert files.delete(row["path"]) is None
    averages = run / "averages"
    assert renamed == [
        str(run / "checkpoints" / "step-0000010"),
        str(averages / "uniform-10-20"),
        str(averages / "soup for the paper"),
    ]


def test_a_servers_notes_are_read_together_and_a_bad_file_is_shown_on_its_row(client, tmp_path):
    from engine.contract.notes import MAX_NOTES_BYTES, make_notes, write_notes
    from engine.contract.rundir import RunSummary
    from gui.models.lab import RemoteNotes

    class Counted(SshAccess):  # counts the waits on the host: one per round trip, or per batch in flight
        calls = 0

        def _call(self, work, timeout):
            Counted.calls += 1
            return super()._call(work, timeout)

    names = [f"run-{i:02d}" for i in range(30)]
    for name in names:
        (tmp_path / name).mkdir()
    write_notes(tmp_path / "run-00", make_notes("first", ["baseline"], "the reference"))
    (tmp_path / "run-01" / "notes.json").write_bytes(b"{not json")
    (tmp_path / "run-02" / "notes.json").write_bytes(b'{"note": "' + b"x" * MAX_NOTES_BYTES + b'"}')
    os.mkfifo(tmp_path / "run-03" / "notes.json")  # opened, it would hold the host's one sftp-server
    summaries = [RunSummary(tmp_path / n, n, "finished", None, 0, None, None, None, None) for n in names]
    access = Counted(client.url(tmp_path))
    try:
        access.stat(str(tmp_path))
        before = Counted.calls
        rows = {row.summary.name: row for row in RemoteNotes(access).rows(summaries)}
        assert Counted.calls - before == 1
    finally:
        access.close()
    assert rows["run-00"].title == "first" and rows["run-00"].tags == ("baseline",) and rows["run-00"].problem is None
    for bad, why in (("run-01", "Invalid JSON"), ("run-02", "larger than"), ("run-03", "not a regular file")):
        assert rows[bad].notes is None and f"{bad}/notes.json" in rows[bad].problem and "127.0.0.1" in rows[bad].problem
        assert why in rows[bad].problem, rows[bad].problem
    assert all(rows[n].notes is None and rows[n].problem is None for n in names[4:])


class _Counted(SshAccess):
    """A real SshAccess that counts its waits on the host: one per round trip, or per batch in flight."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def _call(self, work, timeout):
        self.calls += 1
        return super()._call(work, timeout)


def test_a_followed_backlog_is_caught_up_byte_for_byte_in_a_few_round_trips_not_one_per_slice(client, tmp_path):
    events, log = tmp_path / "events.jsonl", tmp_path / "engine.log"
    data = b"".join(b'{"type": "metrics", "step": %d, "loss": 1.5}\n' % i for i in range(300_000))  # 13 MB
    events.write_bytes(data)
    log.write_bytes(b"[rank0]: started\n")
    access = _Counted(client.url(tmp_path))
    try:
        access.stat(str(tmp_path))
        before, got, offset = access.calls, [], 0
        while offset < len(data):  # a reader's passes: its events' stat and slice, its log's stat
            size = access.stat(str(events)).size
            chunk = access.read(str(events), offset, min(64 << 10, size - offset))
            assert access.stat(str(log)).size == 17
            got.append(chunk)
            offset += len(chunk)
        passes = len(got)
        assert b"".join(got) == data
        # Before, each pass waited on the host twice or more (its stats, a read per MiB): over 400 waits.
        assert access.calls - before < passes // 4, (access.calls - before, passes)
    finally:
        access.close()


def test_a_followed_file_replaced_by_another_is_read_as_the_new_one(client, tmp_path, monkeypatch):
    from gui.access import ssh_tail

    monkeypatch.setattr(ssh_tail, "FRESH_S", 0.0)  # every stat asks the host: the replacement is seen at once
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(b'{"old": %d}\n' % i for i in range(1000)))
    access = SshAccess(client.url(tmp_path))
    try:
        offset = 0
        for more in range(2):  # read, then read what the run appended: the file is followed through a handle
            with open(events, "ab") as f:
                f.write(b'{"appended": %d}\n' % more)
            while offset < events.stat().st_size:
                offset += len(access.read(str(events), offset, min(4096, access.stat(str(events)).size - offset)))
        # A new run's longer file renamed over it: the old handle would read on in the old file.
        new = b"".join(b'{"new": %d}\n' % i for i in range(2000))
        (tmp_path / "next").write_bytes(new)
        os.replace(tmp_path / "next", events)
        assert access.stat(str(events)).size == len(new)
        read = [access.read(str(events), offset, 4096) for _ in range(2)]
        assert new[offset : offset + 4096] in read
        assert all(chunk in (b"", new[offset : offset + 4096]) for chunk in read)  # never the old file's bytes
    finally:
        access.close()
