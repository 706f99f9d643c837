"""The control inbox: safe appends, validation with reasons, nothing lost or applied twice."""

from __future__ import annotations

import json

import pytest

from engine.contract.commands import ControlInbox, send_command, validate_command
from engine.contract.errors import CommandError


def test_send_command_appends_records_with_ids(tmp_path):
    first = send_command(tmp_path, "pause")
    second = send_command(tmp_path, "set_lr", lr=1e-4)
    lines = [json.loads(line) for line in (tmp_path / "control.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [first, second]
    assert lines[1]["args"] == {"lr": 1e-4}


@pytest.mark.parametrize(
    "record, reason",
    [
        ({"id": "a", "cmd": "explode"}, "unknown command 'explode'"),
        ({"id": "a", "cmd": "set_lr", "args": {}}, "missing argument(s) ['lr']"),
        ({"id": "a", "cmd": "set_lr", "args": {"lr": -1}}, "lr=-1 is not valid"),
        ({"id": "a", "cmd": "set_lr", "args": {"lr": "fast"}}, "lr='fast' is not valid"),
        ({"id": "a", "cmd": "pause", "args": {"now": True}}, "unknown argument(s) ['now']"),
        ({"id": "a", "cmd": "pause", "args": [1]}, "'args' must be an object"),
    ],
)
def test_invalid_commands_are_refused_with_a_reason(record, reason):
    with pytest.raises(CommandError) as err:
        validate_command(record)
    assert reason in str(err.value)


def test_sender_rejects_a_typo_before_writing(tmp_path):
    with pytest.raises(CommandError):
        send_command(tmp_path, "paws")
    assert not (tmp_path / "control.jsonl").exists() or (tmp_path / "control.jsonl").read_text() == ""


def test_inbox_skips_answered_ids_and_reports_malformed_lines(tmp_path):
    answered = send_command(tmp_path, "pause")
    fresh = send_command(tmp_path, "resume")
    with open(tmp_path / "control.jsonl", "a") as f:
        f.write("{broken\n")
    inbox = ControlInbox(tmp_path / "control.jsonl", answered={answered})
    records = inbox.poll()
    assert [r.get("id") for r in records] == [fresh, None]
    assert "malformed" in records[1]
    assert inbox.poll() == []


def test_an_inbox_others_can_write_is_not_obeyed_and_not_written_to(tmp_path):
    command = send_command(tmp_path, "pause")
    inbox = tmp_path / "control.jsonl"
    inbox.chmod(0o666)
    records = ControlInbox(inbox).poll()
    assert [r["id"] for r in records] == [command]
    assert "other users could have written" in records[0]["malformed"]
    assert "mode -rw-rw-rw-" in records[0]["malformed"] and "chmod go-w" in records[0]["malformed"]
    with pytest.raises(CommandError, match="chmod go-w"):
        send_command(tmp_path, "resume")


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"id": ["x"], "cmd": "pause"}', "id"),
        ('{"id": "a", "cmd": ["pause"]}', "unknown command of type list"),
        ('{"id": "a", "cmd": "set_lr", "args": {"lr": ' + "9" * 400 + "}}", "lr="),
        ('{"id": "a", "cmd": "set_lr", "args": {"lr": 1e308}}', "expected a finite number in (0, 10]"),
        ('{"id": "a", "cmd": "pause", "x": ' + "[" * 3000 + "]" * 3000 + "}", "not a JSON object"),
    ],
)
def test_a_hostile_line_is_refused_with_a_reason_naming_what_is_wrong(tmp_path, line, reason):
    (tmp_path / "control.jsonl").write_text(line + "\n")
    (record,) = ControlInbox(tmp_path / "control.jsonl").poll()
    assert reason in record["malformed"]
    assert record["id"] in (None, "a")


def test_a_reused_id_is_refused_and_a_command_older_than_the_run_is_not_applied(tmp_path):
    inbox_path = tmp_path / "control.jsonl"
    stale = send_command(tmp_path, "pause")
    fresh = send_command(tmp_path, "resume")
    sent = [json.loads(line)["time"] for line in inbox_path.read_text().splitlines()]
    started = (sent[0] + sent[1]) / 2  # the run (re)started between the two
    with open(inbox_path, "a") as f:
        f.write(inbox_path.read_text().splitlines()[1] + "\n")  # the same resume again
    inbox = ControlInbox(inbox_path, started=started)
    records = inbox.poll()
    assert [r["id"] for r in records] == [stale, fresh, fresh]
    assert "before this run started" in records[0]["malformed"]
    assert "malformed" not in records[1] and records[1]["cmd"] == "resume"
    assert "already used" in records[2]["malformed"]


def test_a_command_to_a_run_that_has_ended_is_not_sent(tmp_path, capsys):
    from engine.contract.events import EventWriter
    from engine.launcher.cli import main

    with EventWriter(tmp_path / "events.jsonl") as events:
        events.emit("run_start", 0, total_steps=10)
        events.emit("run_end", 10, reason="finished", message="finished at step 10")
    assert main(["control", str(tmp_path), "pause"]) == 2
    assert "has ended (finished); nothing sent" in capsys.readouterr().err
    assert not (tmp_path / "control.jsonl").exists()
