"""A run read off the GUI thread, through its workspace's access: a workspace that drops away shows as
disconnected and, once back, every event is shown once."""

from __future__ import annotations

import threading

import numpy as np
from scripted import _line, metrics_payload

from gui.access import Unreachable
from gui.access.local import LocalAccess
from gui.models import parse_worker
from gui.models.reader import AccessEventReader, TextTail
from gui.models.run_model import RunModel
from gui.models.run_reader import RunReader
from gui.session import RunSession

WAIT = 20_000


class DroppingAccess(LocalAccess):
    """A local workspace whose link can be cut, as a network to a server can."""

    def __init__(self, root):
        super().__init__(root)
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Unreachable("connection to the workspace lost")

    def stat(self, path):
        self._check()
        return super().stat(path)

    def read(self, path, offset=0, size=-1):
        self._check()
        return super().read(path, offset, size)

    def send_command(self, run, cmd, **args):
        self._check()
        return super().send_command(run, cmd, **args)


def _append(run, first: int, last: int) -> None:
    with open(run / "events.jsonl", "a") as f:
        f.writelines(_line("metrics", step, 1000.0 + step, metrics_payload(step)) for step in range(first, last + 1))


def _start(run) -> None:
    run.mkdir()
    (run / "events.jsonl").write_text(_line("run_start", 0, 1000.0, {"total_steps": 100, "config": {}, "env": {}}))


def test_a_dropped_workspace_loses_no_event_and_repeats_none(tmp_path):
    run = tmp_path / "run"
    _start(run)
    _append(run, 1, 40)
    (run / "engine.log").write_text("epoch 0\n")
    access = DroppingAccess(tmp_path)
    reader = RunReader(access, str(run), lambda: None)
    model = RunModel(run)
    reader.read_once(None)
    access.down = True
    _append(run, 41, 70)
    with open(run / "engine.log", "a") as f:
        f.write("epoch 1\n")
    reader.read_once(None)
    reader.read_once(None)
    assert reader.disconnected == "connection to the workspace lost"
    access.down = False
    reader.read_once(None)
    batches = reader.take()
    assert [b.disconnected for b in batches] == [None, "connection to the workspace lost", None]
    for batch in batches:
        model.apply(batch.items)
    steps = model.series["metrics/loss"].steps
    assert np.array_equal(steps, np.arange(1, 71)), "every step once, in order"
    assert [line for b in batches for line in b.log_lines] == ["epoch 0", "epoch 1"]
    assert model.series["metrics/rank_work_times/1"].n == 70  # per-rank lists become one series per rank


def test_reads_the_gui_thread_has_not_taken_become_one_batch_with_every_row_once(tmp_path):
    run = tmp_path / "run"
    _start(run)
    _append(run, 1, 30)
    with open(run / "events.jsonl", "a") as f:
        f.write(_line("status", 30, 1030.5, {"state": "paused", "message": ""}))
        # A field some rows lack: its series keeps only the rows that have it.
        f.writelines(
            _line("metrics", step, 1000.0 + step, {**metrics_payload(step), **({"peak_lr": 1e-3} if step % 3 else {})})
            for step in range(31, 61)
        )
    reader = RunReader(LocalAccess(tmp_path), str(run), lambda: None)
    while reader.read_once(700):  # a few lines a read: many passes before the GUI thread takes any
        pass
    batches = reader.take()
    assert len(batches) == 1, "passes not yet taken are handed over as one"
    kinds = [type(item).__name__ for item in batches[0].items]
    assert kinds == ["RunStart", "MetricsColumns", "Status", "MetricsColumns"], "one append per run of metrics rows"
    model = RunModel(run)
    model.apply(batches[0].items)
    assert model.events == 62 and batches[0].offset == (run / "events.jsonl").stat().st_size
    assert np.array_equal(model.series["metrics/loss"].steps, np.arange(1, 61))
    assert np.array_equal(model.series["metrics/peak_lr"].steps, [s for s in range(31, 61) if s % 3])
    assert model.state() == "paused" and model.series["metrics/rank_work_times/1"].n == 60
    assert reader.take() == []


def test_a_cut_within_a_read_leaves_the_offsets_where_they_were(tmp_path):
    run = tmp_path / "run"
    _start(run)
    access = DroppingAccess(tmp_path)
    events = AccessEventReader(run / "events.jsonl", access=access)
    log = TextTail(run / "engine.log", access=access)
    (run / "engine.log").write_text("a\n")
    assert len(events.read_new()) == 1 and log.read_new() == ["a"]
    offsets = events.offset, log.offset
    _append(run, 1, 5)
    access.down = True
    for read in (events.read_new, log.read_new):
        try:
            read()
        except Unreachable:
            pass
        else:
            raise AssertionError("an unreachable workspace must not read as an empty file")
    assert (events.offset, log.offset) == offsets
    access.down = False
    assert [r["step"] for r in events.read_new()] == [1, 2, 3, 4, 5]


