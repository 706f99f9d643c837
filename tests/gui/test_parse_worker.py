"""Event lines decoded in a process of their own: the same records, the same rejected lines, and when that
process is gone the reader's own thread decodes on, with no event lost or shown twice."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
from scripted import _line, metrics_payload

from gui.access.local import LocalAccess
from gui.models.columns import MetricsColumns, coalesce
from gui.models.parse_worker import ParseWorker, decode_chunk
from gui.models.run_model import RunModel
from gui.models.run_reader import RunReader

UP_S = 30  # a deadline for the child's start on a loaded machine, not a timing


def _up(worker: ParseWorker) -> None:
    worker.start()
    deadline = time.monotonic() + UP_S
    while worker.decode(b"", 1) is None:
        assert time.monotonic() < deadline, "the parse worker never came up"
        time.sleep(0.02)


def _metrics_run(tmp_path, steps: int):
    """A run folder whose events.jsonl holds a run_start and ``steps`` metrics lines."""
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "events.jsonl", "w") as f:
        f.write(_line("run_start", 0, 1000.0, {"total_steps": 100, "config": {}, "env": {}}))
        f.writelines(_line("metrics", s, 1000.0 + s, metrics_payload(s)) for s in range(1, steps + 1))
    return run


def _hostile_block() -> bytes:
    lines = [_line("run_start", 0, 1000.0, {"total_steps": 100, "config": {}, "env": {}})]
    # Enough lines that the worker splits them between its processes: the bad ones are in the second part.
    lines += [_line("metrics", s, 1000.0 + s, metrics_payload(s)) for s in range(1, 3000)]
    lines += ['{"v": 1, "type": "metrics", "time": 4000.0, "step": 3000, "loss": "low"}\n', "not json at all\n"]
    lines += [_line("status", 3000, 4000.5, {"state": "paused", "message": ""})]
    lines += [_line("metrics", s, 1000.0 + s, metrics_payload(s)) for s in range(3001, 3010)]
    return "".join(lines).rstrip("\n").encode()


def test_the_worker_decodes_lines_as_the_reader_thread_does():
    block = _hostile_block()
    worker = ParseWorker(processes=2)
    try:
        _up(worker)
        decoded = worker.decode(block, 7)
    finally:
        worker.close()
    assert decoded is not None
    items, rejected, garbage = decoded
    here_items, here_rejected, here_garbage = decode_chunk(block, 7)
    kinds = [type(i).__name__ for i in coalesce(items)]
    assert kinds == ["RunStart", "MetricsColumns", "Status", "MetricsColumns"]
    for theirs, ours in zip(coalesce(items), coalesce(here_items), strict=True):
        if isinstance(ours, MetricsColumns):
            assert np.array_equal(theirs.steps, ours.steps) and theirs.columns.keys() == ours.columns.keys()
            assert all(np.array_equal(theirs.columns[k][1], ours.columns[k][1]) for k in ours.columns)
        else:
            assert theirs == ours
    # The bad lines are named by their line numbers in the file, counted from the chunk's first line.
    assert garbage == here_garbage == 2
    assert [(r.line, r.reason) for r in rejected] == [(r.line, r.reason) for r in here_rejected]
    assert sorted(r.line for r in rejected) == [7 + 3000, 7 + 3001]


def test_a_reader_whose_worker_dies_reads_on_with_every_event_once(tmp_path):
    run = _metrics_run(tmp_path, 200)
    events = run / "events.jsonl"
    worker = ParseWorker()
    reader = RunReader(LocalAccess(tmp_path), str(run), lambda: None, parser=worker)
    try:
        _up(worker)
        while reader.read_once(2000):
            pass
        assert worker.running, "decoded by the worker so far"
        for child in worker._children:
            child.proc.kill()
            child.proc.wait()
        with open(events, "a") as f:
            f.writelines(_line("metrics", s, 1000.0 + s, metrics_payload(s)) for s in range(201, 401))
        while reader.read_once(2000):
            pass
        assert not worker.running, "the reader noticed and decodes in its own thread"
    finally:
        worker.close()
    model = RunModel(run)
    for batch in reader.take():
        model.apply(batch.items)
    assert np.array_equal(model.series["metrics/loss"].steps, np.arange(1, 401)), "every step once, in order"
    assert model.events == 401 and reader.events.garbage == 0


def test_a_stuck_worker_is_given_up_and_the_reader_decodes_in_its_thread(monkeypatch):
    from gui.models import parse_worker

    monkeypatch.setattr(parse_worker, "REPLY_S", 0.5)
    worker = ParseWorker(processes=1)
    try:
        _up(worker)
        pid = worker._children[0].proc.pid
        os.kill(pid, signal.SIGSTOP)  # alive but never answering
        assert worker.decode(_hostile_block(), 1) is None, "no wait for a child that does not answer"
        assert not worker.running and worker.decode(_hostile_block(), 1) is None
    finally:
        worker.close()


def test_a_big_run_opened_before_the_children_start_waits_for_them_rather_than_decoding_here(tmp_path, monkeypatch):
    run = _metrics_run(tmp_path, 6000)
    events = run / "events.jsonl"
    assert events.stat().st_size > 1 << 20, "big enough to be worth waiting for the children"
    from engine.contract.events import EventReader

    def here(*args, **kwargs):
        raise AssertionError("decoded in the reader's thread, holding the GIL")

    monkeypatch.setattr(EventReader, "decode_lines", here)  # this process only: the children decode as usual
    worker = ParseWorker()  # not started: the window would start it 100 ms after it is built
    reader = RunReader(LocalAccess(tmp_path), str(run), lambda: None, parser=worker)
    try:
        while reader.read_once(2 << 20):
            pass
        assert worker.running
    finally:
        worker.close()
    model = RunModel(run)
    for batch in reader.take():
        model.apply(batch.items)
    assert np.array_equal(model.series["metrics/loss"].steps, np.arange(1, 6001)) and model.events == 6001


def test_children_that_never_come_up_cost_one_wait_and_the_reader_decodes_on_in_its_thread(tmp_path, monkeypatch):
    from gui.models import run_reader

    monkeypatch.setattr(run_reader, "_STARTUP_S", 0.5)
    run = _metrics_run(tmp_path, 12000)
    worker = ParseWorker()
    worker.start()
    for child in worker._children:
        os.kill(child.proc.pid, signal.SIGSTOP)  # alive, never saying it is up
    reader = RunReader(LocalAccess(tmp_path), str(run), lambda: None, parser=worker)
    try:
        assert reader.read_once(2 << 20)  # a big chunk: one wait for the children, then decoded here
        assert not worker.awaited and not worker.running, "no reader waits for them again"
        while reader.read_once(2 << 20):
            pass
    finally:
        for child in worker._children:
            os.kill(child.proc.pid, signal.SIGCONT)
        worker.close()
    model = RunModel(run)
    for batch in reader.take():
        model.apply(batch.items)
    assert np.array_equal(model.series["metrics/loss"].steps, np.arange(1, 12001))
