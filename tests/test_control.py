"""The control inbox: safe appends, validation with reasons, nothing lost or applied twice."""

from __future__ import annotations

import json

import pytest

from engine.contract.commands import CommandError, ControlInbox, send_command, validate_command


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
