"""A worker group that starts again counts the run's starts since its launcher began, reading only those lines of
events.jsonl (a long run has millions of others), and a hostile line never stops the start."""

from __future__ import annotations

import json
import time

import pytest
import torch

from engine.contract.events import EventReader, EventWriter, make_event
from engine.contract.rundir import RunDir
from engine.training import train
from engine.training.distributed import Dist

ONE_RANK = Dist(0, 1, 0, 1, 0, torch.device("cpu"), "gloo")


@pytest.fixture
def decoded(monkeypatch) -> list[int]:
    """How many JSON values the event reader validated (one entry per call)."""
    counts: list[int] = []
    real = EventReader.decode_values

    def counting(self, values):
        counts.append(len(values))
        return real(self, values)

    monkeypatch.setattr(EventReader, "decode_values", counting)
    return counts


def test_a_restarted_group_counts_this_launchs_starts_past_hostile_lines_without_validating_the_rest(
    tmp_path, monkeypatch, decoded
):
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    run = RunDir(tmp_path)
    earlier_launch = {**make_event("run_start", 0, total_steps=10), "time": time.time() - 3600}
    run.events.write_text(json.dumps(earlier_launch) + "\n")
    run.write_launcher(12345)
    with EventWriter(run.events) as events:
        events.emit("run_start", 0, total_steps=10)
        for step in range(2000):
            events.emit("status", step, state="starting", message="the group trains")
        events.emit("status", 2000, state="starting", message='a "run_start" named in a message is no start')
        events.emit("run_start", 1800, total_steps=10)
    with open(run.events, "ab") as f:
        f.write(b'{"type": "run_start", "step": 3\n')  # cut short: not JSON
        f.write(b'{"type": "run_start", "step": -4, "time": 9e99, "v": 1}\n')  # JSON, not a valid event
        f.write(b'\xff\xfe "run_start" \x00\n')  # not even text
        f.write(b'{"type": "run_start", "step": 5, "time"')  # a partial last line, mid-write
    assert train._attempt(run, ONE_RANK) == 2
    # Only the lines that name run_start were validated: six, not the 2000 others.
    assert sum(decoded) <= 6


def test_a_start_finds_no_earlier_attempt_in_a_new_or_missing_events_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    run = RunDir(tmp_path)
    run.write_launcher(12345)
    assert train._attempt(run, ONE_RANK) == 0  # no events.jsonl yet
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "3")
    assert train._attempt(run, ONE_RANK) == 3  # torchrun's own count when the events know fewer


@pytest.mark.parametrize("chunk_bytes", [64, 1 << 20])
def test_the_steps_a_failed_attempt_reached_are_read_back_from_the_end_without_decoding(tmp_path, decoded, chunk_bytes):
    from engine.training.event_scan import last_attempt_step

    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.emit("run_start", 0, total_steps=100)
    for step in range(1, 51):
        writer.emit("metrics", step, loss=1.0)
    writer.emit("run_start", 40, total_steps=100)  # the restart resumed from step 40
    for step in range(41, 71):
        writer.emit("metrics", step, loss=1.0)
    writer.emit("anomaly", 70, kind="nonfinite_loss", severity="critical", message="x" * 200, evidence={"step": 10**6})
    for step in range(61, 66):  # rolled back to 60: the furthest step reached is still 70
        writer.emit("metrics", step, loss=1.0)
    with open(path, "a") as f:
        f.write('{"not": "an event", "step": 999}\n')  # not the engine's head: not counted
        f.write('{"v": 1, "type": "metrics", "time": 1.0, "step": 99999999999999999, "loss": 1.0}\n')  # > 2**53
    writer.close()
    assert last_attempt_step(path, chunk_bytes) == 70
    assert decoded == [], "no line was decoded"
    assert last_attempt_step(tmp_path / "missing.jsonl") == 0
