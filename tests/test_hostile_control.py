"""A live 2-rank run takes a burst of hostile commands: each is refused with a reason, every valid one is
applied exactly once, the run finishes, and a resume of it neither fails nor obeys what was queued before."""

from __future__ import annotations

import json

import pytest

from engine.contract.commands import send_command
from tests.conftest import SMOKE, podium
from tests.helpers import ack_for, events_of, start_run, wait_until

pytestmark = pytest.mark.slow

HOSTILE = [
    '{"id": ["x"], "cmd": "pause"}',
    '{"id": "h-list-cmd", "cmd": ["pause"]}',
    '{"id": "h-huge-lr", "cmd": "set_lr", "args": {"lr": ' + "9" * 400 + "}}",
    '{"id": "h-overflow-lr", "cmd": "set_lr", "args": {"lr": 1e308}}',
    '{"id": "h-deep", "cmd": "pause", "x": ' + "[" * 3000 + "]" * 3000 + "}",
    "{not json",
    '"just a string"',
    '{"id": "h-profile", "cmd": "profile", "args": {"steps": true}}',
]


def test_a_burst_of_hostile_commands_is_refused_and_every_valid_one_applied_once(tmp_path):
    run_dir = tmp_path / "hostile"
    proc = start_run(
        run_dir, "-c", str(SMOKE), "--nproc", "2", "--set", "run.max_steps=100000", "--set", "checkpoint.interval=0"
    )
    try:
        wait_until(lambda: events_of(run_dir, "metrics"), 120, "the first metrics event")
        set_lr = send_command(run_dir, "set_lr", lr=2e-4)
        save = send_command(run_dir, "save_checkpoint")
        with open(run_dir / "control.jsonl", "a") as f:
            f.write("\n".join(HOSTILE) + "\n")
            f.write((run_dir / "control.jsonl").read_text().splitlines()[0] + "\n")  # set_lr again, same id
        stop = send_command(run_dir, "stop")
        assert wait_until(lambda: ack_for(run_dir, stop), 120, "the stop ack")["outcome"] == "done"
        assert proc.wait(timeout=180) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    acks = events_of(run_dir, "control_ack")
    done = [a["id"] for a in acks if a["outcome"] == "done"]
    assert sorted(done) == sorted([set_lr, save, stop]), "a valid command was lost or applied twice"
    refused = [a for a in acks if a["outcome"] == "refused"]
    assert len(refused) == len(HOSTILE) + 1, [a["reason"] for a in refused]
    reasons = " | ".join(a["reason"] for a in refused)
    for expected in ("id", "unknown command", "lr=", "finite number in (0, 10]", "not a JSON object", "steps="):
        assert expected in reasons
    assert "already used" in reasons
    assert events_of(run_dir, "run_end")[-1]["reason"] == "stopped"

    # Queued to a finished run: the resumed run refuses it instead of pausing at once.
    with open(run_dir / "control.jsonl", "a") as f:
        f.write(json.dumps({"id": "late-pause", "cmd": "pause", "time": 1.0}) + "\n")
    last = events_of(run_dir, "run_end")[-1]["step"]
    resumed = podium("run", "-r", str(run_dir), "--resume", "--no-progress", "--set", f"run.max_steps={last + 4}")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    late = ack_for(run_dir, "late-pause")
    assert late["outcome"] == "refused" and "before this run started" in late["reason"]
    assert events_of(run_dir, "run_end")[-1]["reason"] == "finished"
    assert [a["id"] for a in events_of(run_dir, "control_ack") if a["outcome"] == "done"].count(set_lr) == 1


def test_a_run_directory_is_private_to_its_owner_and_a_single_node_run_listens_on_loopback_only(tmp_path):
    import psutil

    run_dir = tmp_path / "private"
    proc = start_run(run_dir, "-c", str(SMOKE), "--nproc", "2", "--set", "run.max_steps=100000")
    listening = set()
    try:
        wait_until(lambda: events_of(run_dir, "metrics"), 120, "the first metrics event")
        for child in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
            for conn in child.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    listening.add(conn.laddr.ip)
        stop = send_command(run_dir, "stop")
        wait_until(lambda: ack_for(run_dir, stop), 120, "the stop ack")
        assert proc.wait(timeout=180) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for path in [run_dir, *run_dir.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is open to other users"
    assert listening and all(ip in ("127.0.0.1", "::1") for ip in listening), listening