def test_the_session_shows_disconnected_retrying_then_reads_on(qtbot, tmp_path):
    run = tmp_path / "run"
    _start(run)
    _append(run, 1, 20)
    access = DroppingAccess(tmp_path)
    session = RunSession(run, poll_ms=20, access=access)
    session.start()
    try:
        qtbot.waitUntil(lambda: session.model.step == 20, timeout=WAIT)
        with qtbot.waitSignal(session.connectionChanged, timeout=WAIT) as lost:
            access.down = True
        assert lost.args == ["connection to the workspace lost"]
        assert session.model.feed[-1].title == "disconnected, retrying"
        _append(run, 21, 50)
        with qtbot.waitSignal(session.connectionChanged, timeout=WAIT) as back:
            access.down = False
        assert back.args == [""]
        qtbot.waitUntil(lambda: session.model.step == 50, timeout=WAIT)
        assert np.array_equal(session.model.series["metrics/loss"].steps, np.arange(1, 51))
        assert session.model.feed[-1].title == "reconnected"
    finally:
        session.close()


def test_events_are_decoded_off_the_gui_thread(qtbot, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _start(run)
    _append(run, 1, 500)
    decoded_on: set[str] = set()
    decode = AccessEventReader.decode_lines

    def spy(self, lines, first_line=0):
        decoded_on.add(threading.current_thread().name)
        return decode(self, lines, first_line)

    monkeypatch.setattr(AccessEventReader, "decode_lines", spy)
    # Without its parse worker (tests/gui/test_parse_worker.py), the reader decodes in its own thread.
    monkeypatch.setattr(parse_worker, "shared", lambda: None)
    session = RunSession(run, poll_ms=20)
    session.start()
    try:
        qtbot.waitUntil(lambda: session.model.step == 500, timeout=WAIT)
        _append(run, 501, 600)
        qtbot.waitUntil(lambda: session.model.step == 600, timeout=WAIT)
    finally:
        session.close()
    assert decoded_on and threading.main_thread().name not in decoded_on
    assert len(session.model.series["metrics/loss"]) == 600


def test_a_remote_workspace_sends_commands_from_a_thread_and_says_when_they_are_sent(qtbot, tmp_path):
    run = tmp_path / "run"
    _start(run)
    access = DroppingAccess(tmp_path)
    access.remote = True
    session = RunSession(run, access=access)
    with qtbot.waitSignal(session.commandSent, timeout=WAIT) as sent:
        assert session.send("set_lr", lr=1e-4) is None  # the window is not held while the network answers
    command = sent.args[0]
    assert command.cmd == "set_lr" and command.id in (run / "control.jsonl").read_text()
    access.down = True
    session.send("pause")
    qtbot.waitUntil(lambda: session.model.feed[-1].title == "could not send pause", timeout=WAIT)
    assert "connection to the workspace lost" in session.model.feed[-1].detail


def test_a_run_file_that_cannot_be_read_is_named_and_the_events_still_come(tmp_path):
    run = tmp_path / "run"
    _start(run)
    _append(run, 1, 10)
    (run / "engine.log").mkdir()  # hostile or broken: a directory where the log should be
    reader = RunReader(LocalAccess(tmp_path), str(run), lambda: None)
    reader.read_once(None)
    model = RunModel(run)
    batches = reader.take()
    for batch in batches:
        model.apply(batch.items)
    assert model.series["metrics/loss"].n == 10
    assert "engine.log" in (batches[-1].disconnected or "")


def test_a_rejected_line_of_a_replaced_file_is_numbered_in_the_new_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    events = run / "events.jsonl"
    start = _line("run_start", 0, 1000.0, {"total_steps": 100, "config": {}, "env": {}})
    events.write_text(start + "".join(_line("metrics", s, 1000.0 + s, metrics_payload(s)) for s in range(1, 50)))
    reader = RunReader(LocalAccess(tmp_path), str(run), lambda: None)
    while reader.read_once():
        pass
    events.write_text(start + "not json\n")  # replaced by a shorter file: read again from its start
    while reader.read_once():
        pass
    rejected = [r for batch in reader.take() for r in batch.rejected]
    assert [r.line for r in rejected] == [2]
