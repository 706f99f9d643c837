"""The Log pane: every rank's and the launcher's lines from engine.log, searchable, filtered by level and rank."""

from __future__ import annotations

from gui.models.log_lines import LogLines
from gui.widgets.log_pane import LogView

LOG = [
    "[launcher]: [preparing] preparing data",
    "W1207 19:20:00.123000 4242 torch/distributed/run.py:792] Setting OMP_NUM_THREADS",
    "[launcher]: [running] training",
    "[rank0]:step 10 ok",
    "[rank1]:Traceback (most recent call last):",
    "[rank0]:step 20 ok",
    '[rank1]:  File "engine/training/train.py", line 12, in step',
    "[rank1]:    loss.backward()",
    "[rank1]:RuntimeError: simulated crash in the training step",
    "[rank0]:UserWarning: grad strides do not match",
    "[rank1]:after the crash",
    "[launcher]: run failed: the engine exited with code 1 without ending the run",
]


def test_each_line_knows_its_rank_and_level_and_a_traceback_is_an_error_throughout():
    model = LogLines()
    lines = model.add(LOG)
    assert model.sources == ["launcher", "torchrun", "rank0", "rank1"]
    levels = {line.text: line.level for line in lines}
    errors = [t for t, level in levels.items() if level == "ERROR"]
    # The traceback's four lines (though rank 0's lines come between them) and the launcher's verdict.
    assert errors == [LOG[4], LOG[6], LOG[7], LOG[8], LOG[11]]
    assert [t for t, level in levels.items() if level == "WARNING"] == [LOG[1], LOG[9]]
    assert levels["[rank1]:after the crash"] == "INFO"


def test_search_level_and_rank_show_only_the_lines_that_match(qtbot):
    view = LogView()
    qtbot.addWidget(view)
    view.resize(900, 300)
    view.show()
    view.append_lines(LOG[:6])
    view.append_lines(LOG[6:])
    assert view.toPlainText().splitlines() == LOG
    assert view.count.text() == "12 lines"

    view.level.setCurrentText("Errors")
    assert view.toPlainText().splitlines() == [LOG[4], LOG[6], LOG[7], LOG[8], LOG[11]]
    assert view.count.text() == "5 of 12 lines"
    view.source.setCurrentText("rank1")
    assert view.toPlainText().splitlines() == [LOG[4], LOG[6], LOG[7], LOG[8]]

    view.level.setCurrentText("All levels")
    view.search.setText("CRASH")
    qtbot.waitUntil(lambda: view.toPlainText().splitlines() == [LOG[8], LOG[10]], timeout=2000)
    # New lines pass the same filters as they arrive.
    view.append_lines(["[rank0]:crash elsewhere", "[rank1]:crash again", "[rank1]:fine"])
    assert view.toPlainText().splitlines() == [LOG[8], LOG[10], "[rank1]:crash again"]

    view.search.clear()
    view.source.setCurrentText("All ranks")
    qtbot.waitUntil(lambda: len(view.toPlainText().splitlines()) == 15, timeout=2000)
    view.clear()
    assert view.toPlainText() == "" and view.source.count() == 1


def test_a_run_shown_while_its_reader_holds_log_lines_not_handed_over_shows_each_line_once(qtbot, make_window):
    import time

    window = make_window()
    run = window.workspace / "attached"
    run.mkdir()
    (run / "events.jsonl").write_text('{"v": 1, "type": "run_start", "time": 1.0, "step": 0, "config": {}}\n')
    log = run / "engine.log"
    log.write_text("\n".join(LOG[:6]) + "\n")
    session = window.open_run(run)
    qtbot.waitUntil(lambda: window.log_view.toPlainText().strip() == "\n".join(LOG[:6]), timeout=30_000)
    with open(log, "a") as f:
        f.write("\n".join(LOG[6:]) + "\n")
    # The reader's thread reads the new lines, which then wait in the queue for the GUI thread (no event is
    # processed here): the moment at which a pane starts showing the run, as when it becomes the primary again.
    deadline = time.monotonic() + 30
    while session.log_tail.last_lines[-1] != LOG[-1]:
        assert time.monotonic() < deadline, "the reader never read the new lines"
        time.sleep(0.01)
    with qtbot.waitSignal(session.logLines, timeout=30_000):  # the held lines arrive
        window.views.show(session)
    assert window.log_view.toPlainText().strip() == "\n".join(LOG)
