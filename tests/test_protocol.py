"""The event stream: one writer, a reader that survives partial and garbage lines."""

from __future__ import annotations

import json
import math

import pytest

from engine.contract.events import EventReader, EventWriter, read_events


def test_round_trip_keeps_required_fields_and_non_finite_values(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        w.emit("metrics", 10, loss=float("nan"), lr=1e-3, grad_norm=float("inf"))
        w.emit("eval", 10, val_loss=2.5)
    events, garbage = read_events(path)
    assert garbage == 0
    assert [e["type"] for e in events] == ["metrics", "eval"]
    assert all({"v", "type", "time", "step"} <= e.keys() for e in events)
    assert math.isnan(events[0]["loss"]) and math.isinf(events[0]["grad_norm"])


def test_unknown_event_type_is_refused(tmp_path):
    with EventWriter(tmp_path / "e.jsonl") as w, pytest.raises(ValueError, match="unknown event type 'metric'"):
        w.emit("metric", 1)


def test_reader_waits_for_a_partial_last_line_and_counts_garbage(tmp_path):
    path = tmp_path / "events.jsonl"
    full = json.dumps({"v": 1, "type": "eval", "time": 1.0, "step": 3, "val_loss": 1.0})
    path.write_text(full + '\nnot json at all\n[1, 2]\n{"no": "fields"}\n' + full[:20])
    reader = EventReader(path)
    first = reader.read_new()
    assert [e["step"] for e in first] == [3]
    assert reader.garbage == 3
    with open(path, "a") as f:
        f.write(full[20:] + "\n")
    assert [e["step"] for e in reader.read_new()] == [3]
    assert reader.read_new() == []


def test_reader_starts_over_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        for step in range(5):
            w.emit("status", step, state="running")
    reader = EventReader(path)
    assert len(reader.read_new()) == 5
    with EventWriter(tmp_path / "new.jsonl") as w:
        w.emit("run_end", 1, reason="finished")
    (tmp_path / "new.jsonl").replace(path)
    assert [e["type"] for e in reader.read_new()] == ["run_end"]


def test_missing_file_reads_as_empty(tmp_path):
    assert EventReader(tmp_path / "absent.jsonl").read_new() == []


def test_reader_keeps_lines_the_fast_parser_refuses(tmp_path):
    """NaN/Infinity (written on purpose) and a stray invalid byte in a message
    go through the json module's slower path instead of being dropped."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b'{"v": 1, "type": "metrics", "time": 1.0, "step": 1, "loss": NaN, "grad_norm": -Infinity}\n'
        b'{"v": 1, "type": "error", "time": 2.0, "step": 2, "message": "bad \xff byte"}\n'
        b'{"v": 1, "type": "eval", "time": 3.0, "step": 3, "val_loss": 1.5}\n'
    )
    reader = EventReader(path)
    events = reader.read_new()
    assert [e["step"] for e in events] == [1, 2, 3] and reader.garbage == 0
    assert math.isnan(events[0]["loss"]) and events[0]["grad_norm"] == -math.inf
    assert events[1]["message"] == "bad \ufffd byte"
